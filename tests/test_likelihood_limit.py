"""Upper limits by root finding, against pyhf's grid scan and pyhf's own hypotest at the roots."""

from __future__ import annotations

import numpy as np
import pytest
from likelihood_helpers import REFERENCE_1LBB_LIMIT, REFERENCE_1LBB_POINT, assert_close, onelbb, onelbb_dir, patch_path, sbottom_dir  # noqa: F401

from recast.likelihood import cls, load_workspace, upper_limit
from recast.likelihood.errors import FitError


@pytest.fixture(scope="module")
def sbottom_point(sbottom_dir):
    return load_workspace(sbottom_dir / "RegionA" / "BkgOnly.json", [patch_path(sbottom_dir, "RegionA", "sbottom_1300_205_60")])


def test_grid_mode_gives_pyhf_linear_grid_scan(sbottom_dir):
    """On a coarse grid (cheap for plain pyhf), the fast limit is pyhf's upper_limit(scan=grid)."""
    likelihood = load_workspace(sbottom_dir / "RegionA" / "BkgOnly.json", [patch_path(sbottom_dir, "RegionA", "sbottom_1400_950_60")])
    grid = np.linspace(0.25, 3.0, 12)
    plain = upper_limit(likelihood, grid=grid, method="pyhf", backend="jax")
    fast = upper_limit(likelihood, grid=grid, backend="numpy")
    assert plain["mu_up_exp"][-1] < 3.0, "every limit must be inside the grid for this comparison"
    assert_close(fast["mu_up_obs"], plain["mu_up_obs"], 1e-4, "observed limit")
    assert_close(fast["mu_up_exp"], plain["mu_up_exp"], 1e-4, "expected limits")
    assert fast["grid"]["points"] == 12


def test_exact_roots_have_cls_at_the_level_by_plain_pyhf(sbottom_point):
    fast = upper_limit(sbottom_point, grid=None, backend="jax")
    assert "grid" not in fast
    assert fast["mu_up_exp"] == sorted(fast["mu_up_exp"])
    at_observed = cls(sbottom_point, mu=fast["mu_up_obs"], method="pyhf")
    assert at_observed["cls_obs"] == pytest.approx(0.05, rel=1e-4)
    at_median = cls(sbottom_point, mu=fast["mu_up_exp"][2], method="pyhf")
    assert at_median["cls_exp"][2] == pytest.approx(0.05, rel=1e-4)


def test_numpy_backend_limit_agrees_with_jax(sbottom_point):
    """The Docker image of the example analysis has no jax: its limits come from the numpy fits."""
    jax_limit = upper_limit(sbottom_point, backend="jax")
    numpy_limit = upper_limit(sbottom_point, backend="numpy")
    assert_close(numpy_limit["mu_up_obs"], jax_limit["mu_up_obs"], 1e-4, "observed")
    assert_close(numpy_limit["mu_up_exp"], jax_limit["mu_up_exp"], 1e-4, "expected")
    assert numpy_limit["settings"]["backend"] == "numpy"


def test_1lbb_published_limit(onelbb):
    """The README's 1Lbb limit (pyhf's 41-point grid, 548 s with plain pyhf) within 1e-3."""
    result = upper_limit(onelbb, REFERENCE_1LBB_POINT, backend="jax")
    observed, expected = REFERENCE_1LBB_LIMIT
    assert_close(result["mu_up_obs"], observed, 1e-3, "1Lbb observed limit")
    assert_close(result["mu_up_exp"], expected, 1e-3, "1Lbb expected limits")
    assert result["grid"] == {"start": 0.0, "stop": 5.0, "points": 41, "interpolation": "linear, as pyhf's linear_grid_scan"}


def test_limit_outside_the_poi_range_is_a_clear_error(sbottom_dir):
    """A point with little signal: CLs stays above 0.05 up to the POI bound."""
    likelihood = load_workspace(sbottom_dir / "RegionB" / "BkgOnly.json", [patch_path(sbottom_dir, "RegionB", "sbottom_1400_550_60")])
    likelihood.spec["measurements"][0]["config"]["parameters"].append({"name": "mu_SIG", "bounds": [[0.0, 1.5]]})
    with pytest.raises(FitError, match=r"sbottom_1400_550_60.*upper POI bound mu=1.5"):
        upper_limit(likelihood, backend="jax")
