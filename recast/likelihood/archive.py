"""A published likelihood archive (HEPData ``.tar.gz``) used directly, without importing it into a catalog.

The archive is checked and extracted by :func:`recast.hepdata.safe_extract`
(the same checks as ``recast import hepdata``) into a temporary folder that
lives as long as the returned :class:`OpenedArchive`; its regions are found
by :func:`recast.hepdata.discover`. For repeated use, ``recast import
hepdata`` once is cheaper: the archive is then not extracted on every call.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from recast.likelihood.errors import LikelihoodError
from recast.likelihood.workspace import Likelihood, load_patch_file, load_workspace

ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".tar.bz2", ".tar.xz")


def is_archive(path: str | Path) -> bool:
    """A tar archive by its name or its first bytes (gzip, bzip2, xz, or a tar header)."""
    path = Path(path)
    if path.name.lower().endswith(ARCHIVE_SUFFIXES):
        return True
    try:
        with open(path, "rb") as handle:
            head = handle.read(263)
    except OSError:
        return False
    return head[:2] == b"\x1f\x8b" or head[:3] in (b"BZh", b"\xfd7z") or head[257:262] == b"ustar"


@dataclass
class OpenedArchive:
    """The likelihood of one region of an extracted archive; :meth:`close` removes the extraction."""

    likelihood: Likelihood
    region: str
    regions: list[str]
    folder: Path = field(repr=False)

    def close(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self) -> "OpenedArchive":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open_archive(path: str | Path, region: str | None = None, labels: Sequence[str] | None = None) -> OpenedArchive:
    """Extract ``path`` safely and load the workspace of ``region`` (needed when the archive has several)."""
    from recast.hepdata import discover, safe_extract

    path = Path(path)
    folder = Path(tempfile.mkdtemp(prefix="recast-likelihood-"))
    try:
        safe_extract(path, folder / "archive", label=str(path))
        root = folder / "archive"
        try:
            regions = discover(root, labels=labels, archive=str(path))
        except LikelihoodError as err:
            raise type(err)(str(err).replace(f"{root}/", f"{path}: ")) from None
        names = [r.name for r in regions]
        if region is None and len(regions) > 1:
            raise LikelihoodError(f"{path}: the archive has {len(regions)} background-only workspaces ({', '.join(names)}); choose one with --region")
        chosen = regions[0] if region is None else next((r for r in regions if r.name == region), None)
        if chosen is None:
            raise LikelihoodError(f"{path}: no region {region!r} in the archive (regions: {', '.join(names)})")
        if chosen.layout == "patchset":
            likelihood = load_workspace(root / chosen.workspace, patchset=root / chosen.patchset, labels=labels or chosen.labels or None)
        else:
            likelihood = load_workspace(root / chosen.workspace, labels=chosen.labels)
            likelihood.points = [load_patch_file(root / f, labels=chosen.labels or None, validate=False) for f in chosen.patch_files]
            likelihood.labels = list(chosen.labels)
        return OpenedArchive(likelihood, chosen.name, names, folder)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
