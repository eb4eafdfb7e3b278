"""``recast run`` and ``recast results``."""

from __future__ import annotations

import json
import time
from pathlib import Path

import click

from recast import catalog as catalog_mod
from recast import request as request_mod
from recast.cli.common import (allow_stale_option, band, catalog_option, complete_analysis, console, emit_json,
                               err_console, is_band, json_option, table)
from recast.environments import ENVIRONMENTS
from recast.errors import RecastError
from recast.cli.executor import executor_options


@click.command()
@click.argument("analysis_id", shell_complete=complete_analysis)
@click.option("--request", "request_file", type=click.Path(dir_okay=False),
              help="Reinterpretation request (YAML or JSON); files in it are relative to its folder.")
@click.option("--example", help="Run one of the analysis's example requests instead (see `recast catalog show`).")
@click.option("--environment", type=click.Choice(sorted(ENVIRONMENTS)), default="docker", show_default=True,
              help="How each job runs: in its preserved Docker image, or on this machine's Python.")
@executor_options()
@click.option("--cores", type=click.IntRange(min=1), default=1, show_default=True,
              help="Jobs run at once (on another executor than local: jobs submitted at once).")
@click.option("--workdir", type=click.Path(file_okay=False),
              help="Run folder (default: runs/ANALYSIS/REQUEST-NAME). Re-running into the same folder only redoes what changed.")
@click.option("--dry-run", is_flag=True, help="Check the request and print the plan (jobs, images, inputs); run nothing.")
@allow_stale_option
@catalog_option
@json_option
def run(analysis_id, request_file, example, environment, executor, cores, workdir, dry_run, allow_stale_images,
        catalog_dir, as_json):
    """Re-run ANALYSIS on a reinterpretation request; write results.json and provenance.json."""
    from recast import execution

    if bool(request_file) == bool(example):
        raise click.UsageError("give exactly one of --request FILE or --example NAME")
    analysis = catalog_mod.load(catalog_dir, analysis_id)
    if example:
        if example not in analysis.examples:
            raise RecastError(f"analysis {analysis.id!r} has no example {example!r} "
                              f"(examples: {', '.join(sorted(analysis.examples)) or 'none'})")
        request_path = analysis.examples[example].request
        name = example
    else:
        request_path = Path(request_file)
        name = None
    request = request_mod.load(analysis, request_path)
    # The request file's name may be anything (".yaml", "a.b.yaml", "../x"): the library makes it one safe folder.
    name = name or request_mod.run_name(request_path, request.digest)
    run_dir = Path(workdir) if workdir else Path("runs") / analysis.id / name
    if dry_run:
        plan = execution.dry_run(analysis, request, run_dir, environment, allow_stale_images)
        _print_plan(plan, request_path, as_json)
        return
    started = time.monotonic()
    if not as_json:
        err_console.print(f"running [bold]{analysis.id}[/bold] {analysis.version} on {request_path} "
                          f"in {run_dir} (environment {environment}, executor {executor.name})", highlight=False)
    outcome = execution.run(analysis, request, run_dir, environment=environment, executor=executor, cores=cores,
                            allow_stale_images=allow_stale_images)
    elapsed = time.monotonic() - started
    summary = {"run_dir": str(outcome.run_dir), "status": outcome.status, "jobs_run": outcome.jobs_run,
               "jobs_total": len(outcome.plan.jobs), "seconds": round(elapsed, 2),
               "results": str(outcome.run_dir / "results.json"),
               "provenance": str(outcome.run_dir / "provenance.json")}
    if as_json:
        emit_json(summary)
    else:
        if not outcome.jobs_run:
            err_console.print("nothing to do: every job is up to date")
        err_console.print(f"{len(outcome.jobs_run)} of {len(outcome.plan.jobs)} jobs ran in {elapsed:.1f} s; "
                          f"results in {outcome.run_dir}", highlight=False)
        _print_results(outcome.run_dir)


def _print_plan(plan, request_path: Path, as_json: bool) -> None:
    run_dir = Path(plan.run_dir)

    def shown(path: str) -> str:
        p = Path(path)
        return str(p.relative_to(run_dir)) if p.is_relative_to(run_dir) else str(p)

    jobs = [{"job": job.id, "stage": job.stage, "image": job.image.get("name") if plan.environment == "docker" else "host",
             "image_id": job.image.get("id"), "inputs": [shown(i) for i in job.inputs], "command": job.argv}
            for job in plan.jobs]
    if as_json:
        emit_json({"dry_run": True, "run_dir": str(run_dir), "environment": plan.environment,
                   "request_digest": plan.request_digest, "jobs": jobs, "pending_stages": plan.pending})
        return
    err_console.print(f"dry run: {len(jobs)} jobs of {plan.analysis['id']} {plan.analysis['version']} on "
                      f"{request_path}, in {run_dir} (environment {plan.environment}); nothing was run or written",
                      highlight=False)
    console.print(table("plan", ["job", "image", "inputs"], [
        [j["job"], j["image"] + (f" {j['image_id'][7:19]}" if j["image_id"] else ""), "\n".join(j["inputs"])]
        for j in jobs]))
    if plan.pending:
        err_console.print(f"planned when the lists they scatter over are known (after the jobs above): stages "
                          f"{', '.join(plan.pending)}", highlight=False)


