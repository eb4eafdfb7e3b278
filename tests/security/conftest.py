"""The hostile analysis (tests/fixtures/hostile-catalog/hostile): a job written as an attacker would.

Its image is built once per session; every test gets a fresh copy of the
entry (with that build's lock) to edit and run.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import FIXTURES, ROOT


@pytest.fixture(scope="session")
def hostile_lock(tmp_path_factory) -> Path:
    from recast import images
    from recast.validate import load_analysis

    entry = tmp_path_factory.mktemp("hostile-build") / "hostile"
    shutil.copytree(FIXTURES / "hostile-catalog" / "hostile", entry)
    images.build(load_analysis(entry))
    return entry / images.LOCK_FILE


@pytest.fixture
def hostile(tmp_path, hostile_lock) -> Path:
    entry = tmp_path / "catalog" / "hostile"
    shutil.copytree(FIXTURES / "hostile-catalog" / "hostile", entry)
    shutil.copy(hostile_lock, entry / hostile_lock.name)
    return entry


def write_request(folder: Path, points: list[dict], name: str = "request.yaml") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(yaml.safe_dump({"schema": "recast/request/1.0.0", "analysis": "hostile",
                                    "parameters": {"points": points}}))
    return path


def set_template(entry: Path, name: str, **environment) -> None:
    """Change a template's environment block (network, resources) in the entry's copy."""
    path = entry / "templates" / f"{name}.yaml"
    doc = yaml.safe_load(path.read_text())
    doc["environment"].update(environment)
    path.write_text(yaml.safe_dump(doc))


def recast_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "recast", *args]


def start_run(entry: Path, request: Path, run_dir: Path, *extra: str) -> subprocess.Popen:
    """`recast run` in its own session (so that a signal reaches it alone, as a batch system's would)."""
    return subprocess.Popen(
        recast_command("run", "hostile", "--catalog", str(entry.parent), "--request", str(request),
                       "--workdir", str(run_dir), *extra),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, start_new_session=True)
