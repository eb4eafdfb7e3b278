"""The ``likelihood:`` block of a likelihood-only catalog entry, read as :class:`Likelihood` objects.

The block (schema ``specs/1.0.0/likelihood.schema.json``, written by
``recast import hepdata``) lists the background-only workspaces of the entry
(one per region), where each one's signal patches are (one file per point, or
a pyhf patchset), and the model parameters of the points. Paths are relative
to the entry's folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from recast.likelihood.errors import LikelihoodError
from recast.likelihood.workspace import Likelihood, SignalPoint, load_patch_file, load_workspace


def workspace_names(block: dict[str, Any]) -> list[str]:
    return [w["name"] for w in block.get("workspaces", [])]


def _workspace_block(block: dict[str, Any], region: str | None, where: str) -> dict[str, Any]:
    workspaces = block.get("workspaces") or []
    if not workspaces:
        raise LikelihoodError(f"{where}: likelihood.workspaces is empty")
    if region is None:
        if len(workspaces) > 1:
            raise LikelihoodError(
                f"{where}: the entry has {len(workspaces)} background-only workspaces ({', '.join(workspace_names(block))}); choose one with --region"
            )
        return workspaces[0]
    for workspace in workspaces:
        if workspace["name"] == region:
            return workspace
    raise LikelihoodError(f"{where}: no workspace named {region!r} in likelihood.workspaces (known: {', '.join(workspace_names(block))})")


def entry_likelihood(root: str | Path, block: dict[str, Any], region: str | None = None, validate: bool = True) -> Likelihood:
    """The :class:`Likelihood` of one workspace (region) of an entry, with all its signal points."""
    root = Path(root)
    where = str(root / "analysis.yaml")
    workspace = _workspace_block(block, region, where)
    labels = [p["name"] for p in block.get("parameters", [])]
    patches = workspace["patches"]
    if patches["layout"] == "patchset":
        return load_workspace(root / workspace["path"], patchset=root / patches["patchset"], labels=labels, validate=validate)
    likelihood = load_workspace(root / workspace["path"], labels=labels, validate=validate)
    folder = root / patches["directory"]
    files = sorted(folder.glob(patches.get("pattern", "patch.*.json")))
    if not files:
        raise LikelihoodError(f"{where}: likelihood.workspaces[{workspace['name']}].patches: no file matches {folder}/{patches.get('pattern', 'patch.*.json')}")
    points: list[SignalPoint] = [load_patch_file(f, labels=labels or None, validate=False) for f in files]
    likelihood.points = points
    likelihood.labels = labels or (list(points[0].values) if points else [])
    return likelihood


def load_entry(entry: str, catalog: str | Path | None = None, region: str | None = None) -> Likelihood:
    """The likelihood of catalog entry ``entry`` (and ``region`` when it has several workspaces)."""
    from recast import catalog as catalog_module

    analysis = catalog_module.load(catalog, entry)
    block = getattr(analysis, "likelihood", None) or analysis.document.get("likelihood")
    if not block:
        raise LikelihoodError(f"{analysis.root / 'analysis.yaml'}: entry {entry!r} has no likelihood: block (it is not a likelihood-only entry)")
    return entry_likelihood(analysis.root, block, region)
