"""The slurm executor: each job a Slurm batch job, through ``snakemake-executor-plugin-slurm``.

``recast run ID --executor slurm --slurm-partition P [--slurm-account A]``.
A template's resources become the batch job's: cores its ``--cpus-per-task``,
memory its ``--mem``, the time limit its ``-t`` (in whole minutes, rounded up:
recast's own limit inside the job stays the exact one). Each batch job runs
``python -m recast.job``, which starts the job's container itself (no broker
on a node), so the run folder and the Docker engine's images must be reachable
from every node: a shared file system, and images pulled by registry digest
(``recast images push``) on each node's engine.

Job states are read with ``squeue`` rather than ``sacct``: ``sacct`` needs
Slurm's accounting database, which many small clusters (and ours in CI) lack.
The plugin waits 10 s longer between status checks each time none of the
jobs has finished (up to 3 minutes), which suits hour-long jobs; recast's jobs
are often seconds long, so the wait is capped at ``--slurm-status-interval``
(a subclass of the plugin's executor, registered as ``recast-slurm`` through
Snakemake's plugin registry; everything else is the plugin's own).
A batch job that Slurm ends (``scancel``, its time limit, a node failure) is
reported with the state and reason Slurm gives (``scontrol show job``).
"""

from __future__ import annotations

import functools
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from recast.errors import ExecutionError

STATUS_FIRST_CHECK_S = 1  # a job's first status check; squeue is cheap
PLUGIN = "recast-slurm"
_FAILED = re.compile(r"SLURM-job '(\d+)' failed(?:[^']*)SLURM status is: '(\w+)'")
_MEANING = {
    "CANCELLED": "cancelled (scancel, or an operator)",
    "TIMEOUT": "killed at its Slurm time limit",
    "NODE_FAIL": "lost with its node",
    "OUT_OF_MEMORY": "killed for exceeding its Slurm memory",
    "PREEMPTED": "preempted",
    "BOOT_FAIL": "its node failed to boot",
    "DEADLINE": "past its deadline",
}


@dataclass(frozen=True)
class Settings:
    partition: str = field(metadata={"help": "Slurm partition the jobs are submitted to (sbatch -p)."})
    account: str | None = field(default=None, metadata={
        "help": "Slurm account charged (sbatch -A); default: none, for clusters without accounting."})
    status_interval: int = field(default=10, metadata={
        "help": "Most seconds between two status checks of the submitted jobs (squeue); default 10."})

    def __post_init__(self):
        if not isinstance(self.status_interval, int) or self.status_interval < 1:
            raise ExecutionError(f"--slurm-status-interval must be a whole number of seconds >= 1, "
                                 f"not {self.status_interval!r}")


def plugin(settings: Settings) -> str:
    """Register recast's slurm plugin with Snakemake (once per process); its name."""
    import types

    from snakemake_interface_executor_plugins.registry import ExecutorPluginRegistry

    registry = ExecutorPluginRegistry()
    if PLUGIN not in registry.plugins:
        import snakemake_executor_plugin_slurm as slurm

        module = types.ModuleType("snakemake_executor_plugin_" + PLUGIN.replace("-", "_"))
        module.common_settings = slurm.common_settings
        module.ExecutorSettings = _settings_class()
        module.Executor = _executor_class()
        registry.register_plugin(module.__name__, module)
    return PLUGIN


@functools.cache
def _settings_class():
    from snakemake_executor_plugin_slurm import ExecutorSettings

    @dataclass
    class RecastSlurmSettings(ExecutorSettings):
        max_seconds_between_status_checks: int = 10

    return RecastSlurmSettings


@functools.cache
def _executor_class():
    from snakemake_executor_plugin_slurm import Executor

    class RecastSlurmExecutor(Executor):
        """The plugin's executor, whose wait between status checks never exceeds the run's setting."""

        @property
        def next_seconds_between_status_checks(self):
            value = Executor.next_seconds_between_status_checks.fget(self)
            return min(value, self.workflow.executor_settings.max_seconds_between_status_checks)

        @next_seconds_between_status_checks.setter
        def next_seconds_between_status_checks(self, value):
            Executor.next_seconds_between_status_checks.fset(self, value)

    return RecastSlurmExecutor


