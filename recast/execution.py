"""Execute a plan with Snakemake: the run folder, the DAG, the executor.

``run()`` is what ``recast run`` does: prepare the run folder (request,
inputs, plan), let Snakemake run whatever is out of date through the chosen
executor, then write ``results.json`` and ``provenance.json``. Snakemake runs
in this process through its Python API; its own log stream is replaced by
recast's progress display.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import yaml

from recast import plan as plan_mod
from recast import request as request_mod
from recast import resources
from recast.errors import ExecutionError, RecastError
from recast.executors import get_executor
from recast.model import Analysis
from recast.progress import RunProgress

RUN_REQUEST_FILE = "request.json"


@dataclass
class RunOutcome:
    run_dir: Path
    plan: plan_mod.Plan
    status: str
    jobs_run: list[str] = field(default_factory=list)
    started: str = ""
    ended: str = ""


def _write_if_changed(path: Path, text: str) -> None:
    if not (path.is_file() and path.read_text() == text):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def image_lock(analysis: Analysis) -> dict[str, dict]:
    from recast import images

    return {name: {"tag": ref.tag, "id": ref.id} for name in analysis.images
            if (ref := images.resolve(analysis, name)) is not None}


def prepare(analysis: Analysis, request: request_mod.Request, run_dir: Path, environment: str) -> plan_mod.Plan:
    """Write the run folder's request, inputs and plan; return the plan."""
    if not analysis.runnable:
        raise RecastError(f"analysis {analysis.id!r} has no workflow to run "
                          "(a likelihood-only entry: use `recast likelihood`)")
    run_dir = run_dir.resolve()
    locked = image_lock(analysis) if environment == "docker" else {}
    if environment == "docker":
        missing = [name for name in analysis.images if not locked.get(name, {}).get("id")]
        if missing:
            raise RecastError(f"image(s) {', '.join(missing)} of analysis {analysis.id!r} are not built: "
                              f"run `recast images build {analysis.id}` (or use --environment host)")
    run_dir.mkdir(parents=True, exist_ok=True)
    _write_if_changed(run_dir / RUN_REQUEST_FILE, json.dumps({
        "analysis": analysis.id, "source": str(request.source) if request.source else None,
        "digest": request.digest, "parameters": request.parameters}, indent=1, sort_keys=True))
    staged = request_mod.stage_inputs(request, run_dir)
    parameters = request_mod.resolved_parameters(request, staged, analysis)
    plan = plan_mod.build(analysis, parameters, run_dir, environment, locked, request.digest)
    plan_path = run_dir / plan_mod.PLAN_FILE
    _write_if_changed(plan_path, json.dumps(plan.to_json(), indent=1))
    _write_if_changed(run_dir / plan_mod.CONFIG_FILE, yaml.safe_dump({"plan": str(plan_path)}))
    return plan


def execute(plan: plan_mod.Plan, executor: str = "local", cores: int = 1, progress: RunProgress | None = None) -> list[str]:
    """Run what is out of date; return the ids of the jobs that ran. Raises ExecutionError."""
    from snakemake.api import SnakemakeApi
    from snakemake.settings.types import (ConfigSettings, DAGSettings, ExecutionSettings, OutputSettings,
                                          ResourceSettings)
    from snakemake.exceptions import LockException
    from snakemake_interface_common.exceptions import WorkflowError

    chosen = get_executor(executor)
    run_dir = Path(plan.run_dir)
    started = _now()
    handler = progress or RunProgress(title=plan.run_id)
    try:
        with handler, _container_broker(plan, chosen.name, cores), \
                SnakemakeApi(OutputSettings(quiet=set(), enable_file_logging=False)) as api:
            snake_logger = api.logger_manager.logger
            for h in list(snake_logger.handlers):
                snake_logger.removeHandler(h)
            snake_logger.addHandler(handler)
            snake_logger.setLevel(logging.INFO)
            workflow = api.workflow(
                resource_settings=ResourceSettings(cores=cores),
                config_settings=ConfigSettings(configfiles=[run_dir / plan_mod.CONFIG_FILE]),
                snakefile=resources.snakefile(),
                workdir=run_dir,
            )
            # A run killed outright leaves its running jobs marked incomplete: redo them.
            dag = workflow.dag(DAGSettings(force_incomplete=True))
            dag.execute_workflow(
                executor=chosen.plugin,
                execution_settings=ExecutionSettings(latency_wait=5),
                executor_settings=chosen.settings() if chosen.settings else None,
            )
    except LockException:
        raise ExecutionError(
            f"{run_dir} is in use by another run (or one was killed and left its lock): if no recast or "
            f"snakemake process is running there, remove {run_dir / '.snakemake' / 'locks'} and run again"
        ) from None
    except WorkflowError as exc:
        failed = failed_jobs(plan, since=started)
        if not failed:
            raise ExecutionError(f"Snakemake could not run the workflow in {run_dir}: {exc}") from None
        job, record = failed[0]
        from recast.job import tail

        why = record.get("error") or f"step {job.id} failed with exit status {record.get('exit_code')}"
        raise ExecutionError(f"{why} (stage {job.stage})\n--- last lines of {job.log} ---\n{tail(job.log)}") from None
    return [job.id for job, record in records(plan) if record.get("started", "") >= started]


def _container_broker(plan: plan_mod.Plan, executor: str, cores: int):
    """Jobs on this machine let this process, which has the Docker SDK loaded, start their
    containers (see recast.environments.broker); elsewhere each job starts its own."""
    import contextlib

    if plan.environment != "docker" or executor != "local":
        return contextlib.nullcontext()
    from recast.environments import broker

    return broker.serve(plan.run_dir, concurrency=cores)


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
        executor: str = "local", cores: int = 1, progress: RunProgress | None = None) -> RunOutcome:
    from recast import provenance, results

    started = _now()
    plan = prepare(analysis, request, run_dir, environment)
    outcome = RunOutcome(run_dir=Path(plan.run_dir), plan=plan, status="failed", started=started)
    outcome.jobs_run = execute(plan, executor, cores, progress)
    outcome.status = "success"
    outcome.ended = _now()
    # Written together and only on success, so that a failed or interrupted
    # re-run never leaves results without the provenance that explains them.
    results.write(analysis, request, plan, executor)
    provenance.write(analysis, request, plan, executor, outcome)
    return outcome
