"""Execute a plan with Snakemake: the run folder, the DAG, the executor.

``run()`` is what ``recast run`` does: take the run folder's lock (before
anything in it is touched: a second run of the same folder is refused, not
interleaved), remove the containers of runs that died, prepare the folder
(request, inputs, plan), throw away outputs that changed since the job that
made them ran (so they are made again rather than trusted), let Snakemake run
whatever is out of date through the chosen executor, then write
``results.json`` and ``provenance.json``. Snakemake runs in this process
through its Python API; its own log stream is replaced by recast's progress
display. Ctrl-C or SIGTERM stops the running jobs and their containers and
keeps every finished job, so running the same command again resumes.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shutil
import signal
import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import yaml

from recast import files
from recast import plan as plan_mod
from recast import request as request_mod
from recast import resources
from recast.environments import get_environment
from recast.errors import ExecutionError, Interrupted, RecastError
from recast.executors import Configured, configure
from recast.model import Analysis
from recast.progress import RunProgress

RUN_REQUEST_FILE = "request.json"
RUN_ID_FILE = ".recast/run.json"
LOCK_FILE = ".recast/lock"


@dataclass
class RunOutcome:
    run_dir: Path
    plan: plan_mod.Plan
    status: str
    jobs_run: list[str] = field(default_factory=list)
    discarded: list[str] = field(default_factory=list)  # outputs found changed and made again
    started: str = ""
    ended: str = ""
    stale_images: dict[str, str] = field(default_factory=dict)  # run anyway (allow_stale_images), with why


def _write_if_changed(path: Path, text: str) -> None:
    if not (path.is_file() and not path.is_symlink() and path.read_text() == text):
        path.parent.mkdir(parents=True, exist_ok=True)
        files.atomic_write(path, text)


@contextlib.contextmanager
def locked(run_dir: Path):
    """Hold the run folder's lock (``.recast/lock``) for the ``with`` block, or refuse at once.

    An advisory ``flock``: the kernel releases it when the process dies, so a
    run killed outright never leaves a stale lock behind.
    """
    state = run_dir / ".recast"
    state.mkdir(parents=True, exist_ok=True)
    fd = os.open(state / "lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "another process"
            raise ExecutionError(f"{run_dir} is in use by another run (pid {holder}); nothing in it was "
                                 "changed: wait for that run, or give this one another --workdir") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        # A killed Snakemake leaves its own locks; with ours held, nobody else is running here.
        shutil.rmtree(run_dir / ".snakemake" / "locks", ignore_errors=True)
        yield
    finally:
        os.close(fd)


def run_id(analysis: Analysis, run_dir: Path) -> str:
    """The run folder's id: made when the folder is first used, kept when it is resumed."""
    path = run_dir / RUN_ID_FILE
    try:
        known = json.loads(files.read_bytes(run_dir, RUN_ID_FILE, 4096)).get("id", "")
    except (OSError, ValueError, AttributeError, RecastError):
        known = ""
    if isinstance(known, str) and known.startswith(f"{analysis.id}-"):
        return known
    new = plan_mod.new_run_id(analysis.id)
    path.parent.mkdir(parents=True, exist_ok=True)
    files.atomic_write(path, json.dumps({"id": new}))
    return new


def image_lock(analysis: Analysis) -> dict[str, dict]:
    from recast import images

    return {name: {"tag": ref.tag, "id": ref.id, **({"registry": pushed} if (pushed := images.registry_ref(analysis, name))
                                                    else {})}
            for name in analysis.images if (ref := images.resolve(analysis, name)) is not None}


def host_alternative(analysis: Analysis) -> str:
    """The hint ``(or use --environment host)``, only when every command the analysis runs is on this
    machine's PATH: an analysis whose code lives only in its images cannot run on the host."""
    commands = {template.argv[0] for template in analysis.templates.values() if template.argv}
    if commands and all(shutil.which(c) for c in commands):
        return " (or use --environment host)"
    return ""


def _require_built(analysis: Analysis, pinned: dict[str, dict]) -> None:
    missing = [name for name in analysis.images if not pinned.get(name, {}).get("id")]
    if missing:
        from recast.catalog import command

        raise RecastError(f"image(s) {', '.join(missing)} of analysis {analysis.id!r} are not built: "
                          f"run `{command(analysis, 'images build')}`{host_alternative(analysis)}")


