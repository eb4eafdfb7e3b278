"""``recast import hepdata ARCHIVE_OR_URL``: a published likelihood as a likelihood-only catalog entry.

With ``--json`` prints ``{"id", "path", "archive": {"name", "sha256",
"size_bytes", "url"?}, "workspaces": [{"name", "layout", "points",
"parameters"}], "points"}``.
"""

from __future__ import annotations

from pathlib import Path

import click

from recast.cli.common import catalog_option, console, emit_json, json_option, table
from recast.errors import RecastError


@click.group("import")
def import_group():
    """Import analyses from outside sources into a catalog."""


@import_group.command("hepdata")
@click.argument("source", metavar="ARCHIVE_OR_URL")
@catalog_option
@click.option("--id", "entry_id", help="Entry id (default: from the archive's name).")
@click.option("--title", help="Entry title.")
@click.option("--inspire-id", help="INSPIRE id of the paper (default: from the patchset's references).")
@click.option("--hepdata-record", help="HEPData record id.")
@click.option("--collaboration", help="e.g. ATLAS.")
@click.option("--luminosity-fb", type=float, help="Integrated luminosity in fb^-1.")
@click.option("--sqrt-s-tev", type=float, help="Centre-of-mass energy in TeV.")
@click.option("--labels", help="Comma-separated names of the point parameters, e.g. msb,mn2,mn1 (default: from the patchset or README).")
@click.option("--unit", default="GeV", show_default=True, help="Unit of the point parameters.")
@click.option("--sha256", "expected_sha256", help="Refuse the archive unless its sha256 is this.")
@click.option("--max-member-mb", type=click.IntRange(min=1), default=512, show_default=True, help="Refuse archive members larger than this.")
@click.option("--max-total-mb", type=click.IntRange(min=1), default=512, show_default=True,
              help="Refuse archives that expand to more than this (compression bombs).")
@click.option("--timeout", "deadline", type=click.FloatRange(min=0, min_open=True), default=1800, show_default=True,
              help="Give up a download that takes longer than this many seconds in all.")
@click.option("--force", is_flag=True, help="Replace an existing entry of the same id.")
@click.option("--progress/--no-progress", default=True, show_default=True, help="Download progress bar on stderr.")
@json_option
def hepdata(source, catalog_dir, entry_id, title, inspire_id, hepdata_record, collaboration, luminosity_fb,
            sqrt_s_tev, labels, unit, expected_sha256, max_member_mb, max_total_mb, deadline, force, progress, as_json):
    """Import a HEPData likelihood archive (.tar.gz, local path or http(s) URL) as a catalog entry."""
    from recast import resources
    from recast.hepdata import import_hepdata

    try:
        summary = import_hepdata(
            source, catalog_dir or resources.default_catalog(), entry_id=entry_id, title=title,
            inspire_id=inspire_id, hepdata_record=hepdata_record, collaboration=collaboration,
            luminosity_fb=luminosity_fb, sqrt_s_tev=sqrt_s_tev,
            labels=[x.strip() for x in labels.split(",")] if labels else None, unit=unit,
            expected_sha256=expected_sha256, force=force, progress=progress,
            max_member_bytes=max_member_mb * 1024**2, max_total_bytes=max_total_mb * 1024**2, deadline=deadline,
        )
    except RecastError as err:
        raise click.ClickException(str(err)) from None
    if as_json:
        emit_json(summary)
        return
    console.print(f"imported [bold]{summary['id']}[/bold] into {summary['path']} (sha256 {summary['archive']['sha256']})")
    console.print(table(None, ["workspace", "layout", "points", "parameters"],
                        [[w["name"], w["layout"], w["points"], w["parameters"]] for w in summary["workspaces"]]))


def _imported(target, report, as_json: bool) -> None:
    notes = [{"file": f, "where": w, "note": n} for f, w, n in report.notes]
    if as_json:
        emit_json({"id": target.name, "path": str(target), "notes": notes})
        return
    console.print(f"imported [bold]{target.name}[/bold] into {target}")
    if notes:
        console.print(table("decided on import", ["file", "where", "note"],
                            [[n["file"], n["where"], n["note"]] for n in notes]))
    console.print(f"next: `recast images build {target.name} --catalog {target.parent}` (pulls its images), "
                  "then `recast run` on an example")


def _run_import(action):
    try:
        return action()
    except RecastError as err:
        raise click.ClickException(str(err)) from None


_toplevel = click.option("--toplevel", type=click.Path(exists=True, file_okay=False, path_type=Path),
                         help="The folder $refs are resolved against (default: the workflow's folder, then up to "
                              "two above it).")
_force = click.option("--force", is_flag=True, help="Replace an existing entry of the same id.")
_entry_id = click.option("--id", "entry_id", help="Entry id (default: from the source's name).")


@import_group.command("yadage")
@click.argument("workflow", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@_toplevel
@click.option("--inputs", "inputs", multiple=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="A YAML file of init parameters (yadage's -p): one example request each, named after the file; "
                   "files it names are read beside it. Repeatable.")
@_entry_id
@catalog_option
@_force
@json_option
def yadage_command(workflow, toplevel, inputs, entry_id, catalog_dir, force, as_json):
    """Import a yadage workflow (packtivity steps) as a catalog entry; what cannot be translated is listed and
    nothing is written."""
    from recast import resources, spec
    from recast.importers.yadage import default_id, identifier, import_workflow

    def action():
        examples = {identifier(p.stem, lower=True): dict(spec.load_document(p) or {}) for p in inputs}
        return import_workflow(workflow, catalog_dir or resources.default_catalog(),
                               entry_id or default_id(workflow),
                               toplevel=toplevel, inputs=examples, files_root=inputs[0].parent if inputs else None,
                               force=force)

    _imported(*_run_import(action), as_json)


@import_group.command("recast-atlas")
@click.argument("entry", type=click.Path(exists=True, dir_okay=False, path_type=Path), metavar="RECAST.yml")
@_toplevel
@_entry_id
@catalog_option
@_force
@json_option
def recast_atlas_command(entry, toplevel, entry_id, catalog_dir, force, as_json):
    """Import an entry of the ATLAS recast command's catalogue (its yadage workflow, metadata, example inputs
    and results)."""
    from recast import resources
    from recast.importers.recast_atlas import import_entry

    _imported(*_run_import(lambda: import_entry(entry, catalog_dir or resources.default_catalog(), entry_id,
                                                toplevel, force)), as_json)


@import_group.command("reana")
@click.argument("reana_yaml", type=click.Path(exists=True, dir_okay=False, path_type=Path), metavar="REANA.yaml")
@_entry_id
@catalog_option
@_force
@json_option
def reana_command(reana_yaml, entry_id, catalog_dir, force, as_json):
    """Import a REANA analysis whose workflow is yadage (its inputs become the example request)."""
    from recast import resources
    from recast.importers.reana import import_analysis

    _imported(*_run_import(lambda: import_analysis(reana_yaml, catalog_dir or resources.default_catalog(),
                                                   entry_id, force)), as_json)
