"""The README's walk-throughs, run as written: the documentation cannot drift from the tool.

Each walk-through is the ``sh`` blocks between ``<!-- walk-through: NAME -->``
and ``<!-- end walk-through -->``; they run with ``bash -euo pipefail`` in an
empty folder, with the ``recast`` and ``wh1lbb-generate`` of the set-up on PATH,
exactly as a reader would paste them.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from conftest import ROOT

MARKED = re.compile(r"<!-- walk-through: (\w+) -->\n(.*?)<!-- end walk-through -->", re.S)
SH_BLOCK = re.compile(r"```sh\n(.*?)```", re.S)


def walkthroughs(document: str = "README.md") -> dict[str, str]:
    text = (ROOT / document).read_text()
    return {name: "\n".join(SH_BLOCK.findall(body)) for name, body in MARKED.findall(text)}


def run_walkthrough(name: str, folder: Path, document: str = "README.md") -> subprocess.CompletedProcess:
    script = walkthroughs(document)[name]
    env = {k: v for k, v in os.environ.items() if k != "RECAST_CATALOG"}
    env["COLUMNS"] = "100"
    return subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=folder, env=env,
                          capture_output=True, text=True, timeout=900)


def test_the_readme_has_both_walkthroughs_and_they_use_the_commands_the_issue_names():
    found = walkthroughs()
    assert set(found) == {"theorist", "analyst"}
    for step in ("recast validate my-points.yaml", "--dry-run", "recast run wh1lbb --request my-points.yaml",
                 "recast results runs/wh1lbb/my-points", "limits.png"):
        assert step in found["theorist"], step
    order = ["recast validate mycatalog/count", "recast images build count", "recast run count",
             "recast test count --update-reference", "recast test count --catalog", "recast catalog pin count",
             "recast catalog check count"]
    positions = [found["analyst"].index(step) for step in order]
    assert positions == sorted(positions), "the analyst's steps are in the order the README explains"


@pytest.mark.docker
def test_theorist_walkthrough_runs_as_written(tmp_path):
    done = run_walkthrough("theorist", tmp_path)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    run_dir = tmp_path / "runs" / "wh1lbb" / "my-points"
    results = json.loads((run_dir / "results.json").read_text())
    points = results["values"]["points"]
    assert [p["name"] for p in points] == ["C1N2_Wh_350_0", "C1N2_Wh_650_100"]
    assert all(0 <= p["cls_obs"] <= 1 and p["mu_up_obs"] > 0 for p in points), points
    assert (run_dir / "steps" / "gather" / "limits.png").stat().st_size > 10_000
    assert "select__1" in done.stdout, "the dry run printed the plan"


@pytest.mark.docker
def test_analyst_walkthrough_runs_as_written(tmp_path):
    done = run_walkthrough("analyst", tmp_path)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    entry = tmp_path / "mycatalog" / "count"
    reference = json.loads((entry / "examples" / "default.results.json").read_text())
    # a.txt: 3 of 5 above 100 GeV; b.txt: 2 of 3.
    assert reference["values"]["efficiency"] == [0.6, pytest.approx(2 / 3)]
    assert reference["values"]["signal_yield"] == [pytest.approx(0.01 * 139000 * 0.6),
                                                   pytest.approx(0.002 * 139000 * 2 / 3)]
    pinned = [line.split("  ")[1] for line in (entry / "preserved" / "files.sha256").read_text().splitlines()]
    assert "examples/default.results.json" in pinned and "templates/count.yaml" in pinned
    # The code is in the image: the lock pins the image and what it was built from.
    lock = json.loads((entry / "images.lock.json").read_text())["images"]["count"]
    assert lock["id"].startswith("sha256:") and "code/count.py" in lock["context_files"]
    assert "count: passed" in done.stdout, done.stdout[-2000:]


@pytest.mark.docker
def test_the_authoring_guide_loop_from_recast_new_runs_as_written(tmp_path):
    done = run_walkthrough("new", tmp_path, "docs/authoring.md")
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    entry = tmp_path / "mycatalog" / "demo"
    reference = json.loads((entry / "examples" / "default.results.json").read_text())["values"]
    assert reference["efficiency"] == [0.6, pytest.approx(2 / 3)]
    assert reference["total_yield"] == pytest.approx(0.01 * 139000 * 0.6 + 0.002 * 139000 * 2 / 3)
    assert "demo step:select: 2/2 checks matched" in done.stdout and "demo: passed" in done.stdout
