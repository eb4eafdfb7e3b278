"""Honest results on ill-conditioned likelihoods: doubtful fits are found, flagged and explained.

The constructed likelihood below has a systematic whose up and down variations
both raise the background (a symmetric histosys): -2 log L is even in its
nuisance parameter, so its gradient vanishes at the suggested start alpha=0,
a saddle point. pyhf's free fit stays there (mu_hat = 1, -2 log L 28.77)
while the global minimum is at alpha = +-0.75, mu_hat = 0 (-2 log L 16.25):
the situation of issue 11's published example, small enough to reason about.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from likelihood_helpers import REFERENCE_CLS, ROOT, onelbb, onelbb_dir, patch_path, sbottom_dir, write_json  # noqa: F401

from recast.likelihood import cls, load_workspace, scan, upper_limit
from recast.likelihood.quality import TWICE_NLL_TOLERANCE


def symmetric_systematic_workspace(sr_data: float = 60.0, cr_data: float = 140.0) -> dict:
    def symmetric(nominal: float) -> dict:
        return {"hi_data": [1.4 * nominal], "lo_data": [1.4 * nominal]}

    return {
        "channels": [
            {"name": "SR", "samples": [{"name": "bkg", "data": [50.0], "modifiers": [
                {"name": "alpha_sym", "type": "histosys", "data": symmetric(50.0)}]}]},
            {"name": "CR", "samples": [{"name": "bkg", "data": [100.0], "modifiers": [
                {"name": "alpha_sym", "type": "histosys", "data": symmetric(100.0)}]}]},
        ],
        "observations": [{"name": "SR", "data": [sr_data]}, {"name": "CR", "data": [cr_data]}],
        "measurements": [{"name": "meas", "config": {"poi": "mu", "parameters": []}}],
        "version": "1.0.0",
    }


SIGNAL = [{"op": "add", "path": "/channels/0/samples/-", "value": {
    "name": "signal", "data": [10.0], "modifiers": [{"name": "mu", "type": "normfactor", "data": None}]}}]


@pytest.fixture(scope="module")
def saddle(tmp_path_factory):
    folder = tmp_path_factory.mktemp("saddle")
    workspace = write_json(folder / "BkgOnly.json", symmetric_systematic_workspace())
    patch = write_json(folder / "patch.Sym_10_1_saddle.json", SIGNAL)
    return workspace, patch


def test_the_constructed_likelihood_fools_plain_pyhf(saddle):
    """The premise: pyhf's free fit stays at its start, far above the global minimum."""
    import pyhf

    workspace = pyhf.Workspace(json.loads(saddle[0].read_text()))
    model = workspace.model(patches=[SIGNAL])
    data = workspace.data(model)
    pars, twice_nll = pyhf.infer.mle.fit(data, model, return_fitted_val=True)
    assert list(pars) == pytest.approx([0.0, 1.0]) and float(twice_nll) == pytest.approx(28.7658, abs=1e-3)
    assert float(-2 * model.logpdf([0.75, 0.0], data)[0]) < 16.5  # a much lower point exists


@pytest.mark.parametrize("backend", ["numpy", "jax"])
def test_fast_method_finds_the_global_minimum_and_flags_the_point(saddle, backend):
    result = cls(*saddle, backend=backend)
    quality = result["fit_quality"]
    assert quality["status"] == "doubtful" and result["warnings"] == quality["warnings"]
    free = quality["fits"]["free_data"]
    assert free["twice_nll"] == pytest.approx(16.2501, abs=1e-3) and free["mu_hat"] == pytest.approx(0.0, abs=1e-6)
    pyhf_start = next(a for a in free["alternatives"] if a["start"].startswith("pyhf's start"))
    assert pyhf_start["twice_nll"] == pytest.approx(28.7658, abs=1e-3) and pyhf_start["stayed_at_start"]
    assert any("free fit to the data ends at -2 log L 28.7658 (mu_hat 1)" in w and "doubtful" in w for w in result["warnings"])
    # the numbers come from the lowest minimum: far from plain pyhf's 0.5506
    assert result["cls_obs"] == pytest.approx(0.1605, abs=2e-3)


