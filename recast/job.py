"""Run one planned job: ``python -m recast.job PLAN JOB_ID``.

This is the command every Snakemake rule of a plan runs, on whichever
executor. It hands the job to its environment (docker or host), then checks
that the declared outputs exist, reads the declared values out of them into
``values.json``, and writes the job's record (``logs/JOB.json``: times, exit
status, image) that progress display and provenance read. Imports stay light:
this runs once per job.
"""

from __future__ import annotations

import json
import sys
from datetime import datetime, timezone
from pathlib import Path

from recast.environments import ImageRef, Job, get_environment
from recast.errors import RecastError
from recast.plan import PlannedJob, load

LOG_TAIL_LINES = 25


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def tail(path: str | Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"


def pointer_get(document, pointer: str):
    """RFC 6901 JSON pointer lookup."""
    value = document
    for token in pointer.split("/")[1:]:
        token = token.replace("~1", "/").replace("~0", "~")
        value = value[int(token)] if isinstance(value, list) else value[token]
    return value


def read_values(job_id: str, output_values: dict[str, list[str]]) -> dict:
    """Named values of a finished job: name -> (file, JSON pointer) read into name -> value."""
    values, cache = {}, {}
    for name, (path, pointer) in output_values.items():
        try:
            if path not in cache:
                cache[path] = json.loads(Path(path).read_text())
            values[name] = pointer_get(cache[path], pointer)
        except (OSError, ValueError, KeyError, IndexError, TypeError) as exc:
            raise RecastError(f"step {job_id}: cannot read value {name!r} at {pointer} of {path}: {exc}") from None
    return values


def write_record(job: PlannedJob, record: dict) -> None:
    path = Path(job.record)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(record, indent=1))
    tmp.replace(path)


def run(plan_path: str, job_id: str) -> int:
    plan = load(plan_path)
    job = plan.job(job_id)
    Path(job.outdir).mkdir(parents=True, exist_ok=True)
    Path(job.log).parent.mkdir(parents=True, exist_ok=True)
    record = {"job": job.id, "stage": job.stage, "branch": job.branch, "environment": plan.environment,
              "digest": job.digest, "argv": job.argv, "started": now(), "ended": None,
              "exit_code": None, "timed_out": False,
              "image": job.image if plan.environment == "docker" else None}
    write_record(job, record)
    env_job = Job(
        run_id=plan.run_id, step=job.id, argv=job.argv, outdir=Path(job.outdir),
        read_only=[Path(p) for p in job.inputs],
        image=ImageRef(job.image["name"], job.image["tag"], job.image["id"], plan.analysis["id"]),
        env=job.env, cores=job.cores, memory_bytes=job.memory_bytes,
        time_limit_s=job.time_limit_s, network=job.network, log_path=Path(job.log),
    )
    try:
        outcome = None
        if plan.environment == "docker":
            from recast.environments import broker

            outcome = broker.request(plan.run_dir, env_job)  # None: no broker, run it here
            record["container_broker"] = outcome is not None
        if outcome is None:
            outcome = get_environment(plan.environment).run(env_job)
        record.update(exit_code=outcome.exit_code, timed_out=outcome.timed_out, details=outcome.details)
        if outcome.timed_out:
            raise RecastError(f"step {job.id} exceeded its time limit of {job.time_limit_s:g} s and was stopped")
        if outcome.exit_code != 0:
            raise RecastError(f"step {job.id} failed with exit status {outcome.exit_code}")
        missing = [name for name, path in job.output_files.items() if not Path(path).is_file()]
        if missing:
            raise RecastError(f"step {job.id} did not produce its declared output(s): {', '.join(missing)}")
        Path(job.values_file).write_text(json.dumps(read_values(job.id, job.output_values), indent=1, sort_keys=True))
        return 0
    except RecastError as exc:
        record["error"] = str(exc)
        if record["exit_code"] in (None, 0):
            record["exit_code"] = 1
        # One line: `recast run` shows the log's tail itself, and Snakemake names the log file.
        print(f"recast: {exc} (log: {job.log})", file=sys.stderr)
        return 1
    finally:
        record["ended"] = now()
        write_record(job, record)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: python -m recast.job PLAN JOB_ID")
    sys.exit(run(sys.argv[1], sys.argv[2]))
