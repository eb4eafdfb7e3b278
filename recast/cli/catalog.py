"""``recast catalog ls|show|search`` and ``recast validate``."""

from __future__ import annotations

from pathlib import Path

import click

from recast import catalog as catalog_mod
from recast.cli.common import catalog_option, complete_analysis, console, emit_json, json_option, table
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
@click.argument("analysis_id", shell_complete=complete_analysis)
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
                            [[i.name, i.tag, "(pulled)" if i.pulled else i.dockerfile] for i in analysis.images.values()]))
    if analysis.stages:
        console.print(table("workflow", ["stage", "template", "scatter over", "image", "command"], [
            [s.name, s.template, s.scatter or "", analysis.templates[s.template].image,
             " ".join(analysis.templates[s.template].argv)] for s in analysis.stages]))
    if analysis.request_parameters:
        console.print(table("request parameters (a[].b: field b of each element of the list a)",
                            ["name", "type", "default", "description"], [
            row for p in analysis.request_parameters.values() for row in _parameter_rows(p)]))
    if analysis.examples:
        console.print(table("examples", ["name", "request", "description"],
                            [[e.name, e.request.relative_to(analysis.root), e.description] for e in analysis.examples.values()]))


def _parameter_rows(param, prefix: str = "") -> list[list]:
    """One row per parameter, and one per field of a list of objects or an object (``signals[].name``)."""
    kind = param.type + (f" of {param.items.type}" if param.items else "")
    unit = param.schema.get("unit")
    required = "(required)"
    row = [f"{prefix}{param.name}", kind + (f" [{unit}]" if unit else ""),
           param.default if param.has_default else required, param.description]
    rows = [row]
    fields = param.items if param.items is not None and param.items.type == "object" else param
    if fields.type == "object":
        inner = f"{prefix}{param.name}{'[].' if fields is not param else '.'}"
        for name, field in fields.properties.items():
            sub = _parameter_rows(field, inner)
            sub[0][2] = field.default if field.has_default else (required if name in fields.required else "(optional)")
            rows += sub
    return rows


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
@click.argument("analysis_ids", nargs=-1, shell_complete=complete_analysis)
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
@click.argument("analysis_id", shell_complete=complete_analysis)
@catalog_option
def pin(analysis_id, catalog_dir):
    """Record the sha256 of every file ANALYSIS refers to, in preserved/files.sha256."""
    from recast import preservation

    path = preservation.pin_files(catalog_mod.load(catalog_dir, analysis_id))
    console.print(f"recorded {len(path.read_text().splitlines())} files in {path}", highlight=False)


@click.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True))
@catalog_option
@json_option
def validate(paths, catalog_dir, as_json):
    """Check analysis specs (an entry's folder or analysis.yaml, or a whole catalog folder) and requests.

    Specs: the schemas and beyond: referenced templates, files and images exist,
    placeholders are declared parameters and parameters are used, the workflow
    is acyclic, scatters run over lists, example requests are valid. A request
    (a file with `schema: recast/request/...`) is checked against the analysis
    it names, in the catalog (--catalog), as `recast run` would check it.
    """
    targets, report = [], []
    for raw in paths:
        path = Path(raw)
        if path.is_file() and path.name != SPEC_FILE and (problems := _check_request(path, catalog_dir)) is not None:
            report.append({"entry": str(path), "kind": "request", "valid": not problems,
                           "problems": [{"file": f, "field": w, "message": m} for f, w, m in problems]})
        elif path.is_dir() and not (path / SPEC_FILE).is_file():
            found = catalog_mod.entries(path)
            if not found:
                raise RecastError(f"{path}: neither a catalog entry (no {SPEC_FILE}) nor a catalog (no entries)")
            targets.extend(found)
        else:
            targets.append(path)
    for target in targets:
        analysis, problems = check(target)
        if analysis is not None:
            problems = _check_examples(analysis)
        report.append({"entry": str(target), "kind": "analysis", "valid": not problems,
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


def _check_request(path: Path, catalog_dir) -> list[tuple[str, str, str]] | None:
    """The problems of a request file checked against the analysis it names; None if it is not a request."""
    from recast import request as request_mod
    from recast import spec
    from recast.errors import SpecError

    try:
        document = spec.load_document(path, max_bytes=request_mod.MAX_BYTES, max_values=request_mod.MAX_VALUES)
    except SpecError:
        return None  # not readable as a request: checked as a spec, which says what is wrong
    if not (isinstance(document, dict) and str(document.get("schema", "")).startswith("recast/request/")):
        return None
    analysis_id = document.get("analysis")
    if not isinstance(analysis_id, str):
        return [(str(path), "analysis", "a request names the analysis it is for (analysis: ID), so that it "
                                        "can be checked against that analysis's parameters")]
    try:
        analysis = catalog_mod.load(catalog_dir, analysis_id)
    except SpecError as exc:
        return [(str(path), "analysis", f"analysis {analysis_id!r} is not valid itself: run `recast validate` on it")] \
            + exc.problems[:5]
    except RecastError as exc:
        return [(str(path), "analysis", str(exc))]
    try:
        request_mod.load(analysis, path)
    except SpecError as exc:
        return exc.problems
    return []


@click.command("new")
@click.argument("analysis_id")
@catalog_option
def new(analysis_id, catalog_dir):
    """Scaffold a minimal two-step entry (a selection per signal, a combination of all) that validates as
    written: replace its code and specs with your analysis's (docs/authoring.md)."""
    from pathlib import Path

    from recast import resources
    from recast.scaffold import new as scaffold

    try:
        entry = scaffold(Path(catalog_dir) if catalog_dir else resources.default_catalog(), analysis_id)
    except RecastError as err:
        raise click.ClickException(str(err)) from None
    catalog = f" --catalog {entry.parent}" if catalog_dir else ""
    console.print(f"created [bold]{analysis_id}[/bold] in {entry}: code/, templates/, Dockerfile, examples/, "
                  "checks.yaml", highlight=False)
    console.print(f"next: recast images build {analysis_id}{catalog}, then recast run {analysis_id} --example "
                  f"default{catalog}, then recast test {analysis_id} --update-reference{catalog}", highlight=False)
