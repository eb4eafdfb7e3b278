"""The catalog: a folder of preserved analyses, one sub-folder (and analysis.yaml) each."""

from __future__ import annotations

import re
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
