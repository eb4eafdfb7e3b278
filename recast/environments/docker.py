"""The docker environment: each job in its template's pinned image, isolated.

Per job, one container of the image *ID* recorded by ``recast images build``
(never a tag, which can move), with:

- the command as an argument list (no shell anywhere);
- inputs bind-mounted read-only and the job's output folder read-write, each
  at its own absolute host path, so one ``argv`` serves host and container;
- a read-only root file system and a private ``/tmp`` (``HOME=/tmp``): the
  output folder is the only place a job leaves anything;
- no network unless the template declares it, and then the isolated job
  network (:data:`JOB_NETWORK`, made by ``containers/job-network.sh``), never
  the host's: it reaches the outside but not this machine's loopback or
  services, nor other jobs;
- no capabilities, no privilege escalation, and a non-root user: the
  invoking uid:gid, or ``nobody`` when recast runs as root (outputs are then
  chowned back, so they always end up owned by the invoking user);
- memory, CPU, PID, time and output-size limits from the template; the log
  is capped too (here and in the engine's own log store);
- only inputs that are regular files reached through no link are mounted;
- labels ``recast.run``, ``recast.step``, ``recast.image``, so the containers
  of a run can be found with ``docker ps --filter label=recast.run=RUN``, and
  ``recast.owner`` / ``recast.deadline``, so that :func:`reap` removes the
  containers of a process that died (``kill -9``) or that outlived their
  time limit.

The container is removed once its exit code and log are collected.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import stat
import tempfile
import threading
import time
from pathlib import Path

from recast import files
from recast.environments import Job, Outcome
from recast.environments.watch import OutputWatch
from recast.errors import ExecutionError
from recast.host_resources import CREDENTIALS_MOUNT

NOBODY = (65534, 65534)
PIDS_LIMIT = 512
TMP_SIZE = "512m"
MAX_CREDENTIAL_BYTES = 1 << 20  # a proxy or a keytab is kilobytes
KILLED_BY_TIME_LIMIT = -9  # what the host environment reports, for the same job
JOB_NETWORK = "recast-jobs"  # made by containers/job-network.sh; labelled recast.isolated=true
MAX_LOG_BYTES = 64 * 2**20  # of a job's output kept in its log (and in the engine's log store)
REAP_GRACE_S = 60  # a container this long past its time limit is removed, whoever owns it
_IMAGE_ID = re.compile(r"sha256:[0-9a-f]{64}")


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
    uses_images = True
    uses_container_broker = True

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
        if not _IMAGE_ID.fullmatch(image.id):
            # A tag (or a short ID) can be moved to another image: only the full ID pins it.
            raise ExecutionError(f"step {job.step}: image {image.name!r} is pinned as {image.id[:80]!r}, which is "
                                 f"not an image ID (sha256:...): run `recast images build {image.analysis}`")
        _check_paths(job)
        api = self._api()
        network = _network_mode(api, job)

        invoker = (os.getuid(), os.getgid())
        user = invoker if invoker[0] != 0 else NOBODY
        job.outdir.mkdir(parents=True, exist_ok=True)
        if user != invoker:
            _chown_tree(job.outdir, user)  # a re-run may overwrite what an earlier one wrote

        mounts = [docker.types.Mount(str(p), str(p), type="bind", read_only=True) for p in job.read_only]
        mounts.append(docker.types.Mount(str(job.outdir), str(job.outdir), type="bind", read_only=False))
        for host, inside in job.host_mounts:  # the operator's folders (CVMFS ...), never writable
            if not os.path.isdir(host):
                raise ExecutionError(f"step {job.step}: the host resource folder {host} does not exist on this machine")
            mounts.append(docker.types.Mount(inside, host, type="bind", read_only=True))
        secrets = _credentials_folder(job, user)
        provided = {}
        for name, _, variable in job.credentials:
            mounts.append(docker.types.Mount(f"{CREDENTIALS_MOUNT}/{name}", str(secrets / name), type="bind",
                                             read_only=True))
            provided[variable] = f"{CREDENTIALS_MOUNT}/{name}"
        host_config = api.create_host_config(
            mounts=mounts,
            network_mode=network,
            mem_limit=job.memory_bytes,
            memswap_limit=job.memory_bytes,  # no swap beyond the limit
            nano_cpus=int(job.cores * 1e9),
            pids_limit=PIDS_LIMIT,
            read_only=True,
            tmpfs={"/tmp": f"rw,nosuid,nodev,size={TMP_SIZE},mode=1777"},
            cap_drop=["ALL"],
            security_opt=["no-new-privileges"],
            # The engine keeps its own copy of a container's output: bound it as ours is.
            log_config=docker.types.LogConfig(type="json-file",
                                              config={"max-size": str(MAX_LOG_BYTES), "max-file": "1"}),
        )
        # Threads follow the CPU limit unless the template says otherwise; HOME must be writable.
        environment = {"OMP_NUM_THREADS": str(max(1, int(job.cores))), **job.env, "HOME": "/tmp", **provided}
        labels = {"recast.run": job.run_id, "recast.step": job.step, "recast.image": image.name,
                  "recast.owner": process_identity(),
                  "recast.deadline": str(int(time.time() + job.time_limit_s + REAP_GRACE_S))}

        details = {"image": image.id, "user": f"{user[0]}:{user[1]}", "network": network}
        container = None
        restore_sigterm = _raise_on_sigterm()
        try:
            create = lambda: api.create_container(  # noqa: E731
                image.id, command=list(job.argv), user=details["user"],
                working_dir=job.workdir or str(job.outdir), environment=environment, labels=labels,
                host_config=host_config, stdin_open=False, tty=False,
            )["Id"]
            try:
                container = create()
            except docker.errors.ImageNotFound:
                if not image.registry:
                    raise ExecutionError(
                        f"step {job.step}: image {image.name!r} ({image.tag}, {image.id}) is not in this "
                        f"Docker engine: run `recast images build {image.analysis}`, or push it once with "
                        f"`recast images push {image.analysis} --registry HOST/PREFIX` for other machines to pull"
                    ) from None
                _pull(api, job, image)
                container = create()
            details["container"] = container
            return self._start_and_wait(api, container, job, details)
        except docker.errors.APIError as err:
            raise ExecutionError(f"step {job.step}: the Docker engine could not run {job.argv[0]!r} in image "
                                 f"{image.name!r} ({image.tag}): {err.explanation or err}") from None
        except _Terminated:
            pass  # cleaned up below, then the signal is delivered again
        finally:
            restore_sigterm()
            if secrets is not None:
                shutil.rmtree(secrets, ignore_errors=True)
            if container is not None:
                try:
                    api.remove_container(container, force=True)
                except docker.errors.APIError:
                    pass  # gone already, or being removed by the run that is stopping
            if user != invoker:
                # Everything, the folder included, goes to the invoking user (never back to
                # `nobody`, which is what a folder left by a killed run would say it had).
                _chown_tree(job.outdir, invoker)
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

        def kill_for_size():
            try:
                api.kill(container)
            except docker.errors.APIError:
                pass

        timer = threading.Timer(job.time_limit_s, kill)
        timer.daemon = True
        started = time.monotonic()
        api.start(container)
        timer.start()
        try:
            with OutputWatch(job.outdir, job.output_bytes, kill_for_size) as watch:
                if job.log_path is not None:
                    _copy_log(api.logs(container, stdout=True, stderr=True, stream=True, follow=True),
                              job.log_path, min(MAX_LOG_BYTES, job.output_bytes))
                code = api.wait(container, timeout=None)["StatusCode"]
        finally:
            timer.cancel()
            timer.join()  # if it fired, its kill has finished and `killed` is final
        details["elapsed_s"] = round(time.monotonic() - started, 3)
        if watch.exceeded.is_set():
            details["output_limit_bytes"] = job.output_bytes
            details["output_exceeded"] = watch.reason
            return Outcome(exit_code=code or -9, details=details, output_exceeded=True)
        if killed.is_set():
            return Outcome(exit_code=KILLED_BY_TIME_LIMIT, timed_out=True, details=details)
        if code == 137 and api.inspect_container(container)["State"].get("OOMKilled"):
            details["oom_killed"] = True
            details["memory_limit_bytes"] = job.memory_bytes
        return Outcome(exit_code=code, details=details)


def _pull(api, job: Job, image) -> None:
    """The pinned image from its registry, by digest, and only if it is the pinned ID (recast.images.pull_pinned)."""
    from recast.errors import RecastError
    from recast.images import pull_pinned

    try:
        pull_pinned(api, image.id, image.registry)
    except RecastError as err:
        raise ExecutionError(f"step {job.step}: image {image.name!r} ({image.id[:19]}) is not in this Docker "
                             f"engine, and {err}") from None


def _copy_log(chunks, log_path: Path, limit: int) -> None:
    """Append a container's output to its log, up to ``limit`` bytes; the rest is drained, not kept."""
    written = 0
    with open(log_path, "ab") as log:
        for chunk in chunks:
            if written < limit:
                kept = chunk[: limit - written]
                log.write(kept)
                written += len(kept)
                if written >= limit:
                    log.write(f"\n[recast: log truncated at {limit} bytes]\n".encode())
                    log.flush()


