"""`recast test`, `recast refresh`, `recast diff`: preserved analyses checked against their own data."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET

import pytest
import yaml
from click.testing import CliRunner

from recast.cli import cli


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def recast_test(toy, tmp_path, *extra):
    return invoke("test", "toy", "--catalog", toy.parent, "--environment", "host",
                  "--workdir", tmp_path / "tests", *extra)


def test_example_matches_reference_and_writes_junit(toy, tmp_path):
    result = recast_test(toy, tmp_path, "--junit", tmp_path / "junit.xml")
    assert result.exit_code == 0, result.output
    assert "passed toy example:default: 8/8 checks matched" in result.output
    suite = ET.parse(tmp_path / "junit.xml").getroot().find("testsuite")
    assert suite.get("name") == "toy" and suite.get("tests") == "1" and suite.get("failures") == "0"


def test_drift_beyond_tolerance_fails_and_names_the_value(toy, tmp_path):
    reference = toy / "requests" / "default.results.json"
    doc = json.loads(reference.read_text())
    doc["values"]["squares"][1] = 6.0 + 1e-6  # relative 1.7e-7, beyond the declared 1e-9
    reference.write_text(json.dumps(doc))
    result = recast_test(toy, tmp_path, "--junit", tmp_path / "junit.xml")
    assert result.exit_code == 1
    assert "FAILED toy example:default" in result.output and "value squares[1]" in result.output
    failure = ET.parse(tmp_path / "junit.xml").getroot().find("testsuite/testcase/failure")
    assert failure is not None and "squares[1]" in failure.text
    assert json.loads(reference.read_text()) == doc, "the reference is only read"

    spec = yaml.safe_load((toy / "analysis.yaml").read_text())
    spec["examples"]["default"]["tolerances"] = {"relative": 1e-6}
    (toy / "analysis.yaml").write_text(yaml.safe_dump(spec))
    assert recast_test(toy, tmp_path).exit_code == 0, "within a looser declared tolerance it matches"


def test_bad_tolerance_and_bad_reference_are_clear_errors(toy, tmp_path):
    spec_path = toy / "analysis.yaml"
    spec = yaml.safe_load(spec_path.read_text())
    spec["examples"]["default"]["tolerances"] = {"relative": "tight"}
    spec_path.write_text(yaml.safe_dump(spec))
    result = recast_test(toy, tmp_path)
    assert result.exit_code != 0
    assert "examples.default.tolerances.relative: expected number, found str 'tight'" in str(result.exception) + result.output

    spec["examples"]["default"]["tolerances"] = {"relative": 1e-9}
    spec_path.write_text(yaml.safe_dump(spec))
    (toy / "requests" / "default.results.json").write_text('{"values": {"total": 21.25')
    result = recast_test(toy, tmp_path, "--junit", tmp_path / "junit.xml")
    assert result.exit_code == 1
    assert "reference results unreadable" in result.output and "default.results.json" in result.output
    assert ET.parse(tmp_path / "junit.xml").getroot().find("testsuite/testcase/error") is not None


def test_failing_acceptance_check(toy, tmp_path):
    checks = yaml.safe_load((toy / "checks.yaml").read_text())
    checks["runs"]["default"]["logs"]["logs/square__0.log"] = ["^this line never appears$"]
    checks["runs"]["default"]["files"].append("steps/total/missing.png")
    (toy / "checks.yaml").write_text(yaml.safe_dump(checks))
    result = recast_test(toy, tmp_path)
    assert result.exit_code == 1
    assert "file steps/total/missing.png" in result.output and "no matching line" in result.output


def test_single_step_on_fixtures(toy, tmp_path):
    result = recast_test(toy, tmp_path, "--step", "square")
    assert result.exit_code == 0, result.output
    assert "passed toy step:square: 3/3" in result.output
    checks = yaml.safe_load((toy / "checks.yaml").read_text())
    checks["steps"]["square"]["expect"]["values"]["y"] = 13
    (toy / "checks.yaml").write_text(yaml.safe_dump(checks))
    result = recast_test(toy, tmp_path, "--step", "square")
    assert result.exit_code == 1 and "value y" in result.output
    assert invoke("test", "toy", "--step", "nosuch", "--catalog", toy.parent, "--environment", "host",
                  "--workdir", tmp_path / "t").exit_code == 1


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_interrupted_test_run_loses_nothing(toy, tmp_path, signum):
    assert recast_test(toy, tmp_path).exit_code == 0
    results = tmp_path / "tests" / "toy" / "default" / "results.json"
    before = results.read_bytes()
    reference = (toy / "requests" / "default.results.json").read_bytes()
    request = yaml.safe_load((toy / "requests" / "default.yaml").read_text())
    request["parameters"]["points"][0]["label"] = "sleep"
    (toy / "requests" / "default.yaml").write_text(yaml.safe_dump(request))
    proc = subprocess.Popen([sys.executable, "-m", "recast", "test", "toy", "--catalog", str(toy.parent),
                             "--environment", "host", "--workdir", str(tmp_path / "tests")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    record = tmp_path / "tests" / "toy" / "default" / "logs" / "square__0.json"

    def sleeping() -> bool:
        if not record.is_file():
            return False
        job = json.loads(record.read_text())
        return "sleep" in job["argv"] and job["ended"] is None

    deadline = time.monotonic() + 60
    while not sleeping():
        assert time.monotonic() < deadline and proc.poll() is None, "the sleeping job never started"
        time.sleep(0.1)
    os.killpg(proc.pid, signum)
    assert proc.wait(timeout=30) != 0
    time.sleep(0.5)
    leftover = subprocess.run(["pgrep", "-f", "--", f"--label sleep --events {tmp_path}"], capture_output=True)
    assert leftover.returncode == 1, \
        "an interrupted run must not leave its job's command running"
    assert results.read_bytes() == before
    assert (toy / "requests" / "default.results.json").read_bytes() == reference
    # ... and the next run in the same folder works (no stale lock, incomplete outputs redone).
    request["parameters"]["points"][0]["label"] = "one"
    (toy / "requests" / "default.yaml").write_text(yaml.safe_dump(request))
    assert recast_test(toy, tmp_path).exit_code == 0


def test_refresh_reruns_stale_results_beside_them_and_diff_explains(toy, tmp_path):
    runs = tmp_path / "runs"
    assert invoke("run", "toy", "--example", "default", "--environment", "host", "--catalog", toy.parent,
                  "--workdir", runs / "toy" / "default").exit_code == 0
    listed = invoke("refresh", "--runs", runs, "--catalog", toy.parent, "--list", "--json")
    assert json.loads(listed.stdout)[0]["stale"] is False

    spec = (toy / "analysis.yaml").read_text().replace("version: 1.0.0", "version: 1.1.0")
    (toy / "analysis.yaml").write_text(spec)
    code = (toy / "code" / "square.py").read_text().replace("+ lines,", "+ lines + 0.5,")
    (toy / "code" / "square.py").write_text(code)
    listed = json.loads(invoke("refresh", "--runs", runs, "--catalog", toy.parent, "--list", "--json").stdout)
    assert listed[0]["stale"] and "analysis version 1.0.0 -> 1.1.0" in listed[0]["reasons"]
    assert listed[0]["refreshed"] is None

    refreshed = json.loads(invoke("refresh", "--runs", runs, "--catalog", toy.parent, "--json").stdout)
    new = refreshed[0]["refreshed"]
    assert new and (runs / "toy" / "default" / "results.json").is_file(), "the old results are kept"
    assert json.loads(open(os.path.join(new, "results.json")).read())["analysis"]["version"] == "1.1.0"

    report = json.loads(invoke("diff", runs / "toy" / "default", new, "--json").stdout)
    assert {"name": "analysis version", "a": "1.0.0", "b": "1.1.0"} in report["software"]
    assert any(c["name"].endswith("code/square.py") for c in report["inputs"])
    total = next(c for c in report["results"] if c["name"] == "total")
    assert total["delta"] == pytest.approx(1.5)


def test_acceptance_checks_never_read_through_a_link_a_job_left(tmp_path):
    import hashlib

    from recast import checks

    secret = tmp_path / "host-secret.txt"
    secret.write_text("SECRET line\n")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "out.txt").symlink_to(secret)
    outcomes = checks.acceptance(run_dir, {"files": ["out.txt"],
                                           "sha256": {"out.txt": hashlib.sha256(b"SECRET line\n").hexdigest()},
                                           "logs": {"out.txt": ["SECRET"]}})
    assert [(o.name, o.passed, o.message) for o in outcomes] == [
        ("file out.txt", False, "missing"), ("sha256 out.txt", False, "missing"),
        ("log out.txt ~ SECRET", False, "log missing")]
