"""Scans over signal points: both cores, plain pyhf's numbers, failures recorded, table and plot written."""

from __future__ import annotations

import csv
import json

import pytest
from likelihood_helpers import assert_close, assert_cls_close, onelbb, onelbb_dir, patch_path, sbottom_dir, write_json  # noqa: F401

from recast.likelihood import SignalPoint, cls, exclusion_plot, load_workspace, scan
from recast.likelihood.scan import write_scan

POINTS = ["sbottom_1000_205_60", "sbottom_1200_550_60", "sbottom_1300_850_60", "sbottom_1400_205_60",
          "sbottom_1500_550_60", "sbottom_1600_850_60", "sbottom_1000_650_60", "sbottom_1200_1150_60"]


@pytest.fixture(scope="module")
def region_a(sbottom_dir):
    patches = [patch_path(sbottom_dir, "RegionA", p) for p in POINTS]
    return load_workspace(sbottom_dir / "RegionA" / "BkgOnly.json", patches, labels=["msb", "mn2", "mn1"])


@pytest.fixture(scope="module")
def two_process_scan(region_a):
    broken = SignalPoint(
        name="sbottom_broken", source="broken.json", values={"msb": 1000.0, "mn2": 100.0, "mn1": 60.0},
        patch=[{"op": "add", "path": "/channels/7/samples/0", "value": {"name": "s", "data": [1.0], "modifiers": []}}],
    )
    return scan(region_a, [*region_a.points[:4], broken, *region_a.points[4:]], backend="jax", workers=2, progress=False)


def test_scan_uses_two_processes_and_records_a_failing_point(two_process_scan):
    result = two_process_scan
    assert result["workers"] == 2
    assert [r["point"] for r in result["points"]] == [*POINTS[:4], "sbottom_broken", *POINTS[4:]]
    assert result["failed"] == 1
    failed = result["points"][4]
    assert failed["error_type"] == "PatchError"
    assert "broken.json (point sbottom_broken)" in failed["error"] and "/channels/7/samples/0" in failed["error"]
    assert all("cls_obs" in r for r in result["points"] if r["point"] != "sbottom_broken")
    assert result["settings"]["backend"] == "jax" and result["settings"]["pyhf_version"] == "0.7.6"


@pytest.mark.parametrize("index", [0, 3, 7])
def test_scan_gives_plain_pyhf_numbers(two_process_scan, region_a, index):
    row = next(r for r in two_process_scan["points"] if r["point"] == POINTS[index])
    plain = cls(region_a, region_a.point(POINTS[index]), method="pyhf", backend="numpy")
    assert_cls_close(row["cls_obs"], plain["cls_obs"], 1e-4, f"{POINTS[index]} CLs_obs")
    assert_cls_close(row["cls_exp"], plain["cls_exp"], 1e-4, f"{POINTS[index]} CLs_exp")


def test_in_process_scan_with_limits_and_selection(region_a):
    result = scan(region_a, where={"mn2": 550.0}, limits=True, backend="jax", workers=1, progress=False)
    assert [r["point"] for r in result["points"]] == ["sbottom_1200_550_60", "sbottom_1500_550_60"]
    for row in result["points"]:
        assert len(row["mu_up_exp"]) == 5 and row["mu_up_obs"] > 0
        # excluded at mu=1 exactly when the observed limit is below 1
        assert row["excluded_obs"] == (row["mu_up_obs"] < 1.0)


def test_table_csv_json_and_exclusion_plot(two_process_scan, tmp_path):
    write_scan(two_process_scan, tmp_path / "scan.json", tmp_path / "scan.csv")
    assert json.loads((tmp_path / "scan.json").read_text())["failed"] == 1
    rows = list(csv.DictReader(open(tmp_path / "scan.csv")))
    assert len(rows) == 9 and rows[0]["msb"] == "1000.0" and float(rows[0]["cls_obs"]) > 0
    assert rows[4]["error"].startswith("broken.json")
    from recast.likelihood.plot import PlotWarning

    with pytest.warns(PlotWarning, match="contours drawn anyway"):
        path = exclusion_plot(two_process_scan, tmp_path / "exclusion.png", "msb", "mn2", where={"mn1": 60}, force=True)
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000


