"""``recast catalog ls|show|search`` and ``recast validate``."""

from __future__ import annotations

from pathlib import Path

import click

from recast import catalog as catalog_mod
from recast.cli.common import catalog_option, console, emit_json, json_option, table
from recast.errors import RecastError
from recast.validate import SPEC_FILE, check


@click.group()
def catalog():
    """Browse the preserved analyses."""


def _print_summaries(rows: list[dict], title: str) -> None:
    console.print(table(title, ["id", "version", "kind", "title", "tags", "examples"],
                        [[r["id"], r["version"], r["kind"], r["title"], r["tags"], r["examples"]] for r in rows]))


@catalog.command("ls")
@catalog_option
@json_option
def ls(catalog_dir, as_json):
    """List the catalog's analyses."""
    rows = [catalog_mod.summary(catalog_mod.load(catalog_dir, p.name)) for p in catalog_mod.entries(catalog_dir)]
    if as_json:
        emit_json(rows)
    else:
        _print_summaries(rows, f"catalog {catalog_mod.resolve(catalog_dir)}")


@catalog.command()
@click.argument("analysis_id")
@catalog_option
@json_option
def show(analysis_id, catalog_dir, as_json):
    """Show one analysis: metadata, images, templates, workflow, request parameters."""
    analysis = catalog_mod.load(catalog_dir, analysis_id)
    if as_json:
        emit_json({"summary": catalog_mod.summary(analysis), "spec": analysis.document})
        return
    console.print(f"[bold]{analysis.title}[/bold]  ({analysis.id} {analysis.version})")
    console.print(analysis.description.strip())
    console.print(table("metadata", ["field", "value"], [[k, v] for k, v in analysis.metadata.items()]))
    if analysis.images:
        console.print(table("images", ["name", "tag", "dockerfile"],
                            [[i.name, i.tag, i.dockerfile] for i in analysis.images.values()]))
    if analysis.stages:
        console.print(table("workflow", ["stage", "template", "scatter over", "image", "command"], [
            [s.name, s.template, s.scatter or "", analysis.templates[s.template].image,
             " ".join(analysis.templates[s.template].argv)] for s in analysis.stages]))
    if analysis.request_parameters:
        console.print(table("request parameters", ["name", "type", "default", "description"], [
            [p.name, p.type + (f" of {p.items.type}" if p.items else ""), p.default if p.has_default else "(required)",
             p.description] for p in analysis.request_parameters.values()]))
    if analysis.examples:
        console.print(table("examples", ["name", "request", "description"],
                            [[e.name, e.request.relative_to(analysis.root), e.description] for e in analysis.examples.values()]))


@catalog.command()
@click.argument("text")
@catalog_option
@json_option
def search(text, catalog_dir, as_json):
    """Find analyses whose id, title, description or metadata mention every word of TEXT."""
    rows = catalog_mod.search(catalog_dir, text)
    if as_json:
        emit_json(rows)
    else:
        _print_summaries(rows, f"matches for {text!r}")


@catalog.command("check")
@click.argument("analysis_ids", nargs=-1)
@catalog_option
@json_option
def check_command(analysis_ids, catalog_dir, as_json):
    """Is every entry (or the given ones) still preservable and testable?

    Each entry validates; every image is pinned and present in the engine or
    archived with a matching sha256; every referenced file exists with its
    recorded sha256 (`recast catalog pin`); there are example requests with
    reference results. Exits non-zero if anything fails.
    """
    paths = ([catalog_mod.resolve(catalog_dir) / i for i in analysis_ids] if analysis_ids
             else catalog_mod.entries(catalog_dir))
    report = []
    for path in paths:
        if not (path / SPEC_FILE).is_file():
            raise RecastError(f"no analysis {path.name!r} in catalog {catalog_mod.resolve(catalog_dir)}")
        outcomes = catalog_mod.check_entry(path)
        report.append({"entry": path.name, "passed": all(o.passed for o in outcomes),
                       "checks": [o.__dict__ for o in outcomes]})
    if as_json:
        emit_json(report)
    else:
        for entry in report:
            rows = [["ok" if c["passed"] else "FAIL", c["name"], str(c["found"] or "")[:19], c["message"]]
                    for c in entry["checks"]]
            console.print(table(f"{entry['entry']}: {'passed' if entry['passed'] else 'FAILED'}",
                                ["", "check", "found", "problem"], rows))
    if not all(e["passed"] for e in report):
        raise SystemExit(1)


@catalog.command()
@click.argument("analysis_id")
@catalog_option
def pin(analysis_id, catalog_dir):
    """Record the sha256 of every file ANALYSIS refers to, in preserved/files.sha256."""
    from recast import preservation

    path = preservation.pin_files(catalog_mod.load(catalog_dir, analysis_id))
    console.print(f"recorded {len(path.read_text().splitlines())} files in {path}", highlight=False)


@click.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True))
@json_option
def validate(paths, as_json):
    """Check analysis specs: one entry (folder or analysis.yaml) or a whole catalog folder.

    Checks the schemas and beyond: referenced templates, files and images exist,
    placeholders are declared parameters and parameters are used, the workflow
    is acyclic, scatters run over lists, example requests are valid.
    """
    targets = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir() and not (path / SPEC_FILE).is_file():
            found = catalog_mod.entries(path)
            if not found:
                raise RecastError(f"{path}: neither a catalog entry (no {SPEC_FILE}) nor a catalog (no entries)")
            targets.extend(found)
        else:
            targets.append(path)
    report = []
    for target in targets:
        analysis, problems = check(target)
        if analysis is not None:
            problems = _check_examples(analysis)
        report.append({"entry": str(target), "valid": not problems,
                       "problems": [{"file": f, "field": w, "message": m} for f, w, m in problems]})
    if as_json:
        emit_json(report)
    else:
        for entry in report:
            if entry["valid"]:
                console.print(f"[green]valid[/green]   {entry['entry']}")
            else:
                console.print(f"[red]invalid[/red] {entry['entry']}")
                for p in entry["problems"]:
                    console.print(f"  {p['file']}: {p['field'] or '(top level)'}: {p['message']}",
                                  highlight=False, markup=False)
    if not all(e["valid"] for e in report):
        raise SystemExit(1)


def _check_examples(analysis) -> list[tuple[str, str, str]]:
    from recast import request as request_mod
    from recast.errors import SpecError

    problems = []
    for example in analysis.examples.values():
        try:
            request_mod.load(analysis, example.request)
        except SpecError as exc:
            problems.extend(exc.problems)
    return problems
