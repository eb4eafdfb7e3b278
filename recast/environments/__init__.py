"""How a job runs: the *environment* axis, independent of the executor.

The executor (local, Slurm, ...) decides *where* a job's process starts; that
process is ``python -m recast.job`` and hands the job to an environment, which
decides *how* the command runs: in its template's Docker image, or on the host.
A new environment is one module with a class implementing :class:`Environment`
and one line in :data:`ENVIRONMENTS`; nothing else changes.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol


@dataclass(frozen=True)
class ImageRef:
    """A preserved image: its spec name, the tag it was built as, and its pinned ID."""

    name: str
    tag: str
    id: str | None  # sha256:... recorded by `recast images build`; None if not built
    analysis: str = "ANALYSIS"  # the catalog entry it belongs to, for messages that say what to run
    registry: str | None = None  # REPOSITORY@sha256:DIGEST (`recast images push`): pulled when the engine lacks `id`


@dataclass(frozen=True)
class Job:
    """Everything an environment needs to run one step; all paths are absolute host paths.

    The command is an argument list: it never passes through a shell.
    Paths appear identically inside a container and on the host, so one
    ``argv`` serves every environment.
    """

    run_id: str
    step: str
    argv: list[str]
    outdir: Path  # the only writable place
    read_only: list[Path]  # inputs: files or folders, mounted read-only
    image: ImageRef | None = None
    env: dict[str, str] = field(default_factory=dict)
    cores: float = 1.0
    memory_bytes: int = 2 * 1024**3
    time_limit_s: float = 3600.0
    network: bool = False
    log_path: Path | None = None  # stdout+stderr of the command go here
    output_bytes: int = 2 * 1024**3  # the most the output folder (and the log) may hold
    workdir: str | None = None  # where the command starts (None: outdir)
    # What the machine provides for the job's declared needs (recast/host_resources.py):
    host_mounts: list = field(default_factory=list)  # [host folder, path in the job], read-only
    credentials: list = field(default_factory=list)  # [name, host file, variable]: never recorded


@dataclass
class Outcome:
    exit_code: int
    timed_out: bool = False
    details: dict = field(default_factory=dict)  # e.g. container id, image id, user
    output_exceeded: bool = False  # stopped because its output folder grew past job.output_bytes


class Environment(Protocol):
    name: str
    uses_images: bool  # runs a template's pinned image (so a run needs the images built)
    uses_container_broker: bool  # its jobs may ask the run's container broker to start them

    def run(self, job: Job) -> Outcome:
        """Run the job to completion (or its time limit) and report how it ended."""
        ...


ENVIRONMENTS = {
    "host": "recast.environments.host:HostEnvironment",
    "docker": "recast.environments.docker:DockerEnvironment",
}


def get_environment(name: str) -> Environment:
    from recast.errors import RecastError

    try:
        target = ENVIRONMENTS[name]
    except KeyError:
        raise RecastError(
            f"unknown environment {name!r}: expected one of {', '.join(sorted(ENVIRONMENTS))}"
        ) from None
    module, _, cls = target.partition(":")
    return getattr(importlib.import_module(module), cls)()
