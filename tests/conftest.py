"""Shared fixtures: where things are, and fresh copies of test catalogs to break or run."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

# snakemake.shell keeps the sys.stdout it sees at import as every job's stdout.
# Import it here, before click's CliRunner swaps in a stdout without a file
# descriptor, so CLI tests run jobs the way a terminal does.
import snakemake.shell  # noqa: F401

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"
HEPDATA = ROOT.parent / "shared" / "hepdata"


@pytest.fixture
def toy_catalog(tmp_path) -> Path:
    """A writable copy of the toy catalog (tests edit its specs and requests)."""
    target = tmp_path / "catalog"
    shutil.copytree(FIXTURES / "catalog", target)
    return target


@pytest.fixture
def toy(toy_catalog) -> Path:
    return toy_catalog / "toy"
