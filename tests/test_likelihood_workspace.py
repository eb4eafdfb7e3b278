"""Loading workspaces, patches and patchsets; errors that name the file, the point and what was expected;
signal patches built from plain yields."""

from __future__ import annotations

import json

import pytest
from likelihood_helpers import SBOTTOM_ARCHIVE, onelbb, onelbb_dir, patch_path, sbottom_dir, write_json  # noqa: F401

from recast.errors import RecastError
from recast.likelihood import PatchError, WorkspaceError, cls, load_patch_file, load_workspace, signal_patch
from recast.likelihood.errors import LikelihoodError
from recast.likelihood.signal import load_signal_yields


@pytest.fixture
def region_a(sbottom_dir):
    return sbottom_dir / "RegionA" / "BkgOnly.json"


def test_patch_file_names_and_values(sbottom_dir, region_a):
    likelihood = load_workspace(region_a, [patch_path(sbottom_dir, "RegionA", "sbottom_1300_205_60")], labels=["msb", "mn2", "mn1"])
    (point,) = likelihood.points
    assert point.name == "sbottom_1300_205_60"
    assert point.values == {"msb": 1300.0, "mn2": 205.0, "mn1": 60.0}
    assert likelihood.labels == ["msb", "mn2", "mn1"]


def test_errors_are_recast_errors_naming_the_file(tmp_path, region_a):
    bad_json = tmp_path / "BkgOnly.json"
    bad_json.write_text('{"channels": [}')
    with pytest.raises(WorkspaceError, match=r"BkgOnly.json: line 1 column 15: not valid JSON") as caught:
        load_workspace(bad_json)
    assert isinstance(caught.value, RecastError)
    with pytest.raises(WorkspaceError, match=r"missing.json: no such file; expected a pyhf workspace"):
        load_workspace(tmp_path / "missing.json")


@pytest.mark.parametrize("number,message", [
    ("NaN", r"NaN is not a JSON number"),
    ("-Infinity", r"-Infinity is not a JSON number"),
    ("1" + "0" * 5000 + ".0", r"a number of 5003 characters \(100000000000\.\.\.\) is too large for a 64-bit float"),
    ("2e400", r"a number of 5 characters \(2e400\.\.\.\) is too large"),
    ("1" + "0" * 400, r"a number of 401 characters .* too large for a 64-bit float"),
    ("1" + "0" * 5000, r"Exceeds the limit \(4300 digits\)"),
])
def test_numbers_that_are_no_finite_float_are_refused_naming_the_file(tmp_path, number, message):
    path = tmp_path / "patch.sig_1_2.json"
    path.write_text('[{"op": "add", "path": "/channels/0/samples/-", "value": {"name": "s", "data": [%s, 1.0], "modifiers": []}}]' % number)
    with pytest.raises(PatchError, match=r"patch.sig_1_2.json: not valid JSON \(" + message):
        load_patch_file(path)


def test_workspace_failing_pyhf_schema_names_the_field(tmp_path, region_a):
    spec = json.loads(region_a.read_text())
    del spec["channels"][0]["samples"][0]["data"]
    path = write_json(tmp_path / "BkgOnly.json", spec)
    with pytest.raises(WorkspaceError, match=r"BkgOnly.json: field .*channels.*0.*samples.*0.*'data' is a required property.*workspace.json"):
        load_workspace(path)


def test_patch_failing_schema_names_file_point_and_field(tmp_path, sbottom_dir, region_a):
    ops = json.loads(patch_path(sbottom_dir, "RegionA", "sbottom_1300_205_60").read_text())
    ops[0]["value"]["data"] = "many events"
    path = write_json(tmp_path / "patch.sbottom_9_9_9.json", ops)
    with pytest.raises(PatchError, match=r"patch.sbottom_9_9_9.json \(point sbottom_9_9_9\): operation 0 .*sample field 'data'.*is not of type 'array'"):
        load_patch_file(path)
    write_json(path, {"op": "add"})
    with pytest.raises(PatchError, match=r"point sbottom_9_9_9\).*expected a JSON Patch"):
        load_patch_file(path)


def test_patch_that_does_not_apply_names_the_operation(tmp_path, sbottom_dir, region_a):
    ops = json.loads(patch_path(sbottom_dir, "RegionA", "sbottom_1300_205_60").read_text())
    ops[1]["path"] = "/channels/12/samples/0"
    path = write_json(tmp_path / "patch.sbottom_1_2_3.json", ops)
    with pytest.raises(PatchError, match=r"patch.sbottom_1_2_3.json \(point sbottom_1_2_3\): operation 1 \(add /channels/12/samples/0\) does not apply to .*RegionA/BkgOnly.json"):
        cls(region_a, path)


