"""The compact likelihood (recast.likelihood.compact) is pyhf's: value, gradient and batches.

Compared with pyhf's own ``model.logpdf`` (numpy) at parameter points spread
around the start and far from it, on points of every published likelihood
and on a workspace with every HistFactory modifier type, under the default
interpolation codes and the others it computes (normsys code1, histosys
code0). Its gradient is compared with central finite differences of pyhf's
likelihood. A model it does not compute (histosys code2) gets None, and the
fits then take pyhf's likelihood with finite differences, as before.
"""

from __future__ import annotations

import numpy as np
import pytest
from likelihood_helpers import onelbb, onelbb_dir, sbottom_dir, write_json  # noqa: F401
from test_likelihood_building import _every_modifier_workspace, _signal_patch

from recast.likelihood import load_workspace
from recast.likelihood.compact import CompactLikelihood
from recast.likelihood.fits import Fitter
from recast.likelihood.workspace import modifier_settings


def _spread_points(model, count=6, seed=3):
    init = np.asarray(model.config.suggested_init(), dtype=float)
    bounds = np.asarray(model.config.suggested_bounds(), dtype=float)
    free = ~np.asarray(model.config.suggested_fixed(), dtype=bool)
    width = np.minimum(1.0, (bounds[:, 1] - bounds[:, 0]) / 4)
    rng = np.random.default_rng(seed)
    points = [init]
    for k in range(1, count):
        spread = 0.5 if k < count // 2 else 1.8  # inside and beyond the +-1 sigma interpolation region
        moved = init + spread * rng.normal(size=len(init)) * width * free
        points.append(np.clip(moved, bounds[:, 0] + 1e-2, bounds[:, 1]))  # finite differences stay inside
    return points


def _assert_compact_is_pyhf(model, data, what: str, gradient_points: int = 2):
    data = np.asarray(data, dtype=float)
    compact = CompactLikelihood.of(model)
    assert compact is not None, f"{what}: no compact likelihood"
    points = _spread_points(model)
    reference = np.array([float(model.logpdf(p, data)[0]) for p in points])
    values = np.array([compact.value_and_grad(p, data)[0] for p in points])
    np.testing.assert_allclose(values, reference, rtol=1e-12, atol=1e-9, err_msg=what)
    np.testing.assert_allclose(compact.values(np.array(points), data), reference, rtol=1e-12, atol=1e-9, err_msg=what)
    for pars in points[1 : 1 + gradient_points]:
        _, gradient = compact.value_and_grad(pars, data)
        step = 1e-6
        numeric = np.array([
            (float(model.logpdf(pars + step * e, data)[0]) - float(model.logpdf(pars - step * e, data)[0])) / (2 * step)
            for e in np.eye(len(pars))
        ])
        np.testing.assert_allclose(gradient, numeric, rtol=1e-4, atol=1e-4 * max(1.0, np.abs(numeric).max()), err_msg=what)


@pytest.mark.parametrize("region", ["RegionA", "RegionB", "RegionC"])
def test_sbottom_points(sbottom_dir, region):
    patches = sorted((sbottom_dir / region).glob("patch.*.json"))[::40]
    likelihood = load_workspace(sbottom_dir / region / "BkgOnly.json", patches)
    for point in likelihood.points[:3]:
        model, data = likelihood.model_and_data(point, modifier_settings())
        _assert_compact_is_pyhf(model, data, f"{region} {point.name}")


def test_onelbb_points_and_other_codes(onelbb):
    for point in onelbb.points[::60]:
        model, data = onelbb.model_and_data(point, modifier_settings())
        _assert_compact_is_pyhf(model, data, point.name, gradient_points=1)
    model, data = onelbb.model_and_data(onelbb.points[3], modifier_settings("code1", "code0"))
    _assert_compact_is_pyhf(model, data, "1Lbb, code1/code0", gradient_points=1)


@pytest.mark.parametrize("codes", [("code4", "code4p"), ("code1", "code0")])
def test_every_modifier_type(tmp_path, codes):
    folder = tmp_path / "w"
    workspace = write_json(folder / "BkgOnly.json", _every_modifier_workspace())
    patches = [write_json(folder / f"patch.sig_{i}.json", _signal_patch(0.5 + i, with_sys=i % 2 == 1)) for i in range(2)]
    likelihood = load_workspace(workspace, patches)
    for point in likelihood.points:
        model, data = likelihood.model_and_data(point, modifier_settings(*codes))
        _assert_compact_is_pyhf(model, data, f"{point.name} {codes}", gradient_points=3)


def test_fits_use_it_and_fall_back_where_it_does_not_apply(tmp_path):
    folder = tmp_path / "w"
    workspace = write_json(folder / "BkgOnly.json", _every_modifier_workspace())
    likelihood = load_workspace(workspace, [write_json(folder / "patch.sig_1.json", _signal_patch(1.5, with_sys=True))])
    point = likelihood.points[0]

    model, data = likelihood.model_and_data(point, modifier_settings())
    fitter = Fitter(model, backend="numpy")
    assert fitter.compact is not None and fitter.exact_gradients
    exact = fitter.fit(np.asarray(data, dtype=float))

    # histosys code2 is not computed here: pyhf's likelihood and finite differences, the same minimum
    model2, data2 = likelihood.model_and_data(point, modifier_settings("code4", "code2"))
    assert CompactLikelihood.of(model2) is None
    fallback = Fitter(model2, backend="numpy")
    assert fallback.compact is None and not fallback.exact_gradients
    assert exact.converged and fallback.fit(np.asarray(data2, dtype=float)).converged
    # the same model but for histosys's interpolation inside +-1 sigma: minima close, not equal
    assert abs(exact.twice_nll - fallback.fit(np.asarray(data2, dtype=float)).twice_nll) < 0.5


def test_a_compact_likelihood_that_is_not_pyhfs_is_not_used(tmp_path, monkeypatch):
    folder = tmp_path / "w"
    workspace = write_json(folder / "BkgOnly.json", _every_modifier_workspace())
    likelihood = load_workspace(workspace, [write_json(folder / "patch.sig_1.json", _signal_patch(1.5, with_sys=True))])
    model, _ = likelihood.model_and_data(likelihood.points[0], modifier_settings())
    original = CompactLikelihood.value_and_grad

    def wrong(self, pars, data):
        value, gradient = original(self, pars, data)
        return value + 1e-3, gradient

    monkeypatch.setattr(CompactLikelihood, "value_and_grad", wrong)
    fitter = Fitter(model, backend="numpy")
    assert fitter.compact is None and not fitter.exact_gradients



def test_the_automatic_backend_is_numpy_with_exact_gradients(sbottom_dir):
    from recast.likelihood.infer import PointEngine, Settings

    assert Settings().backend == "numpy" and Settings(backend="jax").backend == "jax"
    assert Settings(normsys="code1", histosys="code0").backend == "numpy"
    # histosys code2 is not computed compactly: numpy would take finite differences, jax is worth its start
    assert Settings(histosys="code2").backend == "jax" and Settings(histosys="code2", backend="numpy").backend == "numpy"
    assert Settings(histosys="code2", method="pyhf").backend == "numpy"
    likelihood = load_workspace(sbottom_dir / "RegionB" / "BkgOnly.json", sorted((sbottom_dir / "RegionB").glob("patch.*.json"))[:1])
    engine = PointEngine(likelihood, likelihood.points[0], Settings())
    engine.cls(1.0)
    assert engine.hypotest.fitter.compact is not None  # exact gradients, not finite differences