def _network_mode(api, job: Job) -> str:
    """``none``, or the isolated job network for a template that declares ``network: true``."""
    import docker

    if not job.network:
        return "none"
    try:
        network = api.inspect_network(JOB_NETWORK)
    except docker.errors.NotFound:
        network = None
    if network is None or (network.get("Labels") or {}).get("recast.isolated") != "true":
        raise ExecutionError(
            f"step {job.step}: its template declares network: true, but the isolated job network "
            f"{JOB_NETWORK!r} is not set up in this Docker engine: run containers/job-network.sh as root "
            "(jobs never get the host's network)")
    return JOB_NETWORK


def process_identity(pid: int | None = None) -> str:
    """``BOOT:PID:START``: names a process such that a later process with the same pid is told apart."""
    pid = os.getpid() if pid is None else pid
    return f"{_boot_id()}:{pid}:{_start_time(pid)}"


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()[:8]
    except OSError:
        return "-"


def _start_time(pid: int) -> str:
    """The process's start time in clock ticks since boot ("-" when it is gone, or a zombie)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return "-"
    return "-" if fields[0] in ("Z", "X") else fields[19]  # state is field 3, start time field 22


def _owner_alive(identity: str) -> bool:
    """Whether the process that started a container may still be running.

    A container started from another machine (an engine shared through
    DOCKER_HOST), or before this machine rebooted, has an owner we cannot see:
    it counts as alive, and only its deadline can retire it.
    """
    boot, _, rest = identity.partition(":")
    pid, _, start = rest.partition(":")
    if boot != _boot_id() or not pid.isdigit():
        return True
    return _start_time(int(pid)) == start


def reap(api=None, run_id: str | None = None) -> list[dict]:
    """Remove recast's containers whose owning process is gone or that are past their deadline.

    With ``run_id``, remove every container of that run instead (its owner is ending it).
    Returns what was removed: container id, run, step, and why.
    """
    import docker

    api = api or DockerEnvironment()._api()
    wanted = f"recast.run={run_id}" if run_id else "recast.run"
    removed = []
    try:
        containers = api.containers(all=True, filters={"label": wanted})
    except docker.errors.APIError:
        return removed
    now = time.time()
    for container in containers:
        labels = container.get("Labels") or {}
        if run_id is not None:
            why = "its run ended"
        elif not _owner_alive(labels.get("recast.owner", "")):
            why = "the process that started it is gone"
        elif now > float(labels.get("recast.deadline", "inf")):
            why = "it outlived its time limit"
        else:
            continue
        try:
            api.remove_container(container["Id"], force=True)
        except docker.errors.APIError:
            continue  # being removed by its owner just now
        removed.append({"container": container["Id"][:12], "run": labels.get("recast.run"),
                        "step": labels.get("recast.step"), "why": why})
    return removed


def _check_paths(job: Job) -> None:
    """Every mount is an absolute path, and every input a regular file or folder reached through no link.

    Docker resolves links in a bind mount's source: an input that is a link (say, a
    previous job's output pointing at a host file) would mount whatever it points to.
    """
    for path in [job.outdir, *job.read_only]:
        if not path.is_absolute():
            raise ExecutionError(f"step {job.step}: mount path {str(path)!r} is not absolute")
    for path in job.read_only:
        try:
            files.check_mountable("/", path)
        except FileNotFoundError:
            raise ExecutionError(f"step {job.step}: input {path} does not exist") from None
        except files.UnsafePath:
            raise ExecutionError(f"step {job.step}: input {path} is a link, or not a regular file or folder, "
                                 "or lies under a link; only those are mounted into a job") from None


def _credentials_folder(job: Job, user: tuple[int, int]) -> Path | None:
    """A private copy of the job's credentials, readable by the job's user alone, for this run of it only."""
    if not job.credentials:
        return None
    folder = Path(tempfile.mkdtemp(prefix="recast-credentials-"))
    try:
        for name, source, _ in job.credentials:
            try:
                with open(source, "rb") as handle:
                    if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
                        raise OSError("not a regular file")
                    data = handle.read(MAX_CREDENTIAL_BYTES + 1)
            except OSError as exc:
                raise ExecutionError(f"step {job.step}: credential {name!r} cannot be read on this machine "
                                     f"({exc.strerror or exc})") from None
            if len(data) > MAX_CREDENTIAL_BYTES:
                raise ExecutionError(f"step {job.step}: credential {name!r} is larger than {MAX_CREDENTIAL_BYTES} bytes")
            target = folder / name
            with open(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o400), "wb") as out:
                out.write(data)
            if os.getuid() == 0:  # the job runs as `nobody` then: the copy is its alone
                os.chown(target, *user)
        if os.getuid() == 0:
            os.chown(folder, *user)
        return folder
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise


def _chown_tree(outdir: Path, owner: tuple[int, int]) -> None:
    # Never follows links: a job may leave a symlink to any host path in its outputs.
    for root, dirs, names in os.walk(outdir):
        for name in dirs + names:
            path = os.path.join(root, name)
            st = os.lstat(path)
            if (st.st_uid, st.st_gid) != owner:
                os.lchown(path, *owner)
    os.chown(outdir, *owner)


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
