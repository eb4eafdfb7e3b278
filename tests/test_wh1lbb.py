"""The example analysis's physics code (containers/wh1lbb): generator, selection, patch, gather.

Install it with ``pip install -e containers/wh1lbb``; without that, the
tests import it from the checkout.
"""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyhf
import pylhe
import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE_SRC = ROOT / "containers" / "wh1lbb" / "src"
try:
    import wh1lbb  # noqa: F401
except ImportError:
    sys.path.insert(0, str(PACKAGE_SRC))

from wh1lbb import analysis, gather, generate, patch, selection, workspace  # noqa: E402

CATALOG = ROOT / "catalog" / "wh1lbb"
BKG_ONLY = CATALOG / "likelihood" / "BkgOnly.json"
SAMPLE_750 = CATALOG / "examples" / "samples" / "C1N2_Wh_750_0.lhe.gz"
XSEC_600_PB = 0.0024863  # sigma x BR of the 600 GeV point, as in containers/wh1lbb/README.md


def run_select(events: Path, out: Path, cross_section_pb: float = XSEC_600_PB, luminosity_fb: float = 139.0) -> int:
    return selection.main([
        str(events), "--name", "C1N2_600_0", "--m-c1n2", "600", "--m-n1", "0",
        "--cross-section-pb", str(cross_section_pb), "--luminosity-fb", str(luminosity_fb), "--out", str(out),
    ])