def dry_run(analysis: Analysis, request: request_mod.Request, run_dir: Path, environment: str,
            allow_stale_images: bool = False) -> plan_mod.Plan:
    """The plan a run would execute, with the same checks, but nothing written and nothing run."""
    from recast import images

    if not analysis.runnable:
        raise RecastError(f"analysis {analysis.id!r} has no workflow to run "
                          "(a likelihood-only entry: use `recast likelihood`)")
    run_dir = run_dir.resolve()
    pinned = {}
    if get_environment(environment).uses_images:
        pinned = image_lock(analysis)
        _require_built(analysis, pinned)
        images.require_current(analysis, allow_stale_images)
    # Where stage_inputs would put each file, without copying it.
    staged = {relative: run_dir / "inputs" / relative for relative in request.files}
    parameters = request_mod.resolved_parameters(request, staged, analysis)
    return plan_mod.build(analysis, parameters, run_dir, environment, pinned, request.digest, run_id="(dry run)")


def prepare(analysis: Analysis, request: request_mod.Request, run_dir: Path, environment: str,
            runtime: dict[str, list] | None = None) -> plan_mod.Plan:
    """Write the run folder's request, inputs and plan (with the lists earlier stages left, ``runtime``);
    return the plan."""
    if not analysis.runnable:
        raise RecastError(f"analysis {analysis.id!r} has no workflow to run "
                          "(a likelihood-only entry: use `recast likelihood`)")
    run_dir = run_dir.resolve()
    uses_images = get_environment(environment).uses_images
    pinned = image_lock(analysis) if uses_images else {}
    if uses_images:
        _require_built(analysis, pinned)
    run_dir.mkdir(parents=True, exist_ok=True)
    _write_if_changed(run_dir / RUN_REQUEST_FILE, json.dumps({
        "analysis": analysis.id, "source": str(request.source) if request.source else None,
        "digest": request.digest, "parameters": request.parameters}, indent=1, sort_keys=True))
    staged = request_mod.stage_inputs(request, run_dir)
    parameters = request_mod.resolved_parameters(request, staged, analysis)
    plan = plan_mod.build(analysis, parameters, run_dir, environment, pinned, request.digest,
                          run_id=run_id(analysis, run_dir), runtime=runtime)
    plan_path = run_dir / plan_mod.PLAN_FILE
    _write_if_changed(plan_path, json.dumps(plan.to_json(), indent=1))
    _write_if_changed(run_dir / plan_mod.CONFIG_FILE, yaml.safe_dump({"plan": str(plan_path)}))
    return plan


