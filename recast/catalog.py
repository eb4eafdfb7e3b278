"""The catalog: a folder of preserved analyses, one sub-folder (and analysis.yaml) each."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from recast import resources
from recast.errors import RecastError
from recast.model import Analysis
from recast.validate import SPEC_FILE, load_analysis

_ID = re.compile(r"^[a-z0-9][a-z0-9_-]*$")


def resolve(catalog: str | Path | None) -> Path:
    return Path(catalog) if catalog else resources.default_catalog()


def entries(catalog: str | Path | None = None) -> list[Path]:
    """The entry folders of a catalog, sorted by id."""
    root = resolve(catalog)
    if not root.is_dir():
        raise RecastError(f"catalog {root} is not a folder")
    return sorted(p for p in root.iterdir() if (p / SPEC_FILE).is_file())


def load(catalog: str | Path | None, analysis_id: str) -> Analysis:
    root = resolve(catalog)
    if not _ID.match(analysis_id) or not (root / analysis_id / SPEC_FILE).is_file():
        known = ", ".join(p.name for p in entries(root)) or "none"
        raise RecastError(f"no analysis {analysis_id!r} in catalog {root} (known: {known})")
    return load_analysis(root / analysis_id)


def command(analysis: Analysis, verb: str, *arguments: str) -> str:
    """The ``recast VERB ID ...`` command line for a fix-it hint, ready to paste.

    An entry outside the default catalog gets ``--catalog DIR`` (relative to the
    current folder when inside it), so that the hint works as it is written.
    """
    words = ["recast", *verb.split(), analysis.id, *arguments]
    root = analysis.root.parent
    if root.resolve() != resources.default_catalog().resolve():
        try:
            shown = root.resolve().relative_to(Path.cwd().resolve())
        except ValueError:
            shown = root
        words += ["--catalog", str(shown)]
    return shlex.join(words)


def summary(analysis: Analysis) -> dict:
    meta = analysis.metadata
    return {
        "id": analysis.id,
        "version": analysis.version,
        "title": analysis.title,
        "kind": "workflow" if analysis.runnable else "likelihood",
        "collaboration": meta.get("collaboration", ""),
        "tags": meta.get("tags", []),
        "processes": meta.get("processes", []),
        "signal_regions": meta.get("signal_regions", []),
        "examples": sorted(analysis.examples),
        "path": str(analysis.root),
    }


def search(catalog: str | Path | None, text: str) -> list[dict]:
    """Entries whose id, title, description or metadata mention every word of ``text``."""
    words = text.lower().split()
    found = []
    for entry in entries(catalog):
        analysis = load_analysis(entry)
        haystack = " ".join([analysis.id, analysis.title, analysis.description,
                             " ".join(str(v) for v in analysis.metadata.values())]).lower()
        if all(w in haystack for w in words):
            found.append(summary(analysis))
    return found


def check_entry(path: Path) -> list:
    """`recast catalog check` for one entry: is it still preservable and testable?

    It validates; every image is pinned and present in the engine or archived
    with a matching sha256; every referenced file exists with its recorded
    sha256; it has example requests with reference results.
    """
    from recast import preservation
    from recast.checks import Outcome
    from recast.digest import sha256_file
    from recast.validate import check

    analysis, problems = check(path)
    if analysis is None:
        return [Outcome("valid", False, message="; ".join(f"{f}: {w}: {m}" for f, w, m in problems))]
    outcomes = [Outcome("valid", True)]
    if analysis.runnable:
        examples = list(analysis.examples.values())
        outcomes.append(Outcome("example requests", bool(examples), message="" if examples else "none declared"))
        missing = [e.name for e in examples if e.reference is None]
        outcomes.append(Outcome("reference results", bool(examples) and not missing,
                                message=f"no reference for: {', '.join(missing)}" if missing else ""))
    try:
        from recast import images
        from recast.environments.docker import engine_available

        engine = engine_available()
        stale = images.stale(analysis)
        archived = preservation.read_manifest(analysis)["images"]
        for name in sorted(analysis.images):
            ref = images.resolve(analysis, name)
            outcomes.append(Outcome(f"image {name} pinned", bool(ref.id), found=ref.id,
                                    message="" if ref.id else f"not built: run `{command(analysis, 'images build')}`"))
            if not ref.id:
                continue
            why = stale.get(name)
            outcomes.append(Outcome(f"image {name} up to date", why is None, message=(
                f"image out of date: run `{command(analysis, 'images build')}` ({why})" if why else "")))
            in_engine = engine and images.find_image(images.engine_api(), ref.id) == ref.id
            where, ok, message = "engine" if in_engine else "", bool(in_engine), ""
            if name in archived:
                if archived[name].get("id") != ref.id:
                    message = f"archive holds {archived[name].get('id')}, not the pinned image"
                else:
                    try:
                        preservation.verify_archive(analysis, name)
                        where, ok = ("engine and archive" if in_engine else "archive"), True
                    except RecastError as exc:
                        message = str(exc)
            elif not in_engine:
                message = f"neither in the engine nor archived: run `{command(analysis, 'images save')}`"
            outcomes.append(Outcome(f"image {name} available", ok, found=where or None, message=message))
        recorded = preservation.recorded_files(analysis)
        for file in preservation.referenced_files(analysis):
            name = str(file.relative_to(analysis.root.resolve()))
            if name not in recorded:
                outcomes.append(Outcome(f"file {name}", False,
                                        message=f"no recorded sha256: run `{command(analysis, 'catalog pin')}`"))
            elif not file.is_file():
                outcomes.append(Outcome(f"file {name}", False, message="missing"))
            else:
                found = sha256_file(file)
                outcomes.append(Outcome(f"file {name}", found == recorded[name], recorded[name], found,
                                        "" if found == recorded[name] else "sha256 differs from the recorded one"))
    except RecastError as exc:
        outcomes.append(Outcome("preservation store", False, message=str(exc)))
    return outcomes
