"""``recast refresh`` and ``recast diff``."""

from __future__ import annotations

import click

from recast import catalog as catalog_mod
from recast.cli.executor import executor_options
from recast.cli.common import catalog_option, console, emit_json, fmt, json_option, table
from recast.environments import ENVIRONMENTS
from recast.errors import RecastError


@click.command()
@click.option("--runs", "runs_dir", type=click.Path(file_okay=False), default="runs", show_default=True,
              help="Folder searched for stored run folders (results.json + provenance.json).")
@click.option("--list", "list_only", is_flag=True, help="Only list the stale results; re-run nothing.")
@click.option("--environment", type=click.Choice(sorted(ENVIRONMENTS)),
              help="Re-run in this environment (default: the one each stored run used).")
@executor_options()
@click.option("--cores", type=click.IntRange(min=1), default=1, show_default=True)
@catalog_option
@json_option
def refresh(runs_dir, list_only, environment, executor, cores, catalog_dir, as_json):
    """Find stored results made with an older analysis version, spec or image, and re-run them.

    Each re-run goes to a new folder beside the old one (RUN.vVERSION-DIGEST):
    both are kept; `recast diff OLD NEW` shows what changed.
    """
    from recast import refresh as refresh_mod

    report = []
    for run in refresh_mod.stored_runs(runs_dir):
        try:
            analysis = catalog_mod.load(catalog_dir, run.analysis_id)
        except RecastError as exc:
            report.append({"run": str(run.run_dir), "stale": None, "reasons": [str(exc)], "refreshed": None})
            continue
        reasons = refresh_mod.stale(run, analysis)
        entry = {"run": str(run.run_dir), "stale": bool(reasons), "reasons": reasons, "refreshed": None}
        if reasons and not list_only:
            outcome = refresh_mod.rerun(run, analysis, environment, cores, executor)
            entry["refreshed"] = str(outcome.run_dir)
        report.append(entry)
    if as_json:
        emit_json(report)
    else:
        console.print(table("stored results", ["run", "status", "why", "refreshed into"], [
            [e["run"], "unknown" if e["stale"] is None else ("stale" if e["stale"] else "up to date"),
             "; ".join(e["reasons"]), e["refreshed"] or ""] for e in report]))
    if any(e["stale"] is None for e in report):
        raise SystemExit(1)


@click.command()
@click.argument("run_a", type=click.Path(exists=True, file_okay=False))
@click.argument("run_b", type=click.Path(exists=True, file_okay=False))
@json_option
def diff(run_a, run_b, as_json):
    """What changed between two run folders: inputs, software, results."""
    from recast import refresh as refresh_mod

    report = refresh_mod.diff(refresh_mod.load_run(run_a), refresh_mod.load_run(run_b))
    if as_json:
        emit_json(report)
        return
    for section in ("inputs", "software"):
        rows = [[c["name"], c["a"], c["b"]] for c in report[section]]
        console.print(table(section, ["what", "A", "B"], rows) if rows else f"{section}: no change")
    rows = [[c["name"], c["a"], c["b"], fmt(c.get("delta")), fmt(c.get("relative"))] for c in report["results"]]
    console.print(table("results", ["value", "A", "B", "B - A", "relative"], rows) if rows else "results: no change")