def execute(plan: plan_mod.Plan, executor: str | Configured = "local", cores: int = 1,
            progress: RunProgress | None = None) -> list[str]:
    """Run what is out of date; return the ids of the jobs that ran. Raises ExecutionError.

    ``executor``: a name, or one configured with its settings (:func:`recast.executors.configure`).
    """
    from snakemake.api import SnakemakeApi
    from snakemake.settings.types import (ConfigSettings, DAGSettings, ExecutionSettings, OutputSettings,
                                          ResourceSettings)
    from snakemake.exceptions import LockException
    from snakemake_interface_common.exceptions import WorkflowError

    chosen = configure(executor)
    chosen.check()
    run_dir = Path(plan.run_dir)
    started = _now()
    handler = progress or RunProgress(title=plan.run_id)
    stop = _StopOnSignal()
    errors = _ErrorMessages()
    try:
        with stop, handler, _container_broker(plan, chosen, cores), \
                SnakemakeApi(OutputSettings(quiet=set(), enable_file_logging=False)) as api:
            snake_logger = api.logger_manager.logger
            for h in list(snake_logger.handlers):
                snake_logger.removeHandler(h)
            snake_logger.addHandler(handler)
            snake_logger.addHandler(stop)
            snake_logger.addHandler(errors)
            snake_logger.setLevel(logging.INFO)
            workflow = api.workflow(
                # Elsewhere than this machine, --cores bounds the jobs queued at once.
                resource_settings=ResourceSettings(
                    cores=cores, nodes=None if chosen.shares_machine else cores,
                    default_resources=chosen.default_resources() or None),
                config_settings=ConfigSettings(configfiles=[run_dir / plan_mod.CONFIG_FILE]),
                snakefile=resources.snakefile(),
                workdir=run_dir,
            )
            # A run killed outright leaves its running jobs marked incomplete: redo them.
            dag = workflow.dag(DAGSettings(force_incomplete=True))
            dag.execute_workflow(
                executor=chosen.plugin,
                execution_settings=ExecutionSettings(latency_wait=5),
                executor_settings=chosen.plugin_settings(run_dir),
                remote_execution_settings=chosen.remote_execution_settings(),
            )
    except (KeyboardInterrupt, WorkflowError) as exc:
        if stop.signum is None and isinstance(exc, WorkflowError):
            raise _failure(plan, started, exc, chosen.explain(errors.messages)) from None
        raise Interrupted(stop.signum or signal.SIGINT, len(finished_jobs(plan))) from None
    except LockException:
        raise ExecutionError(
            f"{run_dir} is in use by another run (or one was killed and left its lock): if no recast or "
            f"snakemake process is running there, remove {run_dir / '.snakemake' / 'locks'} and run again"
        ) from None
    if stop.signum is not None:  # the signal came after Snakemake's last check
        raise Interrupted(stop.signum, len(finished_jobs(plan)))
    ran = [(job, record) for job, record in records(plan) if record.get("started", "") >= started]
    for line in retried(ran, chosen.explain(errors.messages), chosen.explain_retry):
        handler.console.print(line, highlight=False, markup=False, soft_wrap=True)
    return [job.id for job, _ in ran]


def retried(ran: list[tuple[plan_mod.PlannedJob, dict]], explained: list[str],
            explain_retry=lambda record: None) -> list[str]:
    """One line per job of this run that was started again after a failure: why, and which attempt won.

    ``explained`` is the executor's account of the jobs it ended (Slurm's state
    and reason, or a requeue it did itself); a job whose own command failed is
    explained by its record.
    """
    lines = []
    for job, record in ran:
        earlier = record.get("earlier_attempts") or []
        if not earlier or record.get("exit_code") != 0:
            continue
        why = [line for line in explained if line.startswith(f"step {job.id}: ")]
        if not why and (requeued := explain_retry(record)):
            why = [requeued]
        if not why:
            error = (earlier[-1].get("error") if isinstance(earlier[-1], dict) else None) or "killed"
            why = [error if error.startswith(f"step {job.id} ") else f"step {job.id}: {error}"]
        lines.extend(f"{line}; started again (attempt {record.get('attempt')} of {job.retries + 1})"
                     for line in why)
    return lines


def _failure(plan: plan_mod.Plan, started: str, exc: Exception, explained: list[str] | None = None) -> ExecutionError:
    failed = failed_jobs(plan, since=started)
    if explained:  # the executor ended jobs (Slurm: scancel, its time limit, ...): its account comes first
        from recast.job import tail

        text = "\n".join(explained)
        if failed:
            text += f"\n--- last lines of {failed[0][0].log} ---\n{tail(failed[0][0].log)}"
        return ExecutionError(f"{text}\n(finished jobs are kept: run the same command to resume)")
    if not failed:
        return ExecutionError(f"Snakemake could not run the workflow in {plan.run_dir}: {exc}")
    job, record = failed[0]
    from recast.job import tail

    why = record.get("error") or f"step {job.id} failed with exit status {record.get('exit_code')}"
    return ExecutionError(f"{why} (stage {job.stage})\n--- last lines of {job.log} ---\n{tail(job.log)}")


