"""Where recast finds the files it ships: schemas, catalog, containers, Snakefile.

In a checkout they are top-level folders beside ``recast/``; a wheel carries
them inside the package as ``recast/_data/`` (see pyproject.toml). This is the
only module that knows.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


@cache
def data_root() -> Path:
    installed = _PACKAGE / "_data"
    if (installed / "specs").is_dir():
        return installed
    return _PACKAGE.parent


def schema_dir(version: str) -> Path:
    return data_root() / "specs" / version


def default_catalog() -> Path:
    return data_root() / "catalog"


def containers_dir() -> Path:
    return data_root() / "containers"


def snakefile() -> Path:
    return data_root() / "Snakefile"


def workflows_dir() -> Path:
    return data_root() / "workflows"
