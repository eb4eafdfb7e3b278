"""Run one planned job: ``python -m recast.job PLAN JOB_ID``.

This is the command every Snakemake rule of a plan runs, on whichever
executor. It hands the job to its environment (docker or host), then checks
that the declared outputs are regular files in the job's folder (a job may
leave links: none is followed), reads the declared values out of them into
``values.json``, and writes the job's record (``logs/JOB.json``: times, exit
status, image, and the sha256 of every output, so that outputs changed after
the job ran are noticed and re-made). Imports stay light: this runs once per
job.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from recast import files, processes
from recast.environments import ImageRef, Job, get_environment
from recast.environments.watch import MAX_ENTRIES
from recast.errors import RecastError
from recast.limits import human_size
from recast.plan import PlannedJob, load

LOG_TAIL_LINES = 25


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def tail(path: str | Path, lines: int = LOG_TAIL_LINES, max_bytes: int = 64 * 1024) -> str:
    """The last lines of a log (only its end is read: a log may be large)."""
    try:
        with open(path, "rb") as log:
            log.seek(0, 2)
            size = log.tell()
            log.seek(max(0, size - max_bytes))
            text = log.read().decode(errors="replace")
    except FileNotFoundError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


def pointer_get(document, pointer: str):
    """RFC 6901 JSON pointer lookup."""
    value = document
    for token in pointer.split("/")[1:]:
        token = token.replace("~1", "/").replace("~0", "~")
        value = value[int(token)] if isinstance(value, list) else value[token]
    return value


MAX_VALUES_FILE_BYTES = 256 * 2**20  # a declared output read for its values is JSON of at most this size


def read_values(job_id: str, outdir: str | Path, output_values: dict[str, list[str]]) -> dict:
    """Named values of a finished job: name -> (file, JSON pointer) read into name -> value.

    The files are read without following links (a job may leave a link to any host file).
    """
    values, cache = {}, {}
    for name, (path, pointer) in output_values.items():
        try:
            if path not in cache:
                cache[path] = json.loads(files.read_bytes(outdir, path, MAX_VALUES_FILE_BYTES))
            values[name] = pointer_get(cache[path], pointer)
        except (OSError, ValueError, KeyError, IndexError, TypeError, RecursionError, RecastError) as exc:
            why = "nested too deeply" if isinstance(exc, RecursionError) else exc
            raise RecastError(f"step {job_id}: cannot read value {name!r} at {pointer} of {path}: {why}") from None
    return values


def output_digests(job: PlannedJob, globbed: list[str] = ()) -> dict[str, str]:
    """sha256 of every output the job leaves for others (declared outputs, the files its globs matched and
    values.json), by name in its folder; a folder output's is :func:`recast.files.tree_sha256`."""
    return {str(Path(path).relative_to(job.outdir)):
            files.tree_sha256(job.outdir, path) if path in job.output_directories else files.sha256(job.outdir, path)
            for path in [*job.outputs, *globbed]}


MAX_GLOB_MATCHES = 10_000


def glob_outputs(job: PlannedJob) -> dict[str, list[str]]:
    """The files each glob output matched, as absolute paths: regular files in the job's folder, reached
    through no link (a matched link, or a match through one, fails the job)."""
    found = {}
    for name, pattern in job.output_globs.items():
        matches = []
        for path in sorted(Path(job.outdir).glob(pattern)):
            if len(matches) >= MAX_GLOB_MATCHES:
                raise RecastError(f"step {job.id}: glob output {name!r} ({pattern}) matched more than "
                                  f"{MAX_GLOB_MATCHES} files")
            try:
                files.check_regular(job.outdir, path)
            except (files.UnsafePath, FileNotFoundError):
                if path.is_dir() and not path.is_symlink():
                    continue  # a folder that matches is not a file of the list
                raise RecastError(f"step {job.id}: glob output {name!r} matched {path.relative_to(job.outdir)}, "
                                  "a link or not a regular file; recast never follows a link out of a job's folder")
            matches.append(str(path))
        found[name] = matches
    return found


def check_outputs(job: PlannedJob) -> None:
    check_declared(job.id, Path(job.outdir), job.output_files, set(job.output_directories))


