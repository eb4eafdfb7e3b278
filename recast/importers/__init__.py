"""Importers: analyses preserved for other systems (yadage, recast-atlas, REANA) as catalog entries.

Each importer reads the other system's documents, translates every feature
it can into recast's spec, and names every one it cannot (per feature and
file) in one report: a failed import writes nothing. An entry is assembled in
a hidden folder of the catalog, checked by ``recast validate``, and renamed
into place (:func:`install`).
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from recast.errors import RecastError


@dataclass
class Report:
    """What an import could not translate, and what it decided on the importer's behalf."""

    source: str
    unsupported: list[tuple[str, str, str]] = field(default_factory=list)  # (file, where, feature and why)
    notes: list[tuple[str, str, str]] = field(default_factory=list)  # (file, where, what was decided)

    def cannot(self, file: Path | str, where: str, why: str) -> None:
        self.unsupported.append((str(file), where, why))

    def note(self, file: Path | str, where: str, what: str) -> None:
        self.notes.append((str(file), where, what))

    def raise_if_unsupported(self) -> None:
        if self.unsupported:
            lines = [f"  {file}: {where}: {why}" for file, where, why in self.unsupported]
            raise ImportFailed(f"cannot import {self.source}: {len(lines)} feature(s) recast cannot express yet "
                               "(nothing was written):\n" + "\n".join(lines), self)


class ImportFailed(RecastError):
    def __init__(self, message: str, report: Report):
        super().__init__(message)
        self.report = report


def install(catalog: Path, entry_id: str, write: Callable[[Path], None], force: bool = False) -> Path:
    """Write an entry with ``write(folder)`` into a hidden folder of ``catalog``, validate it, rename it into place.

    An existing entry is refused unless ``force``; then it is moved aside, not
    deleted, until the new one is in place. Any failure leaves the catalog as it was.
    """
    from recast.validate import check

    catalog = Path(catalog)
    catalog.mkdir(parents=True, exist_ok=True)
    target = catalog / entry_id
    if (target.exists() or target.is_symlink()) and not force:
        raise RecastError(f"{target} exists: choose another --id, or pass --force to replace it")
    staging = Path(tempfile.mkdtemp(prefix=f".{entry_id}-", dir=catalog)) / entry_id
    try:
        staging.mkdir()
        write(staging)
        _, problems = check(staging)
        if problems:
            listed = "\n".join(f"  {Path(file).relative_to(staging) if Path(file).is_relative_to(staging) else file}: "
                               f"{where}: {message}" for file, where, message in problems)
            raise RecastError(f"the translated entry does not validate (nothing was written):\n{listed}")
        if target.exists() or target.is_symlink():
            aside = staging.parent / ".old"
            target.rename(aside)
            try:
                staging.rename(target)
            except OSError:
                aside.rename(target)
                raise
        else:
            staging.rename(target)
    finally:
        shutil.rmtree(staging.parent, ignore_errors=True)
    return target
