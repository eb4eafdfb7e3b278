"""Models built with the background's collected numbers reused (recast.likelihood.building) are pyhf's own.

Each model is compared with the one plain pyhf builds from the patched
workspace: parameters in the same order, the same auxiliary data, initial
values and bounds, and bit for bit the same log-likelihood and expected data
at several parameter points. Points of every published likelihood, built one
after the other as a scan builds them (the later ones reuse the earlier ones'
background), and a small workspace with every HistFactory modifier type.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
from likelihood_helpers import onelbb, onelbb_dir, sbottom_dir, write_json  # noqa: F401

from recast.likelihood import load_workspace
from recast.likelihood.workspace import modifier_settings


def _assert_same_model(likelihood, point, settings=None):
    settings = settings or modifier_settings()
    before = copy.deepcopy(point.patch)
    model, data = likelihood.model_and_data(point, settings)
    assert point.patch == before, "building the model changed the point's patch"
    workspace = likelihood.patched_workspace(point, validate=False)
    reference = workspace.model(modifier_settings=settings, validate=False)
    reference_data = workspace.data(reference)
    config, expected = model.config, reference.config
    assert config.par_order == expected.par_order
    assert config.auxdata == expected.auxdata and config.auxdata_order == expected.auxdata_order
    assert config.suggested_init() == expected.suggested_init()
    assert config.suggested_bounds() == expected.suggested_bounds()
    assert config.suggested_fixed() == expected.suggested_fixed()
    assert config.poi_index == expected.poi_index
    assert list(data) == list(reference_data)
    init = np.asarray(expected.suggested_init(), dtype=float)
    bounds = np.asarray(expected.suggested_bounds(), dtype=float)
    rng = np.random.default_rng(7)
    for spread in (0.0, 0.2, 0.6):
        pars = np.clip(init + spread * rng.normal(size=len(init)), bounds[:, 0], bounds[:, 1])
        assert np.array_equal(model.logpdf(pars, data), reference.logpdf(pars, reference_data)), point.name
        assert np.array_equal(model.expected_data(pars), reference.expected_data(pars)), point.name


@pytest.mark.parametrize("region", ["RegionA", "RegionB", "RegionC"])
def test_sbottom_models_are_pyhfs(sbottom_dir, region):
    patches = sorted((sbottom_dir / region).glob("patch.*.json"))[::25]
    likelihood = load_workspace(sbottom_dir / region / "BkgOnly.json", patches)
    for point in likelihood.points:
        _assert_same_model(likelihood, point)
    assert likelihood._build_cache.reused > likelihood._build_cache.collected  # the background was reused


def test_onelbb_models_are_pyhfs(onelbb):
    # points with other systematics than their neighbours' (1Lbb's patches differ in their modifiers)
    for point in onelbb.points[::9]:
        _assert_same_model(onelbb, point)
    _assert_same_model(onelbb, onelbb.points[3], modifier_settings("code1", "code0"))


def _every_modifier_workspace() -> dict:
    def sample(name, data, modifiers):
        return {"name": name, "data": data, "modifiers": modifiers}

    channels = []
    for c, nbins in (("SR", 3), ("CR", 2)):
        bkg = [10.0 + i for i in range(nbins)]
        other = [4.0 + 0.5 * i for i in range(nbins)]
        channels.append({"name": c, "samples": [
            sample("bkg", bkg, [
                {"name": "lumi", "type": "lumi", "data": None},
                {"name": f"stat_{c}", "type": "staterror", "data": [0.1 * x for x in bkg]},
                {"name": "jes", "type": "histosys", "data": {"hi_data": [1.1 * x for x in bkg], "lo_data": [0.92 * x for x in bkg]}},
                {"name": "xsec", "type": "normsys", "data": {"hi": 1.1, "lo": 0.85}},
            ]),
            sample("other", other, [
                {"name": f"shape_{c}", "type": "shapesys", "data": [0.2 * x for x in other]},
                {"name": f"free_{c}", "type": "shapefactor", "data": None},
                {"name": "k_other", "type": "normfactor", "data": None},
                {"name": "xsec", "type": "normsys", "data": {"hi": 1.05, "lo": 0.9}},
            ]),
        ]})
    return {
        "channels": channels,
        "observations": [{"name": "SR", "data": [15.0, 16.0, 18.0]}, {"name": "CR", "data": [14.0, 16.0]}],
        "measurements": [{"name": "m", "config": {"poi": "mu", "parameters": [
            {"name": "lumi", "auxdata": [1.0], "sigmas": [0.02], "bounds": [[0.9, 1.1]], "inits": [1.0]}]}}],
        "version": "1.0.0",
    }


def _signal_patch(scale: float, with_sys: bool) -> list:
    ops = []
    for index, nbins in ((0, 3), (1, 2)):
        yields = [scale * (1 + i) for i in range(nbins)]
        modifiers = [{"name": "mu", "type": "normfactor", "data": None}, {"name": "lumi", "type": "lumi", "data": None},
                     {"name": f"stat_{'SR' if index == 0 else 'CR'}", "type": "staterror", "data": [0.3 * y for y in yields]}]
        if with_sys:
            modifiers += [{"name": "sig_theory", "type": "normsys", "data": {"hi": 1.2, "lo": 0.8}},
                          {"name": "jes", "type": "histosys", "data": {"hi_data": [1.2 * y for y in yields], "lo_data": [0.9 * y for y in yields]}}]
        ops.append({"op": "add", "path": f"/channels/{index}/samples/-", "value": {"name": "signal", "data": yields, "modifiers": modifiers}})
    return ops


def test_every_modifier_type_and_a_changed_background(tmp_path):
    folder = tmp_path / "w"
    workspace = write_json(folder / "BkgOnly.json", _every_modifier_workspace())
    patches = [write_json(folder / f"patch.sig_{i}.json", _signal_patch(0.5 + i, with_sys=i % 2 == 1)) for i in range(4)]
    # a point that also replaces a background sample: that sample is collected again, not reused
    replaced = _signal_patch(2.0, True) + [{"op": "replace", "path": "/channels/1/samples/0/data", "value": [11.0, 12.5]}]
    patches.append(write_json(folder / "patch.sig_9.json", replaced))
    likelihood = load_workspace(workspace, patches)
    for point in likelihood.points + likelihood.points[:2]:
        _assert_same_model(likelihood, point)