def test_scan_of_patchset_points_by_name_pattern(onelbb):
    result = scan(onelbb, ["C1N2_Wh_hbb_1000_*"], where={"m2": 0.0}, backend="jax", workers=1, progress=False)
    assert [r["point"] for r in result["points"]] == ["C1N2_Wh_hbb_1000_0"]
    assert result["labels"] == ["m1", "m2"] and result["points"][0]["values"] == {"m1": 1000.0, "m2": 0.0}
    assert 0 < result["points"][0]["cls_obs"] <= 1


def test_plot_title_names_analysis_region_and_fixed_parameters(two_process_scan, tmp_path):
    from recast.likelihood.plot import PlotWarning, default_title

    result = {**two_process_scan, "analysis": "atlas-susy-2018-31", "region": "RegionA"}
    assert default_title(result, {"mn1": 60.0}, 0.05, "GeV") == "atlas-susy-2018-31, RegionA: 95% CL exclusion (CLs) at μ = 1\nmn1 = 60 GeV"
    # 8 points: too few for a contour (a warning, the points are drawn)
    with pytest.warns(PlotWarning, match=r"8 points; a contour needs at least 10"):
        exclusion_plot(result, tmp_path / "few.png", "msb", "mn2", where={"mn1": 60})


def test_line_progress_every_few_points(capsys):
    import io

    from recast.likelihood.scan import LineProgress

    stream = io.StringIO()
    progress = LineProgress(30, every=10, stream=stream)
    with progress:
        for i in range(30):
            progress.update(0, last=f"p{i}", record={"point": f"p{i}", "error": "x"} if i == 3 else {"point": f"p{i}"})
    lines = stream.getvalue().splitlines()
    assert lines[0] == "scan: 30 points" and len(lines) == 4
    assert lines[-1].startswith("scan: 30/30 points (1 failed, 0 doubtful)")


FORKED_SCAN = """
import json, sys
sys.path.insert(0, sys.argv[1])
from recast.likelihood import load_workspace, scan
from recast.likelihood.scan import can_fork
likelihood = load_workspace(sys.argv[2], json.loads(sys.argv[3]))
forkable = can_fork()
two = scan(likelihood, workers=2, progress=False)
one = scan(likelihood, workers=1, progress=False)
print(json.dumps({"forkable": forkable, "two": two, "one": one}))
"""


def test_a_scan_forks_its_worker_before_jax_and_gets_the_same_numbers(sbottom_dir, tmp_path):
    """In a fresh process (jax not imported) the worker is forked, not spawned; its points are the same."""
    import subprocess
    import sys
    from pathlib import Path

    patches = [str(patch_path(sbottom_dir, "RegionA", p)) for p in POINTS[:6]]
    root = Path(__file__).resolve().parent.parent
    output = subprocess.run(
        [sys.executable, "-c", FORKED_SCAN, str(root), str(sbottom_dir / "RegionA" / "BkgOnly.json"), json.dumps(patches)],
        check=True, capture_output=True, text=True, cwd=root, timeout=600,
    ).stdout
    found = json.loads(output.splitlines()[-1])
    assert found["forkable"] and found["two"]["workers"] == 2 and found["two"]["failed"] == 0
    one = {r["point"]: r for r in found["one"]["points"]}
    for row in found["two"]["points"]:
        assert_cls_close(row["cls_obs"], one[row["point"]]["cls_obs"], 1e-9, row["point"])
        assert_cls_close(row["cls_exp"], one[row["point"]]["cls_exp"], 1e-9, row["point"])


def test_a_scan_leaves_the_garbage_collector_as_it_found_it():
    import gc

    from recast.likelihood.scan import _collector_spared

    # other tests in this process may have frozen the heap (the request service does, at start):
    # begin from nothing frozen, and freeze again at the end if something was
    previously_frozen = gc.get_freeze_count()
    gc.unfreeze()
    threshold = gc.get_threshold()
    try:
        with _collector_spared():
            assert gc.get_freeze_count() > 0 and gc.get_threshold()[0] >= 20000
        assert gc.get_threshold() == threshold and gc.get_freeze_count() == 0
        # objects a caller froze stay frozen
        gc.freeze()
        before = gc.get_freeze_count()
        with _collector_spared():
            pass
        assert gc.get_freeze_count() == before and gc.get_threshold() == threshold
    finally:
        gc.unfreeze()
        if previously_frozen:
            gc.freeze()
