"""Reinterpretation requests are pure data: bad ones get a clear error and change nothing."""

from __future__ import annotations

import os

import pytest
import yaml

from recast import request as request_mod
from recast.errors import RequestError
from recast.validate import load_analysis


def write_request(toy, parameters, name="req.yaml"):
    path = toy / "requests" / name
    path.write_text(yaml.safe_dump({"parameters": parameters}))
    return path


def point(**kw):
    return {"x": 1, "label": "a", "events": "data/a.txt", **kw}


def problems_of(toy, parameters):
    analysis = load_analysis(toy)
    with pytest.raises(RequestError) as err:
        request_mod.load(analysis, write_request(toy, parameters))
    return err.value.problems


def test_valid_request_fills_defaults_and_digests_files(toy):
    analysis = load_analysis(toy)
    req = request_mod.load(analysis, write_request(toy, {"points": [point()]}))
    assert req.parameters["offset"] == 0
    assert set(req.files) == {"data/a.txt"}
    (toy / "requests" / "data" / "a.txt").write_text("changed\n")
    again = request_mod.load(analysis, write_request(toy, {"points": [point()]}))
    assert again.digest != req.digest, "the digest must follow the content of input files"


@pytest.mark.parametrize(
    "parameters, field, fragment",
    [
        ({"points": [point(x="ten")]}, "parameters.points[0].x", "expected number"),
        ({"points": [point()], "colour": "red"}, "parameters", "'colour' was unexpected"),
        ({"points": [point()], "offset": [1]}, "parameters.offset", "expected number"),
        ({"points": []}, "parameters.points", "should be non-empty"),
        ({}, "parameters", "missing required field 'points'"),
        ({"points": [point(events="data/missing.txt")]}, "parameters.points[0].events", "not found"),
        ({"points": [point(events="../../toy/analysis.yaml")]}, "parameters.points[0].events", "'..' is not allowed"),
        ({"points": [point(events="data/../data/a.txt")]}, "parameters.points[0].events", "'..' is not allowed"),
        ({"points": [point(events="/etc/passwd")]}, "parameters.points[0].events", "expected a path relative"),
        ({"points": [point(events="data")]}, "parameters.points[0].events", "'data' is a folder: expected a file"),
    ],
)
def test_bad_request_names_the_field(toy, parameters, field, fragment):
    found = problems_of(toy, parameters)
    assert any(f.endswith("req.yaml") and w == field and fragment in m for f, w, m in found), found


def test_symlink_out_of_the_request_folder_is_refused(toy, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("secret\n")
    os.symlink(secret, toy / "requests" / "data" / "link.txt")
    found = problems_of(toy, {"points": [point(events="data/link.txt")]})
    assert any("'data/link.txt': data/link.txt is a symbolic link" in m for _, _, m in found), found


def test_wrong_suffix_is_refused(toy):
    (toy / "requests" / "data" / "a.csv").write_text("1\n")
    found = problems_of(toy, {"points": [point(events="data/a.csv")]})
    assert any("expected a file ending in .txt" in m for _, _, m in found), found


def test_malformed_yaml_and_wrong_analysis(toy):
    analysis = load_analysis(toy)
    bad = toy / "requests" / "bad.yaml"
    bad.write_text("parameters: {points: [\n")
    with pytest.raises(RequestError, match=r"bad.yaml: line \d+ column \d+: malformed YAML"):
        request_mod.load(analysis, bad)
    other = toy / "requests" / "other.yaml"
    other.write_text(yaml.safe_dump({"analysis": "another", "parameters": {"points": [point()]}}))
    with pytest.raises(RequestError, match="this request is for 'another'"):
        request_mod.load(analysis, other)
    unknown_top = toy / "requests" / "top.yaml"
    unknown_top.write_text(yaml.safe_dump({"parameters": {"points": [point()]}, "run": "rm -rf /"}))
    with pytest.raises(RequestError, match="'run' was unexpected"):
        request_mod.load(analysis, unknown_top)


def test_unchanged_inputs_are_left_alone(toy, tmp_path):
    """Staging is incremental: an unchanged file keeps its inode and modification time, so nothing re-runs."""
    analysis = load_analysis(toy)
    req = request_mod.load(analysis, toy / "requests" / "default.yaml")
    run_dir = tmp_path / "run"
    first = request_mod.stage_inputs(req, run_dir)
    before = {k: os.stat(p) for k, p in first.items()}
    again = request_mod.stage_inputs(req, run_dir)
    assert again == first
    assert all((os.stat(p).st_mtime_ns, os.stat(p).st_ino) == (before[k].st_mtime_ns, before[k].st_ino)
               for k, p in again.items())
    (toy / "requests" / "data" / "b.txt").write_text("changed\n")
    changed = request_mod.stage_inputs(request_mod.load(analysis, toy / "requests" / "default.yaml"), run_dir)
    assert changed["data/b.txt"].read_text() == "changed\n"
    assert os.stat(changed["data/a.txt"]).st_mtime_ns == before["data/a.txt"].st_mtime_ns
