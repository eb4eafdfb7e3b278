"""``recast images build|save|load``: build, pin, archive and restore an analysis's images."""

from __future__ import annotations

import click
from rich.text import Text

from recast import catalog as catalog_mod
from recast.cli.common import catalog_option, complete_analysis, console, emit_json, err_console, json_option, table


@click.group()
def images():
    """Build the container images of preserved analyses."""


@images.command()
@click.argument("analysis_ids", metavar="[ANALYSIS]...", nargs=-1, shell_complete=complete_analysis)
@click.option("--base", metavar="IMAGE", default=None,
              help="Base image for every Dockerfile (build argument BASE), e.g. python:3.11-slim "
                   "from a registry. Default: recast/base:bookworm, made locally with debootstrap if missing.")
@catalog_option
@json_option
@click.option("--quiet", "-q", is_flag=True, help="Do not echo the build log.")
def build(analysis_ids, base, catalog_dir, as_json, quiet):
    """Build the images of ANALYSIS (default: every catalog entry) and pin their IDs in images.lock.json."""
    from recast import images as images_mod

    ids = list(analysis_ids) or [p.name for p in catalog_mod.entries(catalog_dir)]
    analyses = [catalog_mod.load(catalog_dir, i) for i in ids]  # every id checked before anything is built

    def progress(name: str, line: str) -> None:
        err_console.print(Text.assemble((name, "dim"), " ", line), highlight=False, soft_wrap=True)

    rows = []
    for analysis in analyses:
        if not analysis.images:
            continue
        err_console.print(f"[bold]building the images of {analysis.id} {analysis.version}[/bold]")
        built = images_mod.build(analysis, base=base, progress=None if quiet else progress)
        rows += [{"analysis": analysis.id, "name": ref.name, "tag": ref.tag, "id": ref.id,
                  "lock": str(images_mod.lock_path(analysis))} for ref in built.values()]
    if as_json:
        emit_json(rows)
    else:
        console.print(table("images", ["analysis", "name", "tag", "id"],
                            [[r["analysis"], r["name"], r["tag"], r["id"]] for r in rows]))


@images.command()
@click.argument("analysis_id", metavar="ANALYSIS", shell_complete=complete_analysis)
@click.argument("names", nargs=-1)
@catalog_option
@json_option
def save(analysis_id, names, catalog_dir, as_json):
    """Archive the pinned images of ANALYSIS (or only NAMES) into its preservation store.

    Each image is written as a docker-archive tarball, preserved/images/NAME.tar,
    and listed with its image ID and sha256 in preserved/images.json.
    """
    from recast import preservation

    analysis = catalog_mod.load(catalog_dir, analysis_id)
    manifest = preservation.save_images(analysis, list(names) or None)
    rows = [{"name": n, **e} for n, e in sorted(manifest["images"].items()) if not names or n in names]
    if as_json:
        emit_json(rows)
    else:
        console.print(table(f"archived in {preservation.store(analysis)}", ["name", "id", "archive", "MB", "sha256"],
                            [[r["name"], r["id"][:19], r["archive"], r["bytes"] / 1e6, r["sha256"][:16]] for r in rows]))


@images.command()
@click.argument("analysis_id", metavar="ANALYSIS", shell_complete=complete_analysis)
@click.argument("names", nargs=-1)
@catalog_option
@json_option
def load(analysis_id, names, catalog_dir, as_json):
    """Restore the archived images of ANALYSIS into the Docker engine, after checking their sha256."""
    from recast import preservation

    analysis = catalog_mod.load(catalog_dir, analysis_id)
    restored = preservation.load_images(analysis, list(names) or None)
    if as_json:
        emit_json(restored)
    else:
        console.print(table("restored", ["name", "id"], [[n, i] for n, i in restored.items()]))


@images.command()
@click.argument("analysis_id", metavar="ANALYSIS", shell_complete=complete_analysis)
@click.argument("names", nargs=-1)
@click.option("--registry", required=True, metavar="HOST[:PORT]/PREFIX",
              help="Registry and prefix to push to, e.g. 127.0.0.1:5001/recast (an image goes to PREFIX/NAME:VERSION).")
@catalog_option
@json_option
@click.option("--quiet", "-q", is_flag=True, help="Do not echo the push progress.")
def push(analysis_id, names, registry, catalog_dir, as_json, quiet):
    """Push the pinned images of ANALYSIS (or only NAMES) and record each one's REPOSITORY@sha256:DIGEST.

    The lock keeps the local image ID too. A machine without an image pulls
    exactly the recorded digest when a job needs it, and refuses it unless it
    is the pinned image ID.
    """
    from recast import images as images_mod

    analysis = catalog_mod.load(catalog_dir, analysis_id)

    def progress(name: str, line: str) -> None:
        err_console.print(Text.assemble((name, "dim"), " ", line), highlight=False, soft_wrap=True)

    pushed = images_mod.push(analysis, registry, list(names) or None, progress=None if quiet else progress)
    rows = [{"name": n, "id": images_mod.resolve(analysis, n).id, "registry_ref": r} for n, r in pushed.items()]
    if as_json:
        emit_json(rows)
    else:
        console.print(table(f"pushed (recorded in {images_mod.lock_path(analysis)})", ["name", "id", "pull"],
                            [[r["name"], r["id"][:19], r["registry_ref"]] for r in rows]))