def check_declared(step: str, outdir: Path, output_files: dict[str, str], directories: set[str]) -> None:
    """Every declared output is in the job's folder, reached through no link: a regular file, or a folder
    (by its path in ``directories``) holding only folders and regular files."""
    missing, unsafe = [], []
    for name, path in output_files.items():
        try:
            if str(path) in directories:
                files.tree(outdir, path, MAX_ENTRIES)
            else:
                files.check_regular(outdir, path)
        except FileNotFoundError:
            missing.append(name)
        except files.UnsafePath:
            unsafe.append(f"{name} ({Path(path).relative_to(outdir)})")
    if unsafe:
        raise RecastError(f"step {step} left declared output(s) that are links, hold links, or are not regular "
                          f"files or folders: {', '.join(unsafe)}; recast never follows a link out of a job's folder")
    if missing:
        raise RecastError(f"step {step} did not produce its declared output(s): {', '.join(missing)}")


def rendered_argv(job: PlannedJob) -> tuple[list[str], list[str]]:
    """The command of a job that takes other jobs' output values, with those values (from their values.json,
    which recast wrote, read without following links), and the files among them to mount read-only."""
    def value(spec: list) -> Any:
        path, name = spec
        try:
            return json.loads(files.read_bytes(Path(path).parent, path, MAX_VALUES_FILE_BYTES))[name]
        except (OSError, ValueError, KeyError, TypeError, RecastError) as exc:
            raise RecastError(f"step {job.id}: cannot read value {name!r} from {path}: {exc}") from None

    values, mounted = dict(job.values or {}), []
    for parameter, spec in job.deferred.items():
        values[parameter] = value(spec[:2]) if isinstance(spec[0], str) else [value(s[:2]) for s in spec]
        if isinstance(spec[0], str) and spec[2:] == ["files"]:
            # the files another job's glob matched: its own files, mounted read-only into this one
            producer = Path(spec[0]).parent
            for path in values[parameter]:
                if not isinstance(path, str) or not Path(path).is_relative_to(producer):
                    raise RecastError(f"step {job.id}: {path!r} is not a file of {producer}")
                mounted.append(path)
    try:
        return processes.argv(job.process, values), mounted
    except ValueError as exc:
        raise RecastError(f"step {job.id}: {exc}") from None


def provide(env_job: Job, host_resources: list[str], credentials: list[str]) -> Job:
    """The job with what this machine provides for its declared needs (RecastError naming what is missing)."""
    if not host_resources and not credentials:
        return env_job
    from recast import host_resources as provision

    resources, secrets = provision.resolve(env_job.step, host_resources, credentials)
    return replace(env_job, host_mounts=[[r.path, r.mount] for r in resources],
                   credentials=[[c.name, c.file, c.env] for c in secrets])


def write_record(job: PlannedJob, record: dict) -> None:
    path = Path(job.record)
    path.parent.mkdir(parents=True, exist_ok=True)
    files.atomic_write(path, json.dumps(record, indent=1))


def earlier_attempts(job: PlannedJob) -> list[dict]:
    """How this job's earlier starts ended, when it is started again after a failure (oldest first).

    A retry (the template's ``retries``) or a resumed run after a kill or a
    node failure starts the same job (same digest) again; Snakemake clears its
    log first, so its record keeps why each earlier start ended. Empty for a
    first start, or after a success or a change of the job.
    """
    try:
        previous = json.loads(files.read_bytes(Path(job.record).parent, job.record, 2**20))
    except (OSError, ValueError, RecastError):
        return []
    if not isinstance(previous, dict) or previous.get("digest") != job.digest or previous.get("exit_code") == 0:
        return []
    history = previous.get("earlier_attempts")
    history = [h for h in history if isinstance(h, dict)] if isinstance(history, list) else []
    last = {key: previous.get(key) for key in ("started", "ended", "exit_code", "timed_out", "error", "batch")}
    return (history + [last])[-MAX_ATTEMPTS_KEPT:]


MAX_ATTEMPTS_KEPT = 20
BATCH_VARIABLES = ("SLURM_JOB_ID", "SLURM_RESTART_COUNT")


def run(plan_path: str, job_id: str) -> int:
    """What each Snakemake rule runs: one job of the plan at ``plan_path``. Exit status 0 or 1."""
    plan = load(plan_path)
    job = plan.job(job_id)
    try:
        execute(job, run_id=plan.run_id, analysis_id=plan.analysis["id"], environment_name=plan.environment,
                run_dir=plan.run_dir)
        return 0
    except RecastError as exc:
        # One line: `recast run` shows the log's tail itself, and Snakemake names the log file.
        print(f"recast: {exc} (log: {job.log})", file=sys.stderr)
        return 1


