"""A run folder is recast's record of a run: nobody else's run may touch it, and nothing changed
in it after the fact is trusted.

Host environment (the same execution path, without containers), real Snakemake.
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys

import pytest
from click.testing import CliRunner

from recast import execution
from recast import request as request_mod
from recast.cli import cli
from recast.errors import ExecutionError
from recast.validate import load_analysis


def run(toy, run_dir):
    analysis = load_analysis(toy)
    request = request_mod.load(analysis, analysis.examples["default"].request)
    return execution.run(analysis, request, run_dir, environment="host", cores=2)


def snapshot(run_dir):
    """Every file below ``run_dir`` (but the lock itself) with its content and modification time."""
    found = {}
    for root, _, names in os.walk(run_dir):
        for name in names:
            path = os.path.join(root, name)
            if name == "lock" or os.path.islink(path):
                continue
            with open(path, "rb") as f:
                found[os.path.relpath(path, run_dir)] = (f.read(), os.stat(path).st_mtime_ns)
    return found


def test_a_folder_in_use_is_refused_before_anything_in_it_is_touched(toy, tmp_path):
    run_dir = tmp_path / "run"
    run(toy, run_dir)
    before = snapshot(run_dir)
    holder = subprocess.Popen([sys.executable, "-c",
                               "import fcntl, os, sys, time\n"
                               "fd = os.open(sys.argv[1], os.O_RDWR)\n"
                               "fcntl.flock(fd, fcntl.LOCK_EX)\n"
                               "print('held', flush=True)\n"
                               "time.sleep(60)\n", str(run_dir / ".recast" / "lock")],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "held\n"
        # Another request into the same folder: before the lock, it rewrote request.json and the plan.
        other = tmp_path / "other.yaml"
        other.write_text((toy / "requests" / "default.yaml").read_text().replace("offset: 0", "offset: 5")
                         .replace("requests/", ""))
        (tmp_path / "data").mkdir()
        for name in ("a.txt", "b.txt"):
            (tmp_path / "data" / name).write_text((toy / "requests" / "data" / name).read_text())
        analysis = load_analysis(toy)
        request = request_mod.load(analysis, toy / "requests" / "default.yaml")
        with pytest.raises(ExecutionError, match=rf"^{run_dir} is in use by another run \(pid \d+\); nothing in it "
                                                 r"was changed: wait for that run, or give this one another --workdir$"):
            execution.run(analysis, request, run_dir, environment="host")
        assert snapshot(run_dir) == before
    finally:
        holder.kill()
        holder.wait()
    assert run(toy, run_dir).jobs_run == [], "the lock's holder is gone: the folder is free again"


def test_each_run_folder_has_its_own_run_id_kept_when_resumed(toy, tmp_path):
    a, b = run(toy, tmp_path / "a"), run(toy, tmp_path / "b")
    assert a.plan.run_id != b.plan.run_id and a.plan.request_digest == b.plan.request_digest
    assert run(toy, tmp_path / "a").plan.run_id == a.plan.run_id
    provenance = json.loads((tmp_path / "a" / "provenance.json").read_text())
    assert provenance["run"]["id"] == a.plan.run_id and provenance["request"]["digest"] == a.plan.request_digest


def test_a_tampered_output_with_its_mtime_kept_is_made_again(toy, tmp_path):
    run_dir = tmp_path / "run"
    run(toy, run_dir)
    square = run_dir / "steps" / "square__0" / "square.json"
    stat = square.stat()
    square.write_text(square.read_text().replace('"y": 2.0', '"y": 123.0'))
    os.utime(square, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # as the attack did: "nothing to do" before

    outcome = run(toy, run_dir)
    assert sorted(outcome.jobs_run) == ["square__0", "total"]
    assert outcome.discarded == ["step square__0: square.json changed since it ran; it will run again"]
    results = json.loads((run_dir / "results.json").read_text())
    assert results["values"]["squares"][0] == 2.0 and results["values"]["total"] == 21.25


def test_a_tampered_value_in_one_step_is_made_again_not_reported_twice(toy, tmp_path):
    run_dir = tmp_path / "run"
    run(toy, run_dir)
    values = run_dir / "steps" / "square__1" / "values.json"
    values.write_text(json.dumps({"y": 123}))
    run(toy, run_dir)
    assert json.loads((run_dir / "results.json").read_text())["values"]["squares"] == [2.0, 6.0, 13.25]


def test_results_verify_finds_what_changed_after_the_run(toy, tmp_path):
    run_dir = tmp_path / "run"
    run(toy, run_dir)
    clean = CliRunner().invoke(cli, ["results", str(run_dir), "--verify"])
    assert clean.exit_code == 0, clean.output
    assert "verified: every output and result" in clean.output

    (run_dir / "steps" / "square__2" / "square.json").write_text('{"y": 0}')
    results = json.loads((run_dir / "results.json").read_text())
    results["values"]["total"] = 123
    (run_dir / "results.json").write_text(json.dumps(results))
    tampered = CliRunner().invoke(cli, ["results", str(run_dir), "--verify", "--json"])
    assert tampered.exit_code == 1
    report = json.loads(tampered.stdout)
    assert report["verified"] is False
    assert report["problems"] == ["step square__2: square.json changed since the job ran",
                                  "value 'total' in results.json differs from what its jobs produced"]


def test_a_job_killed_half_way_is_not_trusted_on_resume(toy, tmp_path):
    run_dir = tmp_path / "run"
    run(toy, run_dir)
    record = run_dir / "logs" / "total.json"
    doc = json.loads(record.read_text())
    doc.pop("outputs")  # what a job killed between writing its outputs and its record leaves
    record.write_text(json.dumps(doc))
    outcome = run(toy, run_dir)
    assert outcome.jobs_run == ["total"]
    assert outcome.discarded == ["step total: its outputs were never certified (the job was interrupted); "
                                 "it will run again"]