@pytest.fixture(scope="module")
def sample(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("events") / "C1N2_600_0.lhe.gz"
    assert generate.main(["--m-c1n2", "600", "--m-n1", "0", "--events", "600", "--seed", "7", "--out", str(path)]) == 0
    return path


@pytest.fixture(scope="module")
def yields_file(sample, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("select") / "yields.json"
    assert run_select(sample, out) == 0
    return out


@pytest.fixture(scope="module")
def patch_file(yields_file, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("patch") / "patch.json"
    assert patch.main([str(yields_file), "--workspace", str(BKG_ONLY), "--out", str(out)]) == 0
    return out


# -- generator ---------------------------------------------------------------


def test_generator_is_deterministic(sample, tmp_path):
    again = tmp_path / "again.lhe.gz"
    other_seed = tmp_path / "other.lhe.gz"
    generate.main(["--m-c1n2", "600", "--m-n1", "0", "--events", "600", "--seed", "7", "--out", str(again)])
    generate.main(["--m-c1n2", "600", "--m-n1", "0", "--events", "600", "--seed", "8", "--out", str(other_seed)])
    assert again.read_bytes() == sample.read_bytes()
    assert other_seed.read_bytes() != sample.read_bytes()


def test_example_sample_regenerates_byte_for_byte(tmp_path):
    out = tmp_path / SAMPLE_750.name
    generate.main(["--m-c1n2", "750", "--m-n1", "0", "--events", "1500", "--seed", "750", "--out", str(out)])
    assert out.read_bytes() == SAMPLE_750.read_bytes()


def test_generated_lhe_reads_with_pylhe_and_conserves_momentum(sample):
    events = list(pylhe.LHEFile.fromfile(str(sample)).events)
    assert len(events) == 600
    for event in events[:50]:
        particles = event.particles
        assert len(particles) == 12
        ids = sorted(abs(int(p.id)) for p in particles if int(p.status) == 1)
        assert ids[:4] == [5, 5, 11, 12] or ids[:4] == [5, 5, 13, 14]
        assert ids[-2:] == [1000022, 1000022]
        p4 = np.array([[p.e, p.px, p.py, p.pz] for p in particles])
        status = np.array([int(p.status) for p in particles])
        np.testing.assert_allclose(p4[status == 1].sum(axis=0), p4[status == -1].sum(axis=0), atol=0.05)
        # The chargino carries the mass it was generated with.
        chargino = p4[2]
        assert chargino[0] ** 2 - np.sum(chargino[1:] ** 2) == pytest.approx(600.0**2, rel=1e-3)


def test_generator_rejects_impossible_masses(tmp_path, capsys):
    assert generate.main(["--m-c1n2", "200", "--m-n1", "100", "--events", "10", "--seed", "1",
                          "--out", str(tmp_path / "x.lhe")]) == 2
    assert "--m-c1n2 200 is too light" in capsys.readouterr().err


# -- selection ---------------------------------------------------------------


def test_selection_fills_every_region_sensibly(yields_file):
    result = json.loads(yields_file.read_text())
    assert result["name"] == "C1N2_600_0"
    assert result["parameters"] == {"m_C1N2": 600.0, "m_N1": 0.0}
    assert result["n_events"] == 600
    produced = XSEC_600_PB * 1000 * 139.0
    assert set(result["regions"]) == {r.name for r in analysis.REGIONS}
    for region in analysis.REGIONS:
        entry = result["regions"][region.name]
        assert len(entry["yields"]) == len(entry["stat_uncertainties"]) == region.n_bins
        assert all(y >= 0 for y in entry["yields"])
        # A bin of k unit-weight MC events has yield k*w and uncertainty sqrt(k)*w.
        for y, s, k in zip(entry["yields"], entry["stat_uncertainties"], entry["mc_events"]):
            assert y == pytest.approx(k * produced / 600) and s == pytest.approx(np.sqrt(k) * produced / 600)
    signal_regions = sum(sum(result["regions"][r]["yields"]) for r in ("SRLM", "SRMM", "SRHM"))
    # At 600 GeV a sizeable but not total fraction of the signal reaches the SRs, mostly SRHM.
    assert 0.03 * produced < signal_regions < 0.3 * produced
    assert sum(result["regions"]["SRHM"]["yields"]) > sum(result["regions"]["SRLM"]["yields"])
    cutflow = list(result["cutflow"].values())
    assert cutflow[0]["events"] == 600 and cutflow[0]["yield"] == pytest.approx(produced)
    assert all(a["events"] >= b["events"] for a, b in zip(cutflow, cutflow[1:]))
    assert cutflow[-1]["yield"] == pytest.approx(signal_regions)


def test_selection_is_deterministic_and_linear_in_cross_section(sample, yields_file, tmp_path):
    again = tmp_path / "again.json"
    doubled = tmp_path / "doubled.json"
    run_select(sample, again)
    run_select(sample, doubled, cross_section_pb=2 * XSEC_600_PB)
    assert again.read_text() == yields_file.read_text()
    nominal = json.loads(yields_file.read_text())["regions"]["SRHM"]["yields"]
    assert json.loads(doubled.read_text())["regions"]["SRHM"]["yields"] == pytest.approx([2 * y for y in nominal])


def test_selection_errors_name_the_file(tmp_path, capsys):
    missing = tmp_path / "missing.lhe.gz"
    assert run_select(missing, tmp_path / "y.json") == 2
    assert f"{missing}: LHE file not found" in capsys.readouterr().err
    garbage = tmp_path / "garbage.lhe"
    garbage.write_text("these are not events\n")
    assert run_select(garbage, tmp_path / "y.json") == 2
    assert f"{garbage}: not a readable LHE file" in capsys.readouterr().err
    truncated = tmp_path / "truncated.lhe.gz"
    truncated.write_bytes(gzip.compress(b"<LesHouchesEvents version='3.0'>\n<init>\n2212")[:30])
    assert run_select(truncated, tmp_path / "y.json") == 2
    assert str(truncated) in capsys.readouterr().err
    assert run_select(SAMPLE_750, tmp_path / "y.json", cross_section_pb=-1.0) == 2
    assert "--cross-section-pb must be a positive number" in capsys.readouterr().err
    assert not (tmp_path / "y.json").exists()


# -- workspace and patch -----------------------------------------------------


def test_archived_workspace_is_valid_and_regenerates():
    archived = json.loads(BKG_ONLY.read_text())
    assert archived == workspace.build()
    ws = pyhf.Workspace(archived)
    assert {c: ws.channel_nbins[c] for c in ws.channels} == {r.name: r.n_bins for r in analysis.REGIONS}
    model = ws.model(poi_name=None)
    systematics = {name for name, kind in ws.modifiers if kind != "normfactor" and kind != "staterror"}
    assert len(systematics) >= 5
    assert {"mu_ttbar", "mu_W"} <= set(model.config.par_order)


def test_patch_adds_signal_to_every_region(patch_file, yields_file):
    operations = json.loads(patch_file.read_text())
    channels = [c["name"] for c in json.loads(BKG_ONLY.read_text())["channels"]]
    assert all(op["op"] == "add" for op in operations)
    patched = {channels[int(op["path"].split("/")[2])]: op["value"] for op in operations}
    assert set(patched) == set(channels)
    yields = json.loads(yields_file.read_text())["regions"]
    for channel, sample in patched.items():
        assert sample["data"] == yields[channel]["yields"]
        kinds = {m["name"]: m["type"] for m in sample["modifiers"]}
        assert kinds["mu_SIG"] == "normfactor" and kinds["lumi"] == "lumi"
        assert kinds[f"staterror_{channel}"] == "staterror"
        assert kinds["JES"] == "histosys" and kinds["btag"] == "normsys"


def test_patched_workspace_runs_a_hypotest(patch_file):
    ws = pyhf.Workspace(json.loads(BKG_ONLY.read_text()))
    model = ws.model(patches=[json.loads(patch_file.read_text())])
    assert model.config.poi_name == "mu_SIG"
    cls_obs, cls_exp = pyhf.infer.hypotest(1.0, ws.data(model), model, test_stat="qtilde", return_expected_set=True)
    assert 0.0 <= float(cls_obs) <= 1.0
    assert [float(c) for c in cls_exp] == sorted(float(c) for c in cls_exp)


def test_patch_without_jes_variations_falls_back_to_a_normsys(yields_file, tmp_path):
    yields = json.loads(yields_file.read_text())
    for region in yields["regions"].values():
        del region["variations"]
    operations = patch.build_patch(yields, Path("y.json"), json.loads(BKG_ONLY.read_text()), BKG_ONLY)
    jes = [m for op in operations for m in op["value"]["modifiers"] if m["name"] == "JES"]
    assert {m["type"] for m in jes} == {"normsys"}


@pytest.mark.parametrize(
    ("regions", "message"),
    [
        ({"SRXX": {"yields": [1.0], "stat_uncertainties": [0.1]}}, "region 'SRXX' is not a channel of the workspace"),
        ({"SRHM": {"yields": [1.0, 2.0], "stat_uncertainties": [0.1, 0.1]}}, "regions.SRHM.yields has 2 bins but channel 'SRHM'"),
        ({"CRw": {"yields": [-1.0], "stat_uncertainties": [0.1]}}, "regions.CRw.yields: expected non-negative numbers"),
        ({}, "expected a 'regions' object"),
    ],
)
def test_patch_rejects_yields_that_do_not_fit_the_workspace(regions, message, tmp_path, capsys):
    bad = tmp_path / "bad_yields.json"
    bad.write_text(json.dumps({"regions": regions}))
    assert patch.main([str(bad), "--workspace", str(BKG_ONLY), "--out", str(tmp_path / "p.json")]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and message in err
    assert not (tmp_path / "p.json").exists()


def test_patch_names_an_unreadable_workspace(yields_file, tmp_path, capsys):
    broken = tmp_path / "BkgOnly.json"
    broken.write_text("{not json")
    assert patch.main([str(yields_file), "--workspace", str(broken), "--out", str(tmp_path / "p.json")]) == 2
    assert f"{broken}: background-only workspace is not valid JSON" in capsys.readouterr().err


# -- gather ------------------------------------------------------------------


def _point_files(directory: Path, mass: float, cls_obs: float, mu_up: float) -> tuple[Path, Path, Path]:
    y = directory / f"y{mass:g}.json"
    c = directory / f"c{mass:g}.json"
    lim = directory / f"l{mass:g}.json"
    y.write_text(json.dumps({"name": f"C1N2_{mass:g}_0", "parameters": {"m_C1N2": mass, "m_N1": 0.0},
                             "cross_section_pb": 0.01, "regions": {}}))
    c.write_text(json.dumps({"cls_obs": cls_obs, "cls_exp": [cls_obs / 8, cls_obs / 4, cls_obs / 2, cls_obs, 2 * cls_obs],
                             "poi": 1.0, "engine": "opaque"}))
    lim.write_text(json.dumps({"mu_up_obs": mu_up, "mu_up_exp": [mu_up / 2, mu_up / 1.5, mu_up, 1.5 * mu_up, 2 * mu_up]}))
    return y, c, lim


def test_gather_writes_summary_csv_and_png(tmp_path):
    # Given out of mass order on purpose: the summary sorts by mass.
    points = [_point_files(tmp_path, 700.0, 0.30, 1.6), _point_files(tmp_path, 400.0, 0.01, 0.5)]
    out = tmp_path / "out"
    args = ["--yields", *(str(p[0]) for p in points), "--cls", *(str(p[1]) for p in points),
            "--limits", *(str(p[2]) for p in points), "--out-dir", str(out)]
    assert gather.main(args) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert [p["m_C1N2"] for p in summary["points"]] == [400.0, 700.0]
    low, high = summary["points"]
    assert low["excluded_obs"] and low["excluded_exp"] and not high["excluded_obs"] and not high["excluded_exp"]
    assert low["cls_exp"][2] == pytest.approx(0.005) and high["mu_up_exp"][4] == pytest.approx(3.2)
    rows = (out / "summary.csv").read_text().splitlines()
    assert rows[0].split(",")[:4] == ["name", "m_C1N2", "m_N1", "cross_section_pb"]
    assert rows[1].startswith("C1N2_400_0,400,0,") and rows[1].endswith("true,true")
    png = (out / "limits.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    first = {name: (out / name).read_bytes() for name in ("summary.json", "summary.csv", "limits.png")}
    assert gather.main(args) == 0
    assert {name: (out / name).read_bytes() for name in first} == first


def test_gather_rejects_misaligned_or_malformed_inputs(tmp_path, capsys):
    y, c, lim = _point_files(tmp_path, 500.0, 0.02, 0.8)
    assert gather.main(["--yields", str(y), "--cls", str(c), str(c), "--limits", str(lim), "--out-dir", str(tmp_path / "o")]) == 2
    assert "got 1, 2 and 1 files" in capsys.readouterr().err
    c.write_text(json.dumps({"cls_obs": 0.02, "cls_exp": [0.1, 0.2]}))
    assert gather.main(["--yields", str(y), "--cls", str(c), "--limits", str(lim), "--out-dir", str(tmp_path / "o")]) == 2
    assert f"{c}: cls_exp: expected a list of 5 numbers" in capsys.readouterr().err


# -- command lines -----------------------------------------------------------


@pytest.mark.parametrize("module", [generate, selection, patch, gather])
def test_every_option_is_documented(module):
    parser = module.build_parser()
    for action in parser._actions:
        assert action.help, f"{parser.prog}: {action.option_strings or action.dest} has no help"


def test_workspace_module_runs_as_a_script(tmp_path):
    out = tmp_path / "BkgOnly.json"
    env_path = f"{PACKAGE_SRC}"
    subprocess.run([sys.executable, "-m", "wh1lbb.workspace", str(out)], check=True,
                   env={"PYTHONPATH": env_path, "PATH": ""}, cwd=tmp_path)
    assert out.read_bytes() == BKG_ONLY.read_bytes()