def test_patchset_digest_mismatch_is_refused(tmp_path, onelbb_dir):
    spec = json.loads((onelbb_dir / "BkgOnly.json").read_text())
    spec["observations"][0]["data"][0] += 1
    other = write_json(tmp_path / "BkgOnly.json", spec)
    with pytest.raises(PatchError, match=r"patchset.json: metadata.digests.sha256 is 2563672e.* but the background-only workspace .*BkgOnly.json has sha256 [0-9a-f]{64}"):
        load_workspace(other, patchset=onelbb_dir / "patchset.json", points=["C1N2_Wh_hbb_900_250"])


def test_unknown_point_of_a_patchset(onelbb):
    with pytest.raises(PatchError, match=r"no signal point named 'C1N2_Wh_hbb_1_1' \(known: C1N2_Wh_hbb_1000_0"):
        onelbb.point("C1N2_Wh_hbb_1_1")




def test_signal_patch_from_yields(region_a):
    likelihood = load_workspace(region_a)
    small = signal_patch(likelihood, {"SR_meff": [0.5, 1.0, 2.0]}, {"SR_meff": [0.1, 0.1, 0.2]}, name="small")
    large = signal_patch(likelihood, {"SR_meff": [5.0, 10.0, 20.0]}, name="large")
    (op,) = small.patch
    assert op["path"] == "/channels/0/samples/-"
    kinds = {m["type"]: m["name"] for m in op["value"]["modifiers"]}
    assert kinds["normfactor"] == "mu_SIG" and kinds["lumi"] == "lumi" and kinds["staterror"] == "staterror_SR_meff"
    small_cls = cls(likelihood, small, backend="jax")["cls_obs"]
    large_cls = cls(likelihood, large, backend="jax")["cls_obs"]
    assert 0 < large_cls < small_cls < 1


@pytest.mark.parametrize("yields,errors,message", [
    ({"SR_nope": [1.0]}, None, r"yields.SR_nope: no such channel in .*BkgOnly.json \(channels: CRtt_meff, SR_meff, VRtt_meff\)"),
    ({"SR_meff": [1.0, 2.0]}, None, r"yields.SR_meff: 2 values given but the channel has 3 bins"),
    ({"SR_meff": [1.0, -2.0, 1.0]}, None, r"yields.SR_meff\[1\]: -2.0 is not a finite, non-negative number"),
    ({"SR_meff": [1.0, 2.0, 3.0]}, {"SR_meff": [0.1, float("nan"), 0.1]}, r"uncertainties.SR_meff\[1\]: nan is not"),
    ({"SR_meff": [1.0, 2.0, 3.0]}, {"CRtt_meff": [0.1]}, r"uncertainties.CRtt_meff: uncertainties given for a channel without yields"),
])
def test_signal_patch_is_validated_against_the_workspace(region_a, yields, errors, message):
    with pytest.raises(PatchError, match=message):
        signal_patch(load_workspace(region_a), yields, errors, source="request.yaml")


def test_signal_yields_file(tmp_path, region_a):
    path = tmp_path / "signal.yaml"
    path.write_text("name: my_point\nvalues: {m: 500}\nchannels:\n  SR_meff: {yields: [1, 2, 3], uncertainties: [0.1, 0.2, 0.3]}\n")
    point = load_signal_yields(path, load_workspace(region_a))
    assert point.name == "my_point" and point.values == {"m": 500.0} and point.source == str(path)
    path.write_text("channels: [1, 2]\n")
    with pytest.raises(LikelihoodError, match=r"signal.yaml: field 'channels': expected a mapping"):
        load_signal_yields(path, load_workspace(region_a))


# --- point names and labels (issue 11) -----------------------------------------------------

@pytest.mark.parametrize("name,numbers", [
    ("DS_400_40_Staus", [400.0, 40.0]),
    ("ERJR_350p0_150p0", [350.0, 150.0]),
    ("sbottom_1300_205_60", [1300.0, 205.0, 60.0]),
    ("C1N2_Wh_hbb_900_250", [900.0, 250.0]),
    ("Gtt_2p5_1000", [2.5, 1000.0]),
])
def test_numbers_anywhere_in_a_point_name(name, numbers):
    from recast.likelihood.workspace import point_values_from_name

    assert point_values_from_name(name) == numbers


def test_labels_name_the_numbers_of_names_with_text_after_them(tmp_path, sbottom_dir):
    ops = json.loads(patch_path(sbottom_dir, "RegionA", "sbottom_1300_205_60").read_text())
    path = write_json(tmp_path / "patch.DS_400_40_Staus.json", ops)
    assert load_patch_file(path, labels=["mst", "mlsp"]).values == {"mst": 400.0, "mlsp": 40.0}
    assert load_patch_file(path).values == {"p1": 400.0, "p2": 40.0}
    with pytest.raises(PatchError, match=r"patch.DS_400_40_Staus.json \(point DS_400_40_Staus\): 3 parameter names \(a, b, c\) "
                                         r"but the point name 'DS_400_40_Staus' has 2 numbers \(400, 40\)"):
        load_patch_file(path, labels=["a", "b", "c"])


