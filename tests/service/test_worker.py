"""Workers for real: atomic claims, leases that expire, a worker killed with kill -9, two workers at once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import select

from recast.service import worker as worker_mod
from recast.service.db import Audit, Request

from conftest import ROOT
from .conftest import submit, toy_document, wait_for

REFERENCE = json.loads((ROOT / "tests" / "fixtures" / "catalog" / "toy" / "requests" / "default.results.json")
                       .read_text())


def queue(client, people, catalog, count=1, document=None) -> list[int]:
    ids = []
    for _ in range(count):
        answer = submit(client, people, "alice", catalog, document=document)
        assert answer.status_code == 201, answer.text
        rid = answer.json()["id"]
        assert client.post(f"/api/requests/{rid}/approve", headers=people.headers("maria")).json()["status"] == "queued"
        ids.append(rid)
    return ids


def moves(service, rid) -> list[tuple]:
    with service.db.session() as session:
        return [(a.from_status, a.to_status, a.actor, a.comment) for a in session.scalars(
            select(Audit).where(Audit.request_id == rid, Audit.action == "transition").order_by(Audit.id))]


def row(service, rid) -> Request:
    with service.db.session() as session:
        return session.get(Request, rid)


def test_concurrent_claims_take_each_request_once(client, service, people, catalog):
    ids = queue(client, people, catalog, count=6)
    claimed: list[tuple[str, int]] = []
    lock = threading.Lock()
    start = threading.Barrier(8)

    def claimer(n):
        start.wait()
        while (rid := worker_mod.claim(service.db, f"w{n}", 60)) is not None:
            with lock:
                claimed.append((f"w{n}", rid))

    threads = [threading.Thread(target=claimer, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(rid for _, rid in claimed) == sorted(ids)
    for who, rid in claimed:
        assert row(service, rid).lease_owner == who
        assert [m[:3] for m in moves(service, rid)][-1] == ("queued", "running", who)


def test_an_expired_lease_is_taken_over_and_only_its_holder_may_finish(client, service, people, catalog):
    [rid] = queue(client, people, catalog)
    assert worker_mod.claim(service.db, "A", 0.3) == rid
    assert worker_mod.claim(service.db, "B", 60) is None, "a live lease is not taken"
    time.sleep(0.5)
    assert worker_mod.claim(service.db, "B", 60) == rid
    assert worker_mod.heartbeat(service.db, rid, "A", 60, None) == "lost"
    assert worker_mod.finish(service.db, rid, "A", "succeeded", results={"from": "A"}) is False
    assert worker_mod.heartbeat(service.db, rid, "B", 60, {"done": 1}) == "ok"
    assert worker_mod.finish(service.db, rid, "B", "succeeded", results={"from": "B"}) is True
    assert worker_mod.finish(service.db, rid, "B", "succeeded", results={"from": "B again"}) is False
    assert row(service, rid).results == {"from": "B"} and row(service, rid).attempts == 2
    assert [m[:3] for m in moves(service, rid)][-4:] == [
        ("queued", "running", "A"), ("running", "queued", "system"), ("queued", "running", "B"),
        ("running", "succeeded", "B")]
    assert moves(service, rid)[-3][3] == "the lease of A expired"


def test_cancelling_a_running_request_stops_its_run(client, service, people, catalog):
    [rid] = queue(client, people, catalog, document=toy_document(label="nap30"))
    worker = worker_mod.Worker(service, environment="host", lease_seconds=3)
    outcome = {}
    thread = threading.Thread(target=lambda: outcome.setdefault("status", worker.run(once=True)))
    thread.start()
    try:
        assert wait_for(lambda: "square__1" in ((row(service, rid).progress or {}).get("running") or []), 60)
        assert client.post(f"/api/requests/{rid}/cancel", headers=people.headers("alice")).json()["status"] \
            == "cancelled"
        thread.join(30)
        assert not thread.is_alive()
    finally:
        worker.stop.set()
        thread.join(30)
    assert row(service, rid).status == "cancelled" and row(service, rid).results is None
    assert [m[:2] for m in moves(service, rid)][-1] == ("running", "cancelled")
    assert not runners_of(os.getpid())
    assert wait_for(lambda: not processes_with(b"nap30"), 10), "the run's jobs are stopped too"


def processes_with(marker: bytes) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and marker in (entry / "cmdline").read_bytes() \
                    and (entry / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def runners_of(parent: int) -> list[int]:
    """The runner processes a worker started (by its --parent argument), still alive."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if b"recast.service.runner" in argv and str(parent).encode() in argv and state != "Z":
            found.append(int(entry.name))
    return found


