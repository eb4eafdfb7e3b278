"""Where jobs run: the *executor* axis, independent of the environment.

An executor is a Snakemake executor plugin plus its settings. Adding one
(e.g. Slurm through ``snakemake-executor-plugin-slurm``) is one entry here;
job templates and environments do not change, because every job is the same
``python -m recast.job PLAN JOB`` command wherever it starts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from recast.errors import RecastError


@dataclass(frozen=True)
class Executor:
    name: str
    plugin: str  # Snakemake executor plugin name
    description: str
    settings: Callable[[], Any] | None = None  # the plugin's ExecutorSettings, if it has any


EXECUTORS = {
    "local": Executor("local", "local", "jobs run as processes on this machine, up to --cores at once"),
}


def get_executor(name: str) -> Executor:
    try:
        return EXECUTORS[name]
    except KeyError:
        raise RecastError(f"unknown executor {name!r}: expected one of {', '.join(sorted(EXECUTORS))}") from None
