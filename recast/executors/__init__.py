"""Where jobs run: the *executor* axis, independent of the environment.

An executor is a Snakemake executor plugin, what it offers, and its settings.
Job templates and environments never change with it: every job is the same
``python -m recast.job PLAN JOB`` command wherever it starts. Adding one is one
entry in :data:`EXECUTORS` plus its module, which defines:

- ``Settings``: a frozen dataclass of what a user may set (each field's
  ``metadata["help"]``; a field without a default is required). The command
  line offers each field as ``--NAME-FIELD`` (``--slurm-partition``), see
  :mod:`recast.cli.executor`.
- ``plugin_settings(settings, run_dir)``: the plugin's ``ExecutorSettings``.
- ``default_resources(settings)``: Snakemake resources every job gets
  (a Slurm partition, say), beside the ones each template declares.
- ``check(settings)``: raise :class:`~recast.errors.ExecutionError` saying what
  is missing (the plugin, the cluster's commands) before anything runs.
- ``explain(messages)``: the executor's own account of failed jobs, read from
  Snakemake's error messages (Slurm's state and reason, say), one line each.
- optionally ``plugin(settings)``: the name of a plugin the module registers
  itself with Snakemake, when it adapts the stock one (see :mod:`.slurm`).

What an executor *offers* is declared, never inferred from its name:
``shares_machine`` means its jobs are processes of this machine, children of
the run: they may ask the run's container broker to start their containers,
and stopping the run signals them directly. Jobs of an executor that does not
share the machine start their own containers (the remote path of
:mod:`recast.job`) and are cancelled through the executor.
"""

from __future__ import annotations

import dataclasses
import importlib
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from recast.errors import RecastError


@dataclass(frozen=True)
class Executor:
    name: str
    plugin: str  # Snakemake executor plugin name
    description: str
    shares_machine: bool  # jobs are this machine's processes: the run's container broker serves them
    module: str | None = None  # Settings, plugin_settings, default_resources, check, explain
    extra: str | None = None  # the pip extra that installs its plugin

    def load(self) -> ModuleType | None:
        return importlib.import_module(self.module) if self.module else None

    def settings_fields(self) -> list[dataclasses.Field]:
        module = self.load()
        return list(dataclasses.fields(module.Settings)) if module else []


@dataclass(frozen=True)
class Configured:
    """An executor with its settings: what a run is given."""

    executor: Executor
    settings: Any = None  # an instance of the executor module's Settings, or None

    @property
    def name(self) -> str:
        return self.executor.name

    @property
    def shares_machine(self) -> bool:
        return self.executor.shares_machine

    @property
    def plugin(self) -> str:
        """The Snakemake executor plugin to run with (a module may register its own: ``plugin(settings)``)."""
        module = self.executor.load()
        if module is not None and hasattr(module, "plugin"):
            return module.plugin(self.settings)
        return self.executor.plugin

    def plugin_settings(self, run_dir: Path):
        module = self.executor.load()
        return module.plugin_settings(self.settings, Path(run_dir)) if module else None

    def remote_execution_settings(self):
        """Snakemake's remote execution settings: the jobs' image, for an executor that names one."""
        from snakemake.settings.types import RemoteExecutionSettings

        module = self.executor.load()
        if module is not None and hasattr(module, "container_image"):
            return RemoteExecutionSettings(container_image=module.container_image(self.settings))
        return RemoteExecutionSettings()

    def default_resources(self) -> dict[str, Any]:
        module = self.executor.load()
        return module.default_resources(self.settings) if module else {}

    def check(self) -> None:
        module = self.executor.load()
        if module:
            module.check(self.settings)

    def explain(self, messages: list[str]) -> list[str]:
        module = self.executor.load()
        return module.explain(messages) if module else []

    def explain_retry(self, record: dict) -> str | None:
        """Why a job that ended well had to be started again, when the executor can tell (or None)."""
        module = self.executor.load()
        return module.explain_retry(record) if module and hasattr(module, "explain_retry") else None

    def describe(self) -> dict[str, Any]:
        """For provenance and messages: the executor's name and the settings given."""
        settings = dataclasses.asdict(self.settings) if self.settings is not None else {}
        return {"name": self.name, **{k: v for k, v in settings.items() if v is not None}}


EXECUTORS = {
    "local": Executor("local", "local", "jobs run as processes on this machine, up to --cores at once",
                      shares_machine=True),
    "slurm": Executor("slurm", "slurm", "each job is a Slurm batch job (sbatch), up to --cores queued at once; "
                      "template resources become the Slurm job's", shares_machine=False,
                      module="recast.executors.slurm", extra="slurm"),
    "kubernetes": Executor("kubernetes", "kubernetes", "each job is a Kubernetes pod, its image pulled by "
                           "registry digest (recast images push)", shares_machine=False,
                           module="recast.executors.kubernetes", extra="kubernetes"),
}


def get_executor(name: str) -> Executor:
    try:
        return EXECUTORS[name]
    except KeyError:
        raise RecastError(f"unknown executor {name!r}: expected one of {', '.join(sorted(EXECUTORS))}") from None


def configure(executor: str | Configured, settings: dict[str, Any] | None = None) -> Configured:
    """An executor by name with its settings (field name -> value; None means not given)."""
    if isinstance(executor, Configured):
        return executor
    chosen = get_executor(executor)
    given = {k: v for k, v in (settings or {}).items() if v is not None}
    module = chosen.load()
    if module is None:
        if given:
            raise RecastError(f"executor {chosen.name!r} takes no settings (given: {', '.join(sorted(given))})")
        return Configured(chosen)
    fields = {f.name: f for f in dataclasses.fields(module.Settings)}
    unknown = sorted(set(given) - set(fields))
    if unknown:
        raise RecastError(f"executor {chosen.name!r} has no setting(s) {', '.join(unknown)} "
                          f"(it has: {', '.join(fields)})")
    missing = [name for name, f in fields.items() if name not in given
               and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    if missing:
        raise RecastError(f"executor {chosen.name!r} needs " + ", ".join(
            f"--{option_name(chosen, name)}" for name in missing))
    return Configured(chosen, module.Settings(**given))


def option_name(executor: Executor, field_name: str) -> str:
    """The command-line option of a setting, without its dashes: ``slurm-partition``."""
    return f"{executor.name}-{field_name.replace('_', '-')}"
