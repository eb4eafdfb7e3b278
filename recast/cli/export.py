"""``recast export reana``: an analysis on one request, as a workflow another system runs."""

from __future__ import annotations

from pathlib import Path

import click

from recast import catalog as catalog_mod
from recast import request as request_mod
from recast.cli.common import catalog_option, complete_analysis, emit_json, err_console, json_option


@click.group("export")
def export_group():
    """Export an analysis on a request as a workflow for another system."""


@export_group.command()
@click.argument("analysis_id", shell_complete=complete_analysis)
@click.option("--request", "request_file", required=True, type=click.Path(dir_okay=False),
              help="Reinterpretation request (YAML or JSON); files in it are relative to its folder.")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Folder to write reana.yaml, the Snakefile and the inputs into.")
@catalog_option
@json_option
def reana(analysis_id, request_file, out_dir, catalog_dir, as_json):
    """Write a REANA workflow (type snakemake) of ANALYSIS on a request: `reana-client run` it from --out.

    The images must have been pushed (`recast images push`): each rule runs
    in docker://REPOSITORY@sha256:DIGEST.
    """
    from recast.export.reana import export

    analysis = catalog_mod.load(catalog_dir, analysis_id)
    request = request_mod.load(analysis, Path(request_file))
    out = export(analysis, request, Path(out_dir))
    files = ["reana.yaml", "Snakefile"]
    if as_json:
        emit_json({"out": str(out), "files": [str(out / f) for f in files]})
    else:
        err_console.print(f"wrote {out / 'reana.yaml'} and {out / 'Snakefile'}: run it with "
                          f"`cd {out} && reana-client run -w {analysis.id}`", highlight=False)