def test_where_selects_points_named_with_text_after_the_numbers(tmp_path, sbottom_dir, region_a):
    ops = json.loads(patch_path(sbottom_dir, "RegionA", "sbottom_1300_205_60").read_text())
    files = [write_json(tmp_path / f"patch.DS_{m}_40_Staus.json", ops) for m in (300, 400)]
    likelihood = load_workspace(region_a, files, labels=["mst", "mlsp"])
    assert [p.name for p in likelihood.select(where={"mst": 400})] == ["DS_400_40_Staus"]


def test_labels_rename_a_patchset_or_are_refused(onelbb_dir):
    relabelled = load_workspace(onelbb_dir / "BkgOnly.json", patchset=onelbb_dir / "patchset.json", points=["C1N2_Wh_hbb_900_250"],
                                labels=["mC1", "mN1"])
    assert relabelled.points[0].values == {"mC1": 900.0, "mN1": 250.0} and relabelled.labels == ["mC1", "mN1"]
    with pytest.raises(PatchError, match=r"3 parameter names .* has 2 numbers"):
        load_workspace(onelbb_dir / "BkgOnly.json", patchset=onelbb_dir / "patchset.json", labels=["a", "b", "c"])


def test_an_archive_given_as_a_workspace_file_says_how_to_use_it(tmp_path):
    from recast.likelihood.workspace import read_json

    with pytest.raises(WorkspaceError, match=r"a compressed or tar archive, not JSON.*recast import hepdata"):
        read_json(SBOTTOM_ARCHIVE, WorkspaceError, "a pyhf workspace")


def test_an_archive_is_used_directly(tmp_path):
    from recast.likelihood.archive import is_archive, open_archive

    assert is_archive(SBOTTOM_ARCHIVE)
    with pytest.raises(LikelihoodError, match=r"3 background-only workspaces \(RegionA, RegionB, RegionC\); choose one with --region"):
        open_archive(SBOTTOM_ARCHIVE)
    with pytest.raises(LikelihoodError, match=r"no region 'RegionZ'"):
        open_archive(SBOTTOM_ARCHIVE, "RegionZ")
    with open_archive(SBOTTOM_ARCHIVE, "RegionB", labels=["msb", "mn2", "mn1"]) as opened:
        folder = opened.folder
        point = opened.likelihood.point("sbottom_1400_550_60")
        assert point.values == {"msb": 1400.0, "mn2": 550.0, "mn1": 60.0}
        assert len(opened.likelihood.points) > 200
    assert not folder.exists()


def _depth(node) -> int:
    if isinstance(node, dict):
        node = list(node.values())
    if not isinstance(node, list):
        return 0
    return 1 + max((_depth(child) for child in node), default=0)


def test_plain_workspaces_skip_jsonschema_only_when_it_accepts_them(sbottom_dir, onelbb_dir):
    """The published workspaces are of the plain form (no jsonschema: 0.7 s for 1Lbb's); pyhf's schema accepts
    each; a workspace off the plain form, valid or not, is checked by jsonschema as before."""
    import copy

    import pyhf

    from recast.likelihood.workspace import _plainly_valid_workspace, json_depth

    paths = [sbottom_dir / region / "BkgOnly.json" for region in ("RegionA", "RegionB", "RegionC")] + [onelbb_dir / "BkgOnly.json"]
    for path in paths:
        spec = json.loads(path.read_text())
        assert _plainly_valid_workspace(spec), path
        pyhf.schema.validate(spec, "workspace.json")
        assert json_depth(spec) == _depth(spec)
    spec = json.loads(paths[0].read_text())
    variants = []
    for change in (
        lambda s: s.update(extra=1),
        lambda s: s.update(version="1.0.1"),
        lambda s: s["channels"][0]["samples"][0]["data"].append(True),
        lambda s: s["channels"][0]["samples"][0]["modifiers"].append({"name": "x", "type": "normsys", "data": {"hi": "1.1", "lo": 0.9}}),
        lambda s: s["observations"][0].update(data=[]),
        lambda s: s["measurements"][0]["config"]["parameters"].append({"name": "mu_SIG", "bounds": [[0, "5"]]}),
        lambda s: s["measurements"][0]["config"]["parameters"].append({"name": "mu_SIG", "fixed": 1}),
        lambda s: s["measurements"][0]["config"].update(poi=None),
    ):
        variant = copy.deepcopy(spec)
        change(variant)
        variants.append(variant)
    from recast.likelihood.workspace import validate_workspace_spec

    for variant in variants:
        assert not _plainly_valid_workspace(variant)
        try:
            pyhf.schema.validate(variant, "workspace.json")
        except pyhf.exceptions.InvalidSpecification:
            with pytest.raises(WorkspaceError):
                validate_workspace_spec(variant, "variant")
        else:  # e.g. a boolean among the bin contents: pyhf's schema takes it, the plain form does not
            validate_workspace_spec(variant, "variant")