def execute(job: PlannedJob, *, run_id: str, analysis_id: str, environment_name: str,
            run_dir: str | None = None) -> dict[str, Any]:
    """The one way a job runs (a plan's job under Snakemake, a step under ``recast test --step``): in its
    environment, through the run's container broker when ``run_dir``'s answers; then its declared outputs are
    checked, its values read into values.json, and its record written (also when it fails). Returns the
    values; raises RecastError when the job failed."""
    Path(job.outdir).mkdir(parents=True, exist_ok=True)
    Path(job.log).parent.mkdir(parents=True, exist_ok=True)
    environment = get_environment(environment_name)
    record = {"job": job.id, "run": run_id, "stage": job.stage, "branch": job.branch,
              "attempt": 1, "earlier_attempts": earlier_attempts(job),
              "host_resources": job.host_resources, "credentials": job.credentials,  # names only
              "environment": environment_name, "digest": job.digest, "argv": job.argv, "started": now(),
              "ended": None, "exit_code": None, "timed_out": False,
              "image": job.image if environment.uses_images else None}
    record["attempt"] += len(record["earlier_attempts"])
    # The batch system's job, when an executor's scheduler started this one (Slurm's id and requeue count).
    record["batch"] = {k: os.environ[k] for k in BATCH_VARIABLES if k in os.environ} or None
    write_record(job, record)
    env_job = Job(
        run_id=run_id, step=job.id, argv=job.argv, outdir=Path(job.outdir),
        read_only=[Path(p) for p in job.inputs],
        image=ImageRef(job.image["name"], job.image["tag"], job.image["id"], analysis_id, job.image.get("registry")),
        env=job.env, cores=job.cores, memory_bytes=job.memory_bytes,
        time_limit_s=job.time_limit_s, network=job.network, log_path=Path(job.log),
        output_bytes=job.output_bytes, workdir=job.workdir,
    )
    try:
        if job.deferred:  # values of other jobs, read now that they have run
            argv, mounted = rendered_argv(job)
            env_job = replace(env_job, argv=argv, read_only=[*env_job.read_only, *map(Path, mounted)])
            record["argv"] = env_job.argv
        env_job = provide(env_job, job.host_resources, job.credentials)
        outcome = None
        if environment.uses_container_broker and run_dir is not None:
            from recast.environments import broker

            outcome = broker.request(run_dir, env_job)  # None: no broker, run it here
            record["container_broker"] = outcome is not None
        if outcome is None:
            outcome = environment.run(env_job)
        record.update(exit_code=outcome.exit_code, timed_out=outcome.timed_out, details=outcome.details)
        if outcome.output_exceeded:
            if outcome.details.get("output_exceeded") == "entries":
                raise RecastError(f"step {job.id} left more than {MAX_ENTRIES} files and folders in its "
                                  "output folder and was stopped")
            raise RecastError(f"step {job.id} wrote more than its output limit of {human_size(job.output_bytes)} "
                              f"(resources.output of template {job.template!r}) and was stopped")
        if outcome.timed_out:
            raise RecastError(f"step {job.id} exceeded its time limit of {job.time_limit_s:g} s and was stopped")
        if outcome.exit_code != 0:
            raise RecastError(f"step {job.id} failed with exit status {outcome.exit_code}")
        check_outputs(job)
        values = read_values(job.id, job.outdir, job.output_values)
        matched = glob_outputs(job)
        values.update(matched)
        # Replaces whatever the job left under that name (a link is replaced, never written through).
        files.atomic_write(job.values_file, json.dumps(values, indent=1, sort_keys=True))
        record["outputs"] = output_digests(job, [p for paths in matched.values() for p in paths])
        return values
    except RecastError as exc:
        record["error"] = str(exc)
        if record["exit_code"] in (None, 0):
            record["exit_code"] = 1
        raise
    finally:
        record["ended"] = now()
        write_record(job, record)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: python -m recast.job PLAN JOB_ID")
    try:
        sys.exit(run(sys.argv[1], sys.argv[2]))
    except KeyboardInterrupt:  # Ctrl-C reaches every job of the run: `recast run` says what happened
        sys.exit(130)
