"""Workers for real with Docker: each job of a run in its own container of the toy's pinned image.

The same two stories as test_worker.py's host versions, with ``recast worker
--environment docker``: a worker killed with kill -9 mid-run, whose run is
resumed by another worker in the same run folder (exactly one result, the
values of an uninterrupted run, and none of the run's containers left: the
dead run's container, whose owner is gone, is reaped when the next run
starts); and two workers on one database, each request run once (one
container per job of each run, never two).

Needs a Docker engine (CI starts one, see .ci/run): these tests fail, not
skip, without it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
import yaml

from recast import images
from recast import plan as plan_mod
from recast.validate import load_analysis

from conftest import ROOT
from .conftest import toy_document, wait_for
from .test_worker import REFERENCE, job_record, moves, processes_with, queue, row, runners_of, stop

pytestmark = pytest.mark.docker

JOBS = ("square__0", "square__1", "square__2")


@pytest.fixture
def built(catalog):
    """The toy's image built and pinned in the test's catalog (the lock file is written there)."""
    images.build(load_analysis(catalog / "toy"))
    return catalog


def start_docker_worker(service, lease: float = 2.0) -> subprocess.Popen:
    argv = [sys.executable, "-m", "recast", "worker", "--data", str(service.config.data), "--catalog",
            str(service.catalog.root), "--environment", "docker", "--lease-seconds", str(lease),
            "--poll-seconds", "0.2"]
    if not service.db.sqlite:
        argv += ["--database-url", service.db.url]
    return subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})


def run_id_of(service, rid) -> str | None:
    try:
        return plan_mod.load(service.config.runs_dir / str(rid) / plan_mod.PLAN_FILE).run_id
    except (OSError, ValueError, TypeError, KeyError):
        return None


def containers(run_id: str, running_only: bool = False) -> list[str]:
    """``docker ps [-a] --filter label=recast.run=RUN``: the ids of that run's containers."""
    argv = ["docker", "ps", "--quiet", "--no-trunc", "--filter", f"label=recast.run={run_id}"]
    if not running_only:
        argv.insert(2, "--all")
    return subprocess.run(argv, check=True, capture_output=True, text=True).stdout.split()


def created(run_id: str, since: float, until: float) -> list[str]:
    """The steps of every container created for ``run_id`` between ``since`` and ``until``."""
    import docker

    events = docker.from_env().events(since=since, until=until, decode=True, filters={
        "type": "container", "event": "create", "label": f"recast.run={run_id}"})
    return sorted(e["Actor"]["Attributes"]["recast.step"] for e in events)


@pytest.mark.parametrize("killed", ["worker", "worker and run"])
def test_a_docker_worker_killed_with_kill_9_is_replaced_and_the_run_resumes(built, client, service, people, killed):
    """``worker``: kill -9 of the worker; its run gets SIGTERM from the kernel and ends its container.
    ``worker and run``: kill -9 of the run's process too (as the OOM killer would), which leaves its
    container behind with a dead owner: the next run reaps it."""
    document = yaml.safe_load(toy_document())
    for point in document["parameters"]["points"][1:]:
        point["label"] = "nap4"
    [rid] = queue(client, people, built, document=yaml.safe_dump(document))
    since = time.time() - 1
    first = start_docker_worker(service)
    try:
        # Killed while a napping job's container runs, after at least one job is done.
        def mid_run():
            records = {job: job_record(service, rid, job) for job in JOBS}
            done = {j for j, r in records.items() if r.get("exit_code") == 0 and r.get("ended")}
            running = {j for j, r in records.items() if r.get("started") and not r.get("ended")}
            run_id = run_id_of(service, rid)
            if not (done and running and run_id and containers(run_id, running_only=True)):
                return None
            return done, running, run_id

        state = wait_for(mid_run, 120, every=0.1)
        assert state, stop(first)
        done_before, running_then, run_id = state
        started_before = {job: job_record(service, rid, job)["started"] for job in done_before}
        if killed == "worker and run":
            [runner] = runners_of(first.pid)
            os.kill(runner, signal.SIGKILL)
        os.kill(first.pid, signal.SIGKILL)
        first.wait(10)
        assert wait_for(lambda: not runners_of(first.pid), 10), "the run must die with its worker"
        run_dir = f"{service.config.runs_dir / str(rid)}/".encode()
        assert wait_for(lambda: not processes_with(run_dir), 10), "and its jobs' processes too"
        assert row(service, rid).status == "running"
        if killed == "worker and run":
            # Its container outlives it (its owner is gone): the next run reaps it (or any run on this
            # Docker engine that starts first: every run reaps dead owners' containers).
            assert containers(run_id), "the killed run's container is left behind"
    finally:
        stop(first)
    second = start_docker_worker(service)
    try:
        assert wait_for(lambda: row(service, rid).status in ("succeeded", "failed"), 180), stop(second)
    finally:
        err = stop(second)
    until = time.time() + 1
    request = row(service, rid)
    assert request.status == "succeeded", (request.error, err)
    assert request.results["values"] == REFERENCE["values"], "identical to an uninterrupted run"
    assert request.results["run"]["environment"] == "docker"
    assert request.attempts == 2
    assert run_id_of(service, rid) == run_id, "the same run folder, resumed"
    ran = {job for job, record in request.provenance["jobs"].items() if record["ran_in_this_invocation"]}
    assert not ran & done_before, "what was done is not redone"
    assert running_then <= ran and "total" in ran, "what was cut short is redone"
    assert all(job_record(service, rid, job)["started"] == started for job, started in started_before.items())
    transitions = [m[:2] for m in moves(service, rid)]
    assert transitions.count(("running", "succeeded")) == 1
    assert transitions[-4:] == [("queued", "running"), ("running", "queued"), ("queued", "running"),
                                ("running", "succeeded")]
    assert "expired" in moves(service, rid)[-3][3]
    # One container per job the first attempt started, one per job the second ran; none left.
    steps = created(run_id, since, until)
    assert sorted(set(steps)) == sorted(set(JOBS) | {"total"})
    assert len(steps) == len(done_before) + len(running_then) + len(ran), steps
    assert containers(run_id) == [], "docker ps -a --filter label=recast.run shows none of the run's containers"


def test_two_docker_workers_never_run_one_request_twice(built, client, service, people):
    since = time.time() - 1
    workers = [start_docker_worker(service, lease=10), start_docker_worker(service, lease=10)]
    try:
        ids = queue(client, people, built, count=4)
        assert wait_for(lambda: all(row(service, rid).status in ("succeeded", "failed") for rid in ids), 240)
    finally:
        errors = [stop(w) for w in workers]
    until = time.time() + 1
    runners = set()
    for rid in ids:
        request = row(service, rid)
        assert request.status == "succeeded", (request.error, errors)
        assert request.results["values"] == REFERENCE["values"]
        assert request.results["run"]["environment"] == "docker"
        transitions = moves(service, rid)
        claims = [m for m in transitions if m[:2] == ("queued", "running")]
        assert len(claims) == 1 and request.attempts == 1, transitions
        assert [m[:2] for m in transitions].count(("running", "succeeded")) == 1
        runners.add(claims[0][2])
        run_id = run_id_of(service, rid)
        assert created(run_id, since, until) == sorted(JOBS + ("total",)), "each job ran once, in one container"
        assert containers(run_id) == []
    assert len(runners) == 2, f"both workers should have had work: {runners}"