def plugin_settings(settings: Settings, run_dir: Path):
    return _settings_class()(
        max_seconds_between_status_checks=settings.status_interval,
        no_account=settings.account is None,
        status_command="squeue",
        init_seconds_before_status_checks=STATUS_FIRST_CHECK_S,
        logdir=run_dir / "logs" / "slurm",  # beside the jobs' own logs; removed for jobs that succeed
        keep_successful_logs=False,
    )


def default_resources(settings: Settings) -> dict[str, Any]:
    resources = {"slurm_partition": settings.partition}
    if settings.account:
        resources["slurm_account"] = settings.account
    return resources


def check(settings: Settings) -> None:
    try:
        import snakemake_executor_plugin_slurm  # noqa: F401
    except ImportError:
        raise ExecutionError("the slurm executor needs snakemake-executor-plugin-slurm: "
                             "pip install 'recast[slurm]'") from None
    missing = [c for c in ("sbatch", "squeue", "scancel", "sinfo") if shutil.which(c) is None]
    if missing:
        raise ExecutionError(f"the slurm executor needs Slurm's commands on PATH ({', '.join(missing)} "
                             "missing): run recast on a machine that submits to the cluster "
                             "(scripts/slurm.sh makes a one-node cluster here)")
    try:
        listed = subprocess.run(["sinfo", "-h", "-o", "%R %a"], capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired:
        raise ExecutionError("the Slurm controller does not answer (sinfo took over 30 s)") from None
    if listed.returncode != 0:
        raise ExecutionError(f"the Slurm controller does not answer: {listed.stderr.strip()[:300]}")
    partitions = dict(line.split()[:2] for line in listed.stdout.splitlines() if len(line.split()) >= 2)
    if settings.partition not in partitions:
        raise ExecutionError(f"Slurm has no partition {settings.partition!r} "
                             f"(it has: {', '.join(sorted(partitions)) or 'none'}): give one with --slurm-partition")
    if partitions[settings.partition] != "up":
        raise ExecutionError(f"Slurm partition {settings.partition!r} is {partitions[settings.partition]}, not up")


def explain(messages: list[str]) -> list[str]:
    """One line per batch job that Slurm ended (not one whose command failed): the recast step, Slurm's
    job id, state and reason."""
    lines, seen = [], set()
    for message in messages:
        for slurm_id, state in _FAILED.findall(message):
            if slurm_id in seen:
                continue
            seen.add(slurm_id)
            info = job_info(slurm_id)
            step = info.get("Comment", "").removeprefix("rule_").split("_wildcards_")[0] or "?"
            reason = info.get("Reason")
            state = info.get("JobState", state)
            if state == "FAILED":
                continue  # the job's own command failed: its record and log say why, not Slurm
            line = f"step {step}: Slurm job {slurm_id} {_MEANING.get(state, state.lower())} (state {state}"
            line += f", reason {reason})" if reason and reason != "None" else ")"
            if info.get("StdOut"):
                line += f"; Slurm's log: {info['StdOut']}"
            lines.append(line)
    return lines


def explain_retry(record: dict) -> str | None:
    """A job that Slurm itself requeued (its node failed, or an operator ran ``scontrol requeue``) is
    the same batch job started again: Snakemake never saw it fail (a retry of Snakemake's is a new
    batch job), and the job's record shows two starts under one Slurm job id."""
    batch = record.get("batch") or {}
    before = (record.get("earlier_attempts") or [{}])[-1].get("batch") or {}
    if batch.get("SLURM_JOB_ID") and batch.get("SLURM_JOB_ID") == before.get("SLURM_JOB_ID"):
        return (f"step {record.get('job')}: Slurm job {batch['SLURM_JOB_ID']} was requeued by Slurm "
                "(its node failed, or an operator requeued it)")
    return None


def job_info(slurm_id: str) -> dict[str, str]:
    """``scontrol show job`` as fields (Slurm keeps a finished job there for MinJobAge seconds)."""
    try:
        shown = subprocess.run(["scontrol", "show", "job", "-o", slurm_id], capture_output=True, text=True,
                               timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return {}
    if shown.returncode != 0:
        return {}
    return dict(re.findall(r"(\w+)=(\S*)", shown.stdout))