def test_plain_pyhf_method_is_checked_too(saddle):
    result = cls(*saddle, method="pyhf")
    assert result["cls_obs"] == pytest.approx(0.55055, abs=1e-4)  # exactly plain pyhf's number
    assert result["fit_quality"]["status"] == "doubtful"
    assert "plain pyhf's free fit to the data ends at -2 log L 28.7658 (mu_hat 1, where it started)" in result["warnings"][0]


def test_limit_and_scan_carry_the_flag(saddle):
    limit = upper_limit(*saddle, backend="jax")
    assert limit["fit_quality"]["status"] == "doubtful" and limit["warnings"]
    assert limit["fit_quality"]["fits"]["conditional"]["fits"] > 5
    result = scan(load_workspace(saddle[0], [saddle[1]]), backend="numpy", workers=1, progress=False)
    assert result["doubtful"] == 1 and result["points"][0]["fit_quality"]["status"] == "doubtful"


def test_a_well_conditioned_variant_is_not_flagged(tmp_path):
    """Same structure, an asymmetric systematic: one minimum, found from every start."""
    spec = symmetric_systematic_workspace()
    for channel, nominal in zip(spec["channels"], (50.0, 100.0)):
        channel["samples"][0]["modifiers"][0]["data"]["lo_data"] = [0.6 * nominal]
    workspace = write_json(tmp_path / "BkgOnly.json", spec)
    patch = write_json(tmp_path / "patch.asym_1.json", SIGNAL)
    fast = cls(workspace, patch, backend="numpy")
    plain = cls(workspace, patch, method="pyhf")
    assert fast["fit_quality"]["status"] == "ok" and fast["warnings"] == []
    assert plain["fit_quality"]["status"] == "ok"
    assert fast["cls_obs"] == pytest.approx(plain["cls_obs"], rel=1e-4)


def test_strict_exit_status_and_warning_lines(saddle):
    def run(*extra):
        return subprocess.run([sys.executable, "-c", "from recast.cli import main; main()", "likelihood", "cls", str(saddle[0]),
                               "--patch", str(saddle[1]), "--json", *extra], capture_output=True, text=True, cwd=ROOT)

    default = run()
    assert default.returncode == 0, default.stderr
    assert "warning:" in default.stderr and "1 of 1 result(s) doubtful" in default.stderr
    assert json.loads(default.stdout)["fit_quality"]["status"] == "doubtful"
    strict = run("--strict")
    assert strict.returncode == 3 and "--strict" in strict.stderr
    assert json.loads(strict.stdout)["fit_quality"]["status"] == "doubtful"  # the result is still printed


# well-conditioned published points: no warnings (the checks may refit, and must find the same minimum)
@pytest.mark.parametrize("region,point", [(r[0], r[1]) for r in REFERENCE_CLS] + [("RegionB", "sbottom_900_131_1")])
def test_published_sbottom_points_get_no_warning(sbottom_dir, region, point):
    result = cls(sbottom_dir / region / "BkgOnly.json", patch_path(sbottom_dir, region, point), backend="jax")
    assert result["fit_quality"]["status"] == "ok", result["warnings"]
    assert result["warnings"] == []


def test_published_1lbb_points_get_no_warning(onelbb):
    results = scan(onelbb, ["C1N2_Wh_hbb_900_250", "C1N2_Wh_hbb_500_100", "C1N2_Wh_hbb_1000_0"], backend="jax", workers=1, progress=False)
    assert results["doubtful"] == 0 and results["failed"] == 0
    for row in results["points"]:
        assert row["fit_quality"]["status"] == "ok", row["warnings"]


def test_tolerance_is_documented_in_the_record():
    assert 0 < TWICE_NLL_TOLERANCE <= 0.05