class _StopOnSignal(logging.Handler):
    """While a plan runs, SIGINT and SIGTERM stop it cleanly: jobs are ended, finished ones kept.

    Ctrl-C reaches the whole process group, but SIGTERM (a batch system, a
    service stopping a worker) reaches only us, and Snakemake's local executor
    waits for running jobs before it returns: so the job processes, our
    children, are ended here, and each one's container with it.

    Snakemake's scheduler installs a SIGTERM handler of its own when it starts
    (a "graceful" stop that waits for every running job, however long). As a
    log handler, this puts ours back the next time Snakemake logs from the
    main thread, which its scheduler does as soon as it starts.
    """

    def __init__(self):
        super().__init__(level=logging.DEBUG)
        self.signum: int | None = None
        self._previous: dict[int, object] = {}

    def __enter__(self) -> _StopOnSignal:
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)

    def emit(self, record: logging.LogRecord) -> None:
        if self._previous and threading.current_thread() is threading.main_thread() \
                and signal.getsignal(signal.SIGTERM) != self._handle:
            signal.signal(signal.SIGTERM, self._handle)

    def _handle(self, signum, frame) -> None:
        first = self.signum is None
        self.signum = signum
        if first:
            _signal_descendants(signal.SIGTERM)
            raise KeyboardInterrupt


