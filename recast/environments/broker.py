"""The run's container broker: `recast run` starts containers on behalf of its jobs.

Every Snakemake job is a fresh ``python -m recast.job`` process, and importing
the Docker SDK costs more than a tenth of a second in each of them. While
``recast run`` executes a plan on the local executor, it already has the SDK
loaded, so it listens on a unix socket and runs each job's container for it
(:class:`~recast.environments.docker.DockerEnvironment`, unchanged). A job
process asks the broker when one answers, and runs the container itself
otherwise (plain ``snakemake``, remote executors): the result is the same.

One request per connection: the job as JSON, one line; the reply is the
outcome as JSON, one line. A job process holds its connection open while it
waits; if it goes away (cancelled, killed), the broker kills that job's
container, which is then removed as usual.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import queue
import select
import socket
import socketserver
import tempfile
import threading
from dataclasses import asdict
from pathlib import Path

from recast.environments import ImageRef, Job, Outcome
from recast.errors import RecastError


def socket_path(run_dir: str | Path) -> Path:
    # Unix socket paths are limited to about 100 bytes: a short name in the temp
    # folder, derived from the run folder so that job processes find it.
    digest = hashlib.sha256(str(Path(run_dir).resolve()).encode()).hexdigest()[:20]
    return Path(tempfile.gettempdir()) / f"recast-{os.getuid()}-{digest}.sock"


def job_to_json(job: Job) -> dict:
    doc = asdict(job)
    doc.update(outdir=str(job.outdir), read_only=[str(p) for p in job.read_only],
               log_path=str(job.log_path) if job.log_path else None)
    return doc


def job_from_json(doc: dict) -> Job:
    doc = dict(doc)
    image = doc.pop("image")
    return Job(**{**doc, "outdir": Path(doc["outdir"]), "read_only": [Path(p) for p in doc["read_only"]],
                  "log_path": Path(doc["log_path"]) if doc["log_path"] else None,
                  "image": ImageRef(**image) if image else None})


class _Handler(socketserver.StreamRequestHandler):
    server: _Server

    def handle(self) -> None:
        job = job_from_json(json.loads(self.rfile.readline()))
        done = threading.Event()
        watcher = threading.Thread(target=self._cancel_if_abandoned, args=(job, done), daemon=True)
        watcher.start()
        environment = self.server.environments.get()
        import docker
        import requests

        try:
            outcome = environment.run(job)
            reply = asdict(outcome)
        except RecastError as exc:
            reply = {"error": str(exc)}
        except (docker.errors.DockerException, requests.RequestException, OSError) as exc:
            # The job is told; nothing escapes this thread as a traceback on the run's terminal.
            reply = {"error": f"step {job.step}: the Docker engine failed while running it: {exc}"}
        finally:
            done.set()
            self.server.environments.put(environment)
        with contextlib.suppress(OSError):  # the job process may be gone
            self.wfile.write(json.dumps(reply).encode() + b"\n")

    def _cancel_if_abandoned(self, job: Job, done: threading.Event) -> None:
        abandoned = False
        while not done.wait(0.2):
            if not abandoned:
                try:
                    readable, _, _ = select.select([self.connection], [], [], 0)
                    abandoned = bool(readable) and not self.connection.recv(1, socket.MSG_PEEK)
                except (OSError, ValueError):  # closed just now: the job was answered, nothing to cancel
                    return
            if abandoned:  # keep trying: the container may not have been created yet
                self.server.kill(job)


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    block_on_close = True  # on shutdown, wait for running jobs to be answered or cancelled

    def __init__(self, path: Path, pool_size: int):
        from recast.environments.docker import DockerEnvironment

        super().__init__(str(path), _Handler)
        self.environments: queue.Queue = queue.Queue()
        for _ in range(pool_size):  # one SDK client per concurrent job
            self.environments.put(DockerEnvironment())
        self._killer = DockerEnvironment()

    def kill(self, job: Job) -> None:
        import docker

        api = self._killer._api()
        labels = [f"recast.run={job.run_id}", f"recast.step={job.step}"]
        for container in api.containers(filters={"label": labels}, quiet=True):
            with contextlib.suppress(docker.errors.APIError):
                api.kill(container["Id"])


@contextlib.contextmanager
def serve(run_dir: str | Path, concurrency: int, run_id: str | None = None):
    """Run containers for the jobs of ``run_dir`` while the ``with`` block lasts.

    When the block ends, containers of ``run_id`` that are still there (the run
    was interrupted) are removed before the broker waits for its jobs' answers.
    """
    path = socket_path(run_dir)
    if path.exists() or path.is_symlink():
        if path.lstat().st_uid != os.getuid():
            raise RecastError(f"{path} belongs to another user: remove it, or set TMPDIR elsewhere")
        path.unlink()
    server = _Server(path, max(1, concurrency))
    os.chmod(path, 0o600)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True)
    thread.start()
    try:
        yield path
    finally:
        if run_id is not None:
            from recast.environments.docker import reap

            reap(server._killer._api(), run_id=run_id)
        server.shutdown()
        server.server_close()
        path.unlink(missing_ok=True)


def request(run_dir: str | Path, job: Job) -> Outcome | None:
    """Run ``job`` through the run's broker; None when no broker of ours answers."""
    path = socket_path(run_dir)
    try:
        if path.lstat().st_uid != os.getuid():
            return None
        connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        connection.connect(str(path))
    except OSError:
        return None
    with connection, connection.makefile("rwb") as stream:
        stream.write(json.dumps(job_to_json(job)).encode() + b"\n")
        stream.flush()
        line = stream.readline()
    if not line:
        raise RecastError(f"step {job.step}: the run's container broker closed the connection")
    reply = json.loads(line)
    if "error" in reply:
        raise RecastError(reply["error"])
    return Outcome(**reply)
