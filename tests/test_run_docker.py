"""Runs under --environment docker: each job in its own container of the pinned image.

Needs a Docker engine (CI starts one, see .ci/run): these tests fail, not
skip, without it.
"""

from __future__ import annotations

import json
import os
import re
import time

import docker
import pytest

from recast import execution, images
from recast import request as request_mod
from recast.errors import RecastError
from recast.validate import load_analysis

pytestmark = pytest.mark.docker


@pytest.fixture
def built_toy(toy):
    analysis = load_analysis(toy)
    images.build(analysis)
    return load_analysis(toy)


def run(analysis, run_dir, environment):
    req = request_mod.load(analysis, analysis.examples["default"].request)
    return execution.run(analysis, req, run_dir, environment=environment, cores=2)


def test_docker_run_matches_host_one_labelled_container_per_job(built_toy, tmp_path):
    client = docker.from_env()
    since = time.time() - 1
    outcome = run(built_toy, tmp_path / "docker", "docker")
    until = time.time() + 1
    run(built_toy, tmp_path / "host", "host")

    in_docker = json.loads((tmp_path / "docker" / "results.json").read_text())
    on_host = json.loads((tmp_path / "host" / "results.json").read_text())
    assert in_docker["values"] == on_host["values"]
    assert in_docker["run"]["environment"] == "docker"

    events = client.events(since=since, until=until, decode=True,
                           filters={"type": "container", "event": "create", "label": f"recast.run={outcome.plan.run_id}"})
    steps = sorted(e["Actor"]["Attributes"]["recast.step"] for e in events)
    assert steps == ["square__0", "square__1", "square__2", "total"]

    pinned = images.resolve(built_toy, "toy").id
    provenance = json.loads((tmp_path / "docker" / "provenance.json").read_text())
    assert {j["image_id"] for j in provenance["jobs"].values()} == {pinned}
    assert provenance["images"]["total"]["id"] == pinned

    square = tmp_path / "docker" / "steps" / "square__0" / "square.json"
    assert json.loads(square.read_text())["uid"] != 0, "jobs must not run as root in their container"
    assert square.stat().st_uid == os.getuid(), "outputs must belong to the invoking user"
    assert not client.containers.list(all=True, filters={"label": f"recast.run={outcome.plan.run_id}"}), \
        "containers are removed after their job"


def test_unchanged_docker_rerun_does_nothing_and_unbuilt_image_is_refused(built_toy, toy, tmp_path):
    run_dir = tmp_path / "run"
    run(built_toy, run_dir, "docker")
    assert run(built_toy, run_dir, "docker").jobs_run == []
    (toy / "images.lock.json").unlink()
    # The hint is a command to paste: with the catalog the entry is in.
    with pytest.raises(RecastError, match=rf"not built: run `recast images build toy --catalog {re.escape(str(toy.parent))}`"):
        run(load_analysis(toy), run_dir, "docker")


def test_recast_run_starts_containers_for_its_jobs_plain_snakemake_does_not(built_toy, tmp_path):
    import subprocess
    import sys

    from conftest import ROOT

    outcome = run(built_toy, tmp_path / "run", "docker")
    records = [json.loads(p.read_text()) for p in (tmp_path / "run" / "logs").glob("*.json")]
    assert len(records) == 4 and all(r["container_broker"] for r in records)
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "--configfile",
         str(outcome.run_dir / ".recast" / "config.yaml"), "--cores", "1", "--forceall", "--quiet"],
        capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    records = [json.loads(p.read_text()) for p in (tmp_path / "run" / "logs").glob("*.json")]
    assert len(records) == 4 and not any(r["container_broker"] for r in records)


def test_a_cancelled_job_process_takes_its_container_with_it(built_toy, tmp_path):
    import subprocess
    import sys

    from recast.environments import ImageRef, Job, broker

    client = docker.from_env()
    image = images.resolve(built_toy, "toy")
    outdir = tmp_path / "out"
    outdir.mkdir()
    job = Job(run_id="cancel-test", step="sleeper", argv=["python3", "-c", "import time; time.sleep(120)"],
              outdir=outdir, read_only=[], image=ImageRef(image.name, image.tag, image.id), time_limit_s=300,
              log_path=tmp_path / "sleeper.log")
    labels = {"label": ["recast.run=cancel-test"]}
    with broker.serve(tmp_path, concurrency=1):
        code = ("import json, sys; from pathlib import Path; from recast.environments import broker; "
                "job = broker.job_from_json(json.loads(sys.argv[2])); broker.request(sys.argv[1], job)")
        proc = subprocess.Popen([sys.executable, "-c", code, str(tmp_path), json.dumps(broker.job_to_json(job))])
        deadline = time.monotonic() + 30
        while not client.containers.list(filters=labels):
            assert time.monotonic() < deadline and proc.poll() is None, "the job's container never started"
            time.sleep(0.1)
        proc.kill()
        proc.wait()
        deadline = time.monotonic() + 15
        while client.containers.list(all=True, filters=labels):
            assert time.monotonic() < deadline, "the abandoned job's container is still there"
            time.sleep(0.2)
    assert not broker.socket_path(tmp_path).exists()