@click.command()
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--verify", is_flag=True,
              help="Re-check the run: every job's outputs against the sha256 its record certified, "
                   "every result against its job's output. Exits 1 on any difference.")
@json_option
def results(run_dir, verify, as_json):
    """Show the results of a finished run folder."""
    if verify:
        from recast.results import verify as verify_run

        problems = verify_run(run_dir)
        if as_json:
            emit_json({"run_dir": str(run_dir), "verified": not problems, "problems": problems})
        elif not problems:
            err_console.print(f"verified: every output and result of {run_dir} is as its jobs left it")
        if problems:
            raise RecastError(f"{run_dir} does not verify ({len(problems)} problem(s)):\n  " + "\n  ".join(problems))
        return
    if as_json:
        from recast.results import load

        emit_json(load(run_dir))
    else:
        _print_results(Path(run_dir))


def _print_results(run_dir: Path) -> None:
    from recast.results import load

    doc = load(run_dir)
    console.print(f"[bold]{doc['analysis']['id']}[/bold] {doc['analysis']['version']}  "
                  f"run {doc['run']['id']} ({doc['run']['environment']})", highlight=False)
    scalars = []
    inputs = _request_fields(run_dir)
    for name, value in doc["values"].items():
        rows = _rows(value)
        if rows:
            columns = column_order(dict.fromkeys(c for r in rows for c in r), inputs)
            cells = [[band(r[c]) if is_band(c, r.get(c)) else r.get(c) for c in columns] for r in rows]
            has_bands = any(is_band(c, r.get(c)) for r in rows for c in columns)
            console.print(table(f"{name} (expected bands: median [-2σ, +2σ])" if has_bands else name, columns, cells))
        else:
            scalars.append([name, value])
    if scalars:
        console.print(table(None, ["value", "result"], scalars))
    if doc["files"]:
        console.print(table("files", ["name", "path", "sha256"],
                            [[k, v["path"], v["sha256"][:16]] for k, v in doc["files"].items()]))


def column_order(columns, inputs: list[str]) -> list[str]:
    """Columns as a reader scans them: name, masses, the other request inputs, then results.

    ``inputs`` are the request's field names in the order given; results
    keep their order, except that an observed value (``*_obs``) comes just
    before its expected one (``*_exp``).
    """
    columns = list(columns)
    given = [c for c in inputs if c in columns]
    is_mass = lambda c: c.lower().startswith("m_") or "mass" in c.lower()  # noqa: E731
    first = (["name"] if "name" in columns else []) + [c for c in given if is_mass(c) and c != "name"] \
        + [c for c in given if not is_mass(c) and c != "name"]
    rest = [c for c in columns if c not in first]
    stems = {c[:-4] for c in rest if c.endswith("_obs")}
    results = []
    for c in rest:
        if c.endswith("_exp") and c[:-4] in stems:
            continue  # placed after its _obs
        results.append(c)
        if c.endswith("_obs") and f"{c[:-4]}_exp" in rest:
            results.append(f"{c[:-4]}_exp")
    return first + results


def _request_fields(run_dir: Path) -> list[str]:
    """The field names of the run's request (see :func:`request_fields`)."""
    try:
        parameters = json.loads((Path(run_dir) / "request.json").read_text()).get("parameters", {})
    except (OSError, ValueError, AttributeError):
        return []
    return request_fields(parameters)


def request_fields(parameters: dict) -> list[str]:
    """A request's field names, in order: its parameters, and the fields of its lists of records."""
    if not isinstance(parameters, dict):
        return []
    fields = []
    for key, value in parameters.items():
        fields.append(key)
        if isinstance(value, list):
            fields += [k for item in value if isinstance(item, dict) for k in item]
    return list(dict.fromkeys(fields))


def _rows(value) -> list[dict] | None:
    """A value that reads best as a table: a list of records, or a record holding one."""
    if isinstance(value, dict) and len(value) == 1:
        value = next(iter(value.values()))
    if isinstance(value, list) and value and all(isinstance(r, dict) for r in value):
        return value
    return None


@click.command()
@json_option
def gc(as_json):
    """Remove recast's containers left behind by runs that died (kill -9) or outlived their time limit."""
    from recast.environments.docker import reap

    removed = reap()
    if as_json:
        emit_json({"removed": removed})
    elif removed:
        console.print(table("removed containers", ["container", "run", "step", "why"],
                            [[r["container"], r["run"], r["step"], r["why"]] for r in removed]))
    else:
        err_console.print("nothing to remove: every recast container belongs to a live run")