def _signal_descendants(signum: int) -> None:
    """Send ``signum`` to every process below this one (the running jobs and what they started)."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    todo, found = [os.getpid()], []
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    for pid in found:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signum)


def finished_jobs(plan: plan_mod.Plan) -> list[str]:
    """Jobs whose outputs are complete and certified by their record (kept for the next run)."""
    return [job.id for job, record in records(plan) if record.get("exit_code") == 0 and record.get("outputs")]


def discard_changed_outputs(plan: plan_mod.Plan) -> list[str]:
    """Remove the outputs of every job that no longer match the digests its record certified.

    A job's outputs are trusted only as its record left them: anything changed
    since (by hand, by another program, or left half-written by a killed job)
    is thrown away so that Snakemake makes it again, with everything
    downstream. Returns one line per job discarded.
    """
    kept = {job.id: record for job, record in records(plan)}
    discarded = []
    for job in plan.jobs:
        present = [path for path in job.outputs if os.path.lexists(path)]
        if not present:
            continue
        record = kept.get(job.id, {})
        if record.get("digest") != job.digest:
            continue  # the job itself changed: Snakemake re-runs it anyway
        expected = record.get("outputs") if record.get("exit_code") == 0 else None
        if expected:
            changed = _changed_outputs(job, expected)
            if not changed:
                continue
            why = f"{', '.join(changed)} changed since it ran"
        else:
            why = "its outputs were never certified (the job was interrupted)"
        for path in present:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)  # a link is removed, not followed
        discarded.append(f"step {job.id}: {why}; it will run again")
    return discarded


def _changed_outputs(job: plan_mod.PlannedJob, expected: dict) -> list[str]:
    changed = []
    for path in job.outputs:
        name = str(Path(path).relative_to(job.outdir))
        try:
            actual = files.sha256(job.outdir, name)
        except (OSError, RecastError):
            actual = None
        if actual != expected.get(name):
            changed.append(name)
    return changed


def _container_broker(plan: plan_mod.Plan, executor: Configured, cores: int):
    """Jobs on this machine let this process, which has the Docker SDK loaded, start their
    containers (see recast.environments.broker); elsewhere each job starts its own."""
    if not get_environment(plan.environment).uses_container_broker:
        return contextlib.nullcontext()
    if not executor.shares_machine:
        return _remove_containers_after(plan.run_id)
    from recast.environments import broker

    return broker.serve(plan.run_dir, concurrency=cores, run_id=plan.run_id)


class _ErrorMessages(logging.Handler):
    """Snakemake's error messages of a run, for the executor to explain (a Slurm job's state, say)."""

    def __init__(self):
        super().__init__(level=logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        # A job's error comes with the executor's message in `rule_msg`.
        parts = [record.getMessage(), *(getattr(record, key) for key in ("rule_msg", "msg")
                                       if isinstance(getattr(record, key, None), str))]
        self.messages.append("\n".join(dict.fromkeys(p for p in parts if p)))


@contextlib.contextmanager
def _remove_containers_after(run_id: str):
    """When a run whose jobs start their own containers ends, remove what is left of them.

    A job that its executor kills outright (Slurm's SIGKILL, KillWait after its
    SIGTERM) cannot remove its container; once the run ends none of its jobs
    runs any more. Only this machine's engine is reached: on a cluster, each
    node's leftovers are removed by their deadline (``recast gc``).
    """
    try:
        yield
    finally:
        from recast.environments.docker import reap

        with contextlib.suppress(ExecutionError):
            reap(run_id=run_id)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def records(plan: plan_mod.Plan) -> list[tuple[plan_mod.PlannedJob, dict]]:
    out = []
    for job in plan.jobs:
        try:
            out.append((job, json.loads(Path(job.record).read_text())))
        except (OSError, ValueError):
            continue
    return out


def failed_jobs(plan: plan_mod.Plan, since: str) -> list[tuple[plan_mod.PlannedJob, dict]]:
    return [(j, r) for j, r in records(plan) if r.get("started", "") >= since and r.get("exit_code") not in (0, None)]


def run(analysis: Analysis, request: request_mod.Request, run_dir: Path, environment: str = "docker",
        executor: str | Configured = "local", cores: int = 1, progress: RunProgress | None = None,
        allow_stale_images: bool = False) -> RunOutcome:
    """Run ``request``; images out of date (:func:`recast.images.stale`) are refused unless
    ``allow_stale_images``, and then recorded in provenance."""
    from recast import images, provenance, results

    started = _now()
    executor = configure(executor)  # an unknown executor or a missing setting is refused before anything runs
    stale = {}
    if get_environment(environment).uses_images:
        stale = images.require_current(analysis, allow_stale_images)
    run_dir.mkdir(parents=True, exist_ok=True)
    with locked(run_dir.resolve()):
        if get_environment(environment).uses_images:
            from recast.environments.docker import reap

            reap()  # containers left by runs that were killed outright
        plan = prepare(analysis, request, run_dir, environment)
        outcome = RunOutcome(run_dir=Path(plan.run_dir), plan=plan, status="failed", started=started,
                             stale_images=stale)
        outcome.discarded = discard_changed_outputs(plan)
        for line in outcome.discarded:
            _warn(line)
        outcome.jobs_run = execute(plan, executor, cores, progress)
        while plan.pending:  # stages that scatter over lists earlier stages left: plan them now, and run
            known = len(plan.jobs)
            plan = prepare(analysis, request, run_dir, environment, runtime_lists(analysis, plan))
            if len(plan.jobs) == known:
                raise ExecutionError(f"stages {', '.join(plan.pending)} wait for lists no stage left")
            outcome.plan = plan
            outcome.jobs_run += execute(plan, executor, cores, progress)
        outcome.status = "success"
        outcome.ended = _now()
        # Written together and only on success, so that a failed or interrupted
        # re-run never leaves results without the provenance that explains them.
        results.write(analysis, request, plan, executor.name)
        provenance.write(analysis, request, plan, executor.name, outcome)
    return outcome


MAX_RUNTIME_LIST = 100_000


def runtime_lists(analysis: Analysis, plan: plan_mod.Plan) -> dict[str, list]:
    """The lists that stages of ``plan`` left and pending stages scatter over, read from their values.json
    (which recast wrote), by scatter (``steps.STAGE.OUTPUT``)."""
    from recast import files
    from recast.spec import short

    found = {}
    for stage in analysis.stages:
        if stage.scatter_from is None or stage.scatter in found:
            continue
        producer = next((j for j in plan.jobs if j.stage == stage.scatter_from[0]), None)
        if producer is None:
            continue  # itself pending: a later round
        try:
            value = json.loads(files.read_bytes(producer.outdir, producer.values_file, 256 * 2**20))[stage.scatter_from[1]]
        except (OSError, ValueError, KeyError, RecastError) as exc:
            raise ExecutionError(f"stage {stage.name} scatters over {stage.scatter}, which {producer.id} did not "
                                 f"leave: {exc}") from None
        if not isinstance(value, list) or len(value) > MAX_RUNTIME_LIST:
            raise ExecutionError(f"stage {stage.name} scatters over {stage.scatter}: expected a list of at most "
                                 f"{MAX_RUNTIME_LIST} elements, {producer.id} left {short(value)}")
        found[stage.scatter] = value
    return found


def _warn(line: str) -> None:
    from rich.console import Console

    Console(stderr=True).print(f"[yellow]warning:[/yellow] {line}", highlight=False)
