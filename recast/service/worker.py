"""``recast worker``: claim queued requests, run them with :func:`recast.execution.run`, store what they give.

Claiming is atomic, so that N workers on one database never run one request
twice: on PostgreSQL a ``SELECT ... FOR UPDATE SKIP LOCKED`` then an update in
the same transaction; on SQLite a single conditional ``UPDATE ... WHERE
status = 'queued' OR (status = 'running' AND lease expired)`` (one statement
holds SQLite's write lock from start to end). The claim is a lease: the
worker renews it with every heartbeat, together with the run's progress (jobs
done / total, jobs running, the last lines of the newest log), read from the
run folder's job records.

Each run happens in a child process (``python -m recast.service.runner``) in
its own process group: the worker can stop it when the request is cancelled
or the lease is lost, and the child dies with the worker (a worker killed
with ``kill -9`` takes its run down with it). Its lease then expires, another
worker claims the request and runs it again in the same run folder, which
redoes only what is missing (the run folder's incrementality). Finishing is a
compare-and-set on (status running, lease owner = this worker): a request
ends with exactly one result.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import secrets
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from sqlalchemy import desc, or_, select, update

from recast.errors import RecastError
from recast.service import lifecycle, uploads
from recast.service.actions import Service
from recast.service.db import Audit, Database, Request, utcnow

log = logging.getLogger("recast.worker")
LOG_LINES = 20


def worker_name() -> str:
    return f"worker {socket.gethostname()}:{os.getpid()}:{secrets.token_hex(2)}"


def _claimable(now):
    return or_(Request.status == "queued",
               (Request.status == "running") & (Request.lease_expires_at < now))


def claim(db: Database, worker: str, lease_seconds: float) -> int | None:
    """Take one queued request (or a running one whose lease expired) for ``worker``; its id, or None."""
    now = utcnow()
    values = {"status": "running", "lease_owner": worker, "lease_expires_at": now + timedelta(seconds=lease_seconds),
              "attempts": Request.attempts + 1, "updated_at": now}
    with db.session() as session:
        if db.sqlite:
            oldest = select(Request.id).where(_claimable(now)).order_by(Request.id).limit(1).scalar_subquery()
            request_id = session.execute(update(Request).where(Request.id == oldest, _claimable(now))
                                         .values(**values).returning(Request.id)
                                         .execution_options(synchronize_session=False)).scalar()
        else:
            request_id = session.execute(select(Request.id).where(_claimable(now)).order_by(Request.id).limit(1)
                                         .with_for_update(skip_locked=True)).scalar()
            if request_id is not None:
                session.execute(update(Request).where(Request.id == request_id).values(**values)
                                .execution_options(synchronize_session=False))
        if request_id is None:
            session.rollback()
            return None
        last = session.scalar(select(Audit).where(Audit.request_id == request_id, Audit.action == "transition")
                              .order_by(desc(Audit.id)).limit(1))
        if last is not None and last.to_status == "running":  # taken over from a worker whose lease expired
            lifecycle.record(session, request_id, "running", "queued", "system", None,
                             f"the lease of {last.actor} expired")
        lifecycle.record(session, request_id, "queued", "running", worker, None, "claimed")
        session.commit()
        return request_id


def heartbeat(db: Database, request_id: int, worker: str, lease_seconds: float, progress: dict | None) -> str:
    """Renew the lease (and store progress): ``ok``, or ``cancelled`` / ``lost`` when the run must stop."""
    with db.session() as session:
        values = {"lease_expires_at": utcnow() + timedelta(seconds=lease_seconds)}
        if progress is not None:
            values["progress"] = progress
        done = session.execute(update(Request).where(Request.id == request_id, Request.status == "running",
                                                     Request.lease_owner == worker).values(**values)
                               .execution_options(synchronize_session=False))
        session.commit()
        if done.rowcount == 1:
            return "ok"
        status = session.scalar(select(Request.status).where(Request.id == request_id))
        return "cancelled" if status == "cancelled" else "lost"


def finish(db: Database, request_id: int, worker: str, status: str, comment: str = "", **values) -> bool:
    """End a run this worker still holds: succeeded or failed, with its results; False if it no longer holds it."""
    with db.session() as session:
        done = session.execute(update(Request).where(Request.id == request_id, Request.status == "running",
                                                     Request.lease_owner == worker)
                               .values(status=status, lease_owner=None, lease_expires_at=None, updated_at=utcnow(),
                                       **values)
                               .execution_options(synchronize_session=False))
        if done.rowcount != 1:
            session.rollback()
            return False
        lifecycle.record(session, request_id, "running", status, worker, None, comment)
        session.commit()
        return True


def release(db: Database, request_id: int, worker: str, comment: str) -> bool:
    """Give a running request back to the queue (its run folder is kept: the next run resumes it)."""
    with db.session() as session:
        done = session.execute(update(Request).where(Request.id == request_id, Request.status == "running",
                                                     Request.lease_owner == worker)
                               .values(status="queued", lease_owner=None, lease_expires_at=None, updated_at=utcnow())
                               .execution_options(synchronize_session=False))
        if done.rowcount != 1:
            session.rollback()
            return False
        lifecycle.record(session, request_id, "running", "queued", worker, None, comment)
        session.commit()
        return True


def progress(run_dir: Path) -> dict:
    """Jobs done / total, the jobs running, and the last lines of the newest log, from the run folder."""
    from recast import execution
    from recast import plan as plan_mod
    from recast.job import tail

    try:
        plan = plan_mod.load(run_dir / plan_mod.PLAN_FILE)
    except (OSError, ValueError, TypeError, KeyError):
        return {"phase": "preparing", "done": 0, "total": None, "running": [], "failed": [], "log": []}
    records = execution.records(plan)
    done = sorted(j.id for j, r in records if r.get("ended") and r.get("exit_code") == 0)
    running = sorted(j.id for j, r in records if r.get("started") and not r.get("ended"))
    failed = sorted(j.id for j, r in records if r.get("ended") and r.get("exit_code") not in (0, None))
    newest, newest_job = None, None
    for job in plan.jobs:
        try:
            stamp = os.stat(job.log).st_mtime
        except OSError:
            continue
        if newest is None or stamp > newest:
            newest, newest_job = stamp, job
    lines = tail(newest_job.log, LOG_LINES).splitlines()[-LOG_LINES:] if newest_job else []
    return {"phase": "running", "done": len(done), "total": len(plan.jobs), "running": running, "failed": failed,
            "log_job": newest_job.id if newest_job else None, "log": [line[:500] for line in lines]}


@dataclass
class Worker:
    service: Service
    environment: str = "docker"
    cores: int = 1
    executor: str = "local"  # where the run's jobs go (recast.executors), with its settings
    executor_settings: dict = field(default_factory=dict)
    lease_seconds: float = 60.0
    poll_seconds: float = 2.0
    name: str = field(default_factory=worker_name)
    stop: threading.Event = field(default_factory=threading.Event)

    @property
    def db(self) -> Database:
        return self.service.db

    @property
    def beat_seconds(self) -> float:
        return max(0.2, min(self.lease_seconds / 3, 5.0))

    def run(self, once: bool = False) -> int:
        """Claim and run requests until stopped (``once``: until none is waiting); how many were run."""
        count = 0
        while not self.stop.is_set():
            request_id = claim(self.db, self.name, self.lease_seconds)
            if request_id is None:
                if once:
                    break
                self.stop.wait(self.poll_seconds)
                continue
            log.info("%s: running request %s", self.name, request_id)
            self.process(request_id)
            count += 1
        return count

    def process(self, request_id: int) -> str:
        """Run one claimed request to its end; the status it ended with (or ``lost`` / ``cancelled``)."""
        try:
            child, outcome_path = self._start(request_id)
        except (RecastError, OSError) as exc:
            finish(self.db, request_id, self.name, "failed", "could not start", error=str(exc))
            return "failed"
        run_dir = Path(self._row(request_id).run_dir)
        while True:
            try:
                child.wait(timeout=self.beat_seconds)
                break
            except subprocess.TimeoutExpired:
                pass
            if self.stop.is_set():
                _kill(child)
                release(self.db, request_id, self.name, "the worker was stopped")
                return "stopped"
            state = heartbeat(self.db, request_id, self.name, self.lease_seconds, progress(run_dir))
            if state != "ok":
                log.warning("%s: request %s %s: stopping its run", self.name, request_id, state)
                _kill(child)
                return state
        return self._finish(request_id, child.returncode, outcome_path, run_dir)

    def _row(self, request_id: int) -> Request:
        with self.db.session() as session:
            request = session.get(Request, request_id)
            session.expunge(request)
            return request

    def _start(self, request_id: int) -> tuple[subprocess.Popen, Path]:
        config = self.service.config
        request = self._row(request_id)
        folder = config.requests_dir / str(request.id)
        folder.mkdir(parents=True, exist_ok=True)
        uploads.materialise(config, folder / "files", [(f.name, f.sha256) for f in request.files])
        document_path = folder / "request.json"
        document_path.write_text(json.dumps(request.document, indent=1, sort_keys=True))
        run_dir = Path(request.run_dir)
        # We hold the lease: whoever ran here before is gone. Its Snakemake lock would refuse us.
        shutil.rmtree(run_dir / ".snakemake" / "locks", ignore_errors=True)
        outcome_path = folder / f"outcome-{request.attempts}.json"
        outcome_path.unlink(missing_ok=True)
        catalog = self.service.catalog.root
        argv = [sys.executable, "-m", "recast.service.runner", "--catalog", str(catalog), "--analysis",
                request.analysis_id, "--request", str(document_path), "--files", str(folder / "files"), "--run-dir", str(run_dir),
                "--environment", self.environment, "--cores", str(self.cores), "--executor", self.executor,
                "--executor-settings", json.dumps(self.executor_settings), "--parent", str(os.getpid()),
                "--outcome", str(outcome_path)]
        with open(folder / "runner.log", "ab") as output:
            output.write(f"--- attempt {request.attempts} by {self.name} ---\n".encode())
            output.flush()
            child = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        return child, outcome_path

    def _finish(self, request_id: int, returncode: int, outcome_path: Path, run_dir: Path) -> str:
        try:
            outcome = json.loads(outcome_path.read_text())
        except (OSError, ValueError):
            outcome = {"status": "failed", "error": f"the run's process ended with status {returncode} "
                                                    "and no outcome (see runner.log)"}
        final = progress(run_dir)
        if outcome.get("status") == "succeeded" and returncode == 0:
            try:
                results = json.loads((run_dir / "results.json").read_text())
                provenance = json.loads((run_dir / "provenance.json").read_text())
            except (OSError, ValueError) as exc:
                outcome = {"status": "failed", "error": f"the run succeeded but its results cannot be read: {exc}"}
            else:
                jobs_run = outcome.get("jobs_run", [])
                if finish(self.db, request_id, self.name, "succeeded", f"{len(jobs_run)} job(s) ran",
                          results=results, provenance=provenance, progress=final, error=""):
                    return "succeeded"
                return "lost"
        error = str(outcome.get("error") or "the run failed")[-20000:]
        if finish(self.db, request_id, self.name, "failed", error.splitlines()[0][:500] if error else "",
                  error=error, progress=final):
            return "failed"
        return "lost"


def _kill(child: subprocess.Popen, grace_seconds: float = 10) -> None:
    """Stop a run: SIGTERM first (recast.execution then ends its jobs, which run in sessions of their
    own, and keeps what finished), SIGKILL to its whole process group if it lingers."""
    try:
        child.send_signal(signal.SIGTERM)
        child.wait(timeout=grace_seconds)
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(child.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    child.wait()