def start_worker(service, lease: float = 2.0) -> subprocess.Popen:
    argv = [sys.executable, "-m", "recast", "worker", "--data", str(service.config.data), "--catalog",
            str(service.catalog.root), "--environment", "host", "--lease-seconds", str(lease), "--poll-seconds", "0.2"]
    if not service.db.sqlite:
        argv += ["--database-url", service.db.url]
    return subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})


def stop(process: subprocess.Popen) -> str:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        _, err = process.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        _, err = process.communicate()
    return err


def job_record(service, rid, job) -> dict:
    try:
        return json.loads((service.config.runs_dir / str(rid) / "logs" / f"{job}.json").read_text())
    except (OSError, ValueError):
        return {}


def test_a_worker_killed_with_kill_9_is_replaced_and_the_run_resumes(client, service, people, catalog):
    import yaml

    document = yaml.safe_load(toy_document())
    for point in document["parameters"]["points"][1:]:
        point["label"] = "nap4"
    [rid] = queue(client, people, catalog, document=yaml.safe_dump(document))
    jobs = ("square__0", "square__1", "square__2")
    first = start_worker(service)
    try:
        # Killed while a napping job runs, after at least one job is done (Snakemake picks the order).
        def mid_run():
            records = {job: job_record(service, rid, job) for job in jobs}
            done = {j for j, r in records.items() if r.get("exit_code") == 0 and r.get("ended")}
            running = {j for j, r in records.items() if r.get("started") and not r.get("ended")}
            return (done, running) if done and running else None

        state = wait_for(mid_run, 90, every=0.05)
        assert state, stop(first)
        done_before, running_then = state
        started_before = {job: job_record(service, rid, job)["started"] for job in done_before}
        os.kill(first.pid, signal.SIGKILL)
        first.wait(10)
        assert wait_for(lambda: not runners_of(first.pid), 10), "the run must die with its worker"
        assert wait_for(lambda: not processes_with(b"nap4"), 10), "and its jobs with it"
        assert row(service, rid).status == "running"
    finally:
        stop(first)
    second = start_worker(service)
    try:
        assert wait_for(lambda: row(service, rid).status in ("succeeded", "failed"), 120), stop(second)
    finally:
        err = stop(second)
    request = row(service, rid)
    assert request.status == "succeeded", (request.error, err)
    assert request.results["values"] == REFERENCE["values"], "identical to an uninterrupted run"
    assert request.attempts == 2
    ran = {job for job, record in request.provenance["jobs"].items() if record["ran_in_this_invocation"]}
    assert not ran & done_before, "what was done is not redone"
    assert running_then <= ran and "total" in ran, "what was cut short is redone"
    assert all(job_record(service, rid, job)["started"] == started for job, started in started_before.items())
    transitions = [m[:2] for m in moves(service, rid)]
    assert transitions.count(("running", "succeeded")) == 1
    assert transitions[-4:] == [("queued", "running"), ("running", "queued"), ("queued", "running"),
                                ("running", "succeeded")]
    assert "expired" in moves(service, rid)[-3][3]


def test_two_workers_never_run_one_request_twice(client, service, people, catalog):
    workers = [start_worker(service, lease=5), start_worker(service, lease=5)]
    try:
        ids = queue(client, people, catalog, count=4, document=toy_document(label="nap1"))
        assert wait_for(lambda: all(row(service, rid).status in ("succeeded", "failed") for rid in ids), 180)
    finally:
        errors = [stop(w) for w in workers]
    runners = set()
    for rid in ids:
        request = row(service, rid)
        assert request.status == "succeeded", (request.error, errors)
        assert request.results["values"] == REFERENCE["values"]
        transitions = moves(service, rid)
        claims = [m for m in transitions if m[:2] == ("queued", "running")]
        assert len(claims) == 1 and request.attempts == 1, transitions
        assert [m[:2] for m in transitions].count(("running", "succeeded")) == 1
        runners.add(claims[0][2])
    assert len(runners) == 2, f"both workers should have had work: {runners}"
