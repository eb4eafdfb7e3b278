"""The fast paths of a scan (one trace per structure, shared channels, plain patches, direct SLSQP) give the same numbers.

A scan binds every model of a structure seen before without tracing it: its
numbers come from its own arrays (recast.likelihood.fits.CompiledFunctions).
These tests fail if a point were computed with another point's numbers, or if
a template that does not reproduce pyhf were used.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
from likelihood_helpers import assert_cls_close, onelbb, onelbb_dir, patch_path, sbottom_dir  # noqa: F401

from recast.likelihood import SignalPoint, cls, load_workspace, scan
from recast.likelihood.fits import CompiledFunctions, Fitter
from recast.likelihood.infer import Settings

POINTS = ["sbottom_1000_205_60", "sbottom_1300_850_60", "sbottom_1400_205_60", "sbottom_1600_850_60"]


@pytest.fixture(scope="module")
def region_a(sbottom_dir):
    patches = [patch_path(sbottom_dir, "RegionA", p) for p in POINTS]
    return load_workspace(sbottom_dir / "RegionA" / "BkgOnly.json", patches, labels=["msb", "mn2", "mn1"])


def _models(likelihood):
    settings = Settings(backend="jax")
    return [likelihood.model_and_data(p, settings.modifier_settings) for p in likelihood.points]


def _compare(fitter: Fitter, reference: Fitter, data) -> float:
    """Largest difference of -2 log L and its gradient between two fitters, at three parameter points."""
    rng = np.random.default_rng(3)
    worst = 0.0
    for _ in range(3):
        pars = np.clip(fitter.init + rng.normal(0, 0.3, len(fitter.init)) * fitter.steps, fitter.bounds[:, 0], fitter.bounds[:, 1])
        a, ga = fitter._logpdf_and_grad(pars, data)
        b, gb = reference._logpdf_and_grad(pars, data)
        worst = max(worst, abs(float(a) - float(b)), float(np.max(np.abs(np.asarray(ga) - np.asarray(gb)))))
    return worst


def test_one_trace_per_structure_and_each_point_its_own_numbers(region_a):
    functions = CompiledFunctions()
    models = _models(region_a)
    fitters = [Fitter(model, backend="jax", functions=functions) for model, _ in models]
    assert functions.traces == 1 and functions.compilations == 1 and functions.retraced == 0
    values = []
    for fitter, (model, data) in zip(fitters, models):
        data = np.asarray(data, dtype=float)
        traced = Fitter(model, backend="jax", functions=CompiledFunctions())  # traced on its own
        assert _compare(fitter, traced, data) <= 1e-10
        values.append(fitter.twice_nll(fitter.init, data))
    # the points differ: no point was computed with the first point's numbers
    assert len({round(v, 6) for v in values}) == len(values)


def test_numbers_not_found_in_the_model_are_traced_after_all(region_a, monkeypatch):
    """A template whose numbers do not reproduce pyhf (here: every model gets the first model's numbers) is not used."""
    from recast.likelihood import fits

    functions = CompiledFunctions()
    models = _models(region_a)
    Fitter(models[0][0], backend="jax", functions=functions)
    monkeypatch.setattr(fits, "_resolve", lambda model, path, default: default)
    fitter = Fitter(models[1][0], backend="jax", functions=functions)
    assert functions.retraced == 1 and functions.traces == 2
    data = np.asarray(models[1][1], dtype=float)
    assert np.isclose(fitter.twice_nll(fitter.init, data), -2.0 * float(models[1][0].logpdf(fitter.init, data)[0]), rtol=1e-10)


def test_a_signal_sample_sorted_elsewhere_is_another_structure(region_a):
    """pyhf orders samples by name: a signal named to sort first changes the structure, and its numbers stay right."""
    point = region_a.points[1]
    renamed = copy.deepcopy(point.patch)
    for op in renamed:
        if op["op"] == "add":
            op["value"]["name"] = "AAA_first"
    other = SignalPoint(name="renamed", patch=renamed, source="renamed.json", values=dict(point.values))
    functions = CompiledFunctions()
    settings = Settings(backend="jax")
    for p in (point, other):
        Fitter(region_a.model_and_data(p, settings.modifier_settings)[0], backend="jax", functions=functions)
    # the same shapes, another program: the first point's template is tried, fails the check against
    # pyhf, and the renamed point is traced
    assert functions.traces == 2 and functions.retraced == 1
    result = scan(region_a, [*region_a.points[:2], other], backend="jax", workers=1, progress=False)
    rows = {r["point"]: r for r in result["points"]}
    # the same signal under another name: the same CLs
    assert_cls_close(rows["renamed"]["cls_obs"], rows[point.name]["cls_obs"], 1e-6, "renamed CLs_obs")
    assert_cls_close(rows["renamed"]["cls_exp"], rows[point.name]["cls_exp"], 1e-6, "renamed CLs_exp")


def test_scan_of_one_structure_gives_plain_pyhf_numbers(region_a):
    """Every point of a scan bound from the template: CLs within 1e-4 of plain pyhf (numpy)."""
    result = scan(region_a, backend="jax", workers=1, progress=False)
    for row, point in zip(result["points"], region_a.points):
        plain = cls(region_a, point, method="pyhf", backend="numpy")
        assert_cls_close(row["cls_obs"], plain["cls_obs"], 1e-4, f"{point.name} CLs_obs")
        assert_cls_close(row["cls_exp"], plain["cls_exp"], 1e-4, f"{point.name} CLs_exp")


def test_models_share_the_likelihoods_channels_without_changing_them(region_a):
    """pyhf's Model no longer deep-copies the channels: building models leaves the likelihood's numbers as they were."""
    import json

    from recast.likelihood.workspace import _SharedChannels

    settings = Settings().modifier_settings
    before = json.dumps(region_a.spec)
    first, data = region_a.model_and_data(region_a.points[0], settings)
    for point in region_a.points[1:]:
        region_a.model_and_data(point, settings)
    again, _ = region_a.model_and_data(region_a.points[0], settings)
    pars = np.asarray(first.config.suggested_init()) * 1.01
    assert float(first.logpdf(pars, data)[0]) == float(again.logpdf(pars, data)[0])
    assert json.dumps(region_a.spec) == before
    shared = region_a._channels_as_arrays[0]["samples"][0]["data"]
    with pytest.raises(ValueError):
        shared[0] = 0.0  # read-only: no point's model building can change another point's numbers
    spec = _SharedChannels(channels=[{"name": "c"}], parameters=[{"name": "mu"}])
    copied = copy.deepcopy(spec)
    assert copied["channels"] is spec["channels"] and copied["parameters"] is not spec["parameters"]


def test_plain_patches_skip_jsonschema_only_when_it_would_accept_them(sbottom_dir):
    """The fast check of signal patches never accepts what pyhf's schemas reject."""
    import json

    from recast.likelihood.workspace import _SAMPLE_PATH, _first_error, _plainly_valid, _validator

    def schema_accepts(ops) -> bool:
        if _first_error(_validator("jsonpatch.json"), ops) is not None:
            return False
        sample = _validator("defs.json", "/definitions/sample")
        return all(_first_error(sample, op["value"]) is None for op in ops
                   if op.get("op") in ("add", "replace") and _SAMPLE_PATH.match(op.get("path", "")))

    patch = json.loads(patch_path(sbottom_dir, "RegionA", POINTS[0]).read_text())
    assert _plainly_valid(patch) and schema_accepts(patch)
    sample = next(op for op in patch if op["op"] == "add")["value"]
    by_type = {m["type"]: m for m in sample["modifiers"]}
    assert {"lumi", "staterror", "normsys", "histosys"} <= set(by_type)

    def mutated(change):
        ops = copy.deepcopy(patch)
        change(next(op for op in ops if op["op"] == "add"), ops)
        return ops

    def modifier(kind, change):
        def apply(op, ops):
            change(next(m for m in op["value"]["modifiers"] if m["type"] == kind))
        return apply

    mutations = [
        lambda op, ops: op["value"].pop("data"),
        lambda op, ops: op["value"].update(data=[]),
        lambda op, ops: op["value"].update(data=[1.0, True]),
        lambda op, ops: op["value"].update(data=[1.0, None]),
        lambda op, ops: op["value"].update(extra=1),
        lambda op, ops: op["value"].update(name=3),
        lambda op, ops: op.update(op="test"),
        lambda op, ops: op.update(op="copy", **{"from": "/channels/0"}),
        lambda op, ops: op.update(path=5),
        lambda op, ops: ops.append({"op": "remove", "path": "/channels/0", "value": 1}),
        lambda op, ops: ops.append("not an operation"),
        modifier("lumi", lambda m: m.update(name="luminosity")),
        modifier("lumi", lambda m: m.update(data=[1.0])),
        modifier("normsys", lambda m: m["data"].pop("lo")),
        modifier("normsys", lambda m: m["data"].update(hi="1.1")),
        modifier("histosys", lambda m: m["data"].update(hi_data=[])),
        modifier("histosys", lambda m: m["data"].update(extra=[1.0])),
        modifier("staterror", lambda m: m.update(data=None)),
        modifier("staterror", lambda m: m.update(type="unknown")),
        modifier("staterror", lambda m: m.update(note="x")),
    ]
    for index, change in enumerate(mutations):
        ops = mutated(change)
        if _plainly_valid(ops):
            assert schema_accepts(ops), f"mutation {index}: the fast check accepts a patch pyhf's schemas reject"
    # the mutations the schemas reject are still reported by validate_patch, with the field
    from recast.likelihood.errors import PatchError
    from recast.likelihood.workspace import validate_patch

    with pytest.raises(PatchError, match="sample field 'data'"):
        validate_patch(mutated(mutations[1]), "patch")


def test_direct_slsqp_is_scipys_minimize_bit_for_bit(region_a, monkeypatch):
    """The fits call scipy's SLSQP steps without scipy.optimize.minimize's wrappers: the same fits, exactly."""
    import scipy.optimize

    from recast.likelihood import fits
    from recast.likelihood.infer import PointEngine

    assert fits._slsqp_kernel() is not None, "scipy without its compiled SLSQP step: the fits use scipy.optimize.minimize"
    compared = []
    direct = fits.slsqp

    def both(objective, x0, bounds, tolerance, maxiter, hessian=None):
        ours = direct(objective, x0, bounds, tolerance, maxiter, hessian=hessian)
        if hessian is not None:  # started from a known matrix: scipy has no such start (tested below)
            return ours
        theirs = scipy.optimize.minimize(objective, x0, method="SLSQP", jac=True, bounds=bounds, tol=tolerance,
                                         options={"maxiter": maxiter})
        compared.append((ours, theirs))
        return ours

    monkeypatch.setattr(fits, "slsqp", both)
    for point in region_a.points[:3]:
        PointEngine(region_a, point, Settings(backend="jax")).cls(1.0)
    assert len(compared) >= 6
    for ours, theirs in compared:
        assert np.array_equal(ours.x, theirs.x) and ours.fun == theirs.fun
        assert (ours.nit, ours.nfev, ours.success, ours.message) == (theirs.nit, theirs.nfev, theirs.success, theirs.message)


def test_points_with_other_systematics_but_the_same_shapes_share_a_trace(onelbb):
    """1Lbb's points carry different systematics (other parameter names): one trace serves those of equal shapes,
    and each still gets its own numbers (compared with its own trace at random parameter points)."""
    functions = CompiledFunctions()
    settings = Settings(backend="jax")
    points = onelbb.points[::12][:6]
    names = set()
    for point in points:
        model, data = onelbb.model_and_data(point, settings.modifier_settings)
        names.add(tuple(model.config.par_order))
        fitter = Fitter(model, backend="jax", functions=functions)
        traced = Fitter(model, backend="jax", functions=CompiledFunctions())
        assert _compare(fitter, traced, np.asarray(data, dtype=float)) <= 1e-10
    assert len(names) > 1, "the chosen points should have different parameters"
    assert functions.traces < len(points) and functions.retraced == 0


def test_slsqp_started_from_a_matrix():
    """SLSQP's quasi-Newton matrix entered as a no-op BFGS update: the identity is SLSQP's own start, bit for
    bit; the exact Hessian of a quadratic finds its minimum in one step; the final matrix is returned."""
    from recast.likelihood import fits

    rng = np.random.default_rng(5)
    root = rng.normal(size=(6, 6))
    hessian = root @ root.T + 6 * np.eye(6)
    centre = rng.normal(size=6)

    def objective(x):
        d = x - centre
        return float(0.5 * d @ hessian @ d + 0.1 * np.sum(d**4)), hessian @ d + 0.4 * d**3

    bounds = np.array([[-10.0, 10.0]] * 6)
    plain = fits.slsqp(objective, np.zeros(6), bounds, None, 100)
    identity = fits.slsqp(objective, np.zeros(6), bounds, None, 100, hessian=np.eye(6))
    assert np.array_equal(plain.x, identity.x) and (plain.nit, plain.nfev) == (identity.nit, identity.nfev)
    assert np.allclose(fits._unpacked(fits._packed_ldl(hessian), 6), hessian, rtol=1e-12)

    def quadratic(x):
        d = x - centre
        return float(0.5 * d @ hessian @ d), hessian @ d

    warm = fits.slsqp(quadratic, np.zeros(6), bounds, 1e-10, 100, hessian=hessian)
    cold = fits.slsqp(quadratic, np.zeros(6), bounds, 1e-10, 100)
    assert warm.success and np.allclose(warm.x, centre, atol=1e-8)
    assert warm.nit <= 2 < cold.nit
    assert warm.hessian.shape == (6, 6) and np.allclose(warm.hessian, warm.hessian.T)
    assert fits._packed_ldl(-hessian) is None  # not positive definite: SLSQP starts from the identity
