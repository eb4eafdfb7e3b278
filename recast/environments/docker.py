"""The docker environment: each job in its template's pinned image, isolated.

Per job, one container of the image *ID* recorded by ``recast images build``
(never a tag, which can move), with:

- the command as an argument list (no shell anywhere);
- inputs bind-mounted read-only and the job's output folder read-write, each
  at its own absolute host path, so one ``argv`` serves host and container;
- a read-only root file system and a private ``/tmp`` (``HOME=/tmp``): the
  output folder is the only place a job leaves anything;
- no network unless the template declares it, no capabilities, no privilege
  escalation, and a non-root user: the invoking uid:gid, or ``nobody`` when
  recast runs as root (outputs are then chowned back, so they always end up
  owned by the invoking user);
- memory, CPU, PID and time limits from the template;
- labels ``recast.run``, ``recast.step``, ``recast.image``, so the containers
  of a run can be found with ``docker ps --filter label=recast.run=RUN``.

The container is removed once its exit code and log are collected.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

from recast.environments import Job, Outcome
from recast.errors import ExecutionError

NOBODY = (65534, 65534)
PIDS_LIMIT = 512
TMP_SIZE = "512m"
KILLED_BY_TIME_LIMIT = -9  # what the host environment reports, for the same job


def engine_available(timeout: float = 2.0) -> bool:
    """Whether a Docker engine answers (``DOCKER_HOST`` or the default socket)."""
    import docker
    import requests

    try:
        return bool(docker.from_env(timeout=timeout).ping())
    except (docker.errors.DockerException, requests.exceptions.RequestException, OSError):
        return False


class _Terminated(Exception):
    """SIGTERM arrived while a container ran: unwind so that it is removed."""


class DockerEnvironment:
    name = "docker"

    def __init__(self):
        self._client = None

    def _api(self):
        if self._client is None:
            import docker

            try:
                self._client = docker.from_env()
            except docker.errors.DockerException as err:
                raise ExecutionError(
                    f"no Docker engine answers ({os.environ.get('DOCKER_HOST', 'unix:///var/run/docker.sock')}): "
                    f"start one (containers/engine.sh) or run with --environment host\n  {err}"
                ) from None
        return self._client.api

    def run(self, job: Job) -> Outcome:
        import docker

        image = job.image
        if image is None or not image.id:
            what = f"image {image.name!r} ({image.tag})" if image else "no image"
            raise ExecutionError(
                f"step {job.step}: {what} has no recorded image ID, it was not built: "
                f"run `recast images build {image.analysis if image else 'ANALYSIS'}`"
            )
        _check_paths(job)
        api = self._api()

        invoker = (os.getuid(), os.getgid())
        user = invoker if invoker[0] != 0 else NOBODY
        job.outdir.mkdir(parents=True, exist_ok=True)
        outdir_owner = _owner(job.outdir)
        if user != invoker:
            _chown_tree(job.outdir, user)  # a re-run may overwrite what an earlier one wrote

        mounts = [docker.types.Mount(str(p), str(p), type="bind", read_only=True) for p in job.read_only]
        mounts.append(docker.types.Mount(str(job.outdir), str(job.outdir), type="bind", read_only=False))
        host_config = api.create_host_config(
            mounts=mounts,
            network_mode="host" if job.network else "none",
            mem_limit=job.memory_bytes,
            memswap_limit=job.memory_bytes,  # no swap beyond the limit
            nano_cpus=int(job.cores * 1e9),
            pids_limit=PIDS_LIMIT,
            read_only=True,
            tmpfs={"/tmp": f"rw,nosuid,nodev,size={TMP_SIZE},mode=1777"},
            cap_drop=["ALL"],
            security_opt=["no-new-privileges"],
        )
        # Threads follow the CPU limit unless the template says otherwise; HOME must be writable.
        environment = {"OMP_NUM_THREADS": str(max(1, int(job.cores))), **job.env, "HOME": "/tmp"}
        labels = {"recast.run": job.run_id, "recast.step": job.step, "recast.image": image.name}

        details = {"image": image.id, "user": f"{user[0]}:{user[1]}"}
        container = None
        restore_sigterm = _raise_on_sigterm()
        try:
            try:
                container = api.create_container(
                    image.id, command=list(job.argv), user=details["user"],
                    working_dir=str(job.outdir), environment=environment, labels=labels,
                    host_config=host_config, stdin_open=False, tty=False,
                )["Id"]
            except docker.errors.ImageNotFound:
                raise ExecutionError(
                    f"step {job.step}: image {image.name!r} ({image.tag}, {image.id}) is not in this "
                    f"Docker engine: run `recast images build {image.analysis}`"
                ) from None
            details["container"] = container
            return self._start_and_wait(api, container, job, details)
        except docker.errors.APIError as err:
            raise ExecutionError(f"step {job.step}: the Docker engine could not run {job.argv[0]!r} in image "
                                 f"{image.name!r} ({image.tag}): {err.explanation or err}") from None
        except _Terminated:
            pass  # cleaned up below, then the signal is delivered again
        finally:
            restore_sigterm()
            if container is not None:
                try:
                    api.remove_container(container, force=True)
                except docker.errors.NotFound:
                    pass
            if user != invoker:
                _chown_back(job.outdir, invoker, outdir_owner)
        # Only SIGTERM gets here. The container is gone: let the signal do what it would have done.
        os.kill(os.getpid(), signal.SIGTERM)
        raise ExecutionError(f"step {job.step}: cancelled (SIGTERM)")

    def _start_and_wait(self, api, container: str, job: Job, details: dict) -> Outcome:
        import docker

        killed = threading.Event()

        def kill():
            try:
                api.kill(container)
                killed.set()
            except docker.errors.APIError:
                pass  # it ended by itself just now

        timer = threading.Timer(job.time_limit_s, kill)
        timer.daemon = True
        started = time.monotonic()
        api.start(container)
        timer.start()
        try:
            if job.log_path is not None:
                with open(job.log_path, "ab") as log:
                    for chunk in api.logs(container, stdout=True, stderr=True, stream=True, follow=True):
                        log.write(chunk)
            code = api.wait(container, timeout=None)["StatusCode"]
        finally:
            timer.cancel()
            timer.join()  # if it fired, its kill has finished and `killed` is final
        details["elapsed_s"] = round(time.monotonic() - started, 3)
        if killed.is_set():
            return Outcome(exit_code=KILLED_BY_TIME_LIMIT, timed_out=True, details=details)
        if code == 137 and api.inspect_container(container)["State"].get("OOMKilled"):
            details["oom_killed"] = True
            details["memory_limit_bytes"] = job.memory_bytes
        return Outcome(exit_code=code, details=details)


def _check_paths(job: Job) -> None:
    for path in [job.outdir, *job.read_only]:
        if not path.is_absolute():
            raise ExecutionError(f"step {job.step}: mount path {str(path)!r} is not absolute")
    for path in job.read_only:
        if not path.exists():
            raise ExecutionError(f"step {job.step}: input {path} does not exist")


def _owner(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_uid, st.st_gid


def _chown_tree(outdir: Path, owner: tuple[int, int]) -> None:
    # Never follows links: a job may leave a symlink to any host path in its outputs.
    for root, dirs, files in os.walk(outdir):
        for name in dirs + files:
            path = os.path.join(root, name)
            st = os.lstat(path)
            if (st.st_uid, st.st_gid) != owner:
                os.lchown(path, *owner)
    os.chown(outdir, *owner)


def _chown_back(outdir: Path, invoker: tuple[int, int], outdir_owner: tuple[int, int]) -> None:
    """Give what is in the output folder to the invoking user, and the folder back to its owner."""
    _chown_tree(outdir, invoker)
    os.chown(outdir, *outdir_owner)


def _raise_on_sigterm():
    """While a container runs, turn SIGTERM (how executors cancel jobs) into an exception.

    Python's default SIGTERM handling exits without unwinding, which would
    leave the container running; with this, ``run``'s cleanup removes it.
    Returns the function that restores the previous handler.
    """
    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def handler(signum, frame):
        raise _Terminated(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, handler)
    return lambda: signal.signal(signal.SIGTERM, previous)
