"""``--executor NAME`` and every executor's settings (``--slurm-partition``, ...), for any command that runs jobs.

The options come from the registry (:data:`recast.executors.EXECUTORS`): an
executor's ``Settings`` fields become ``--NAME-FIELD`` options, so a new
executor needs no change here. The decorated command receives ``executor``,
an executor configured with its settings (:class:`recast.executors.Configured`).
"""

from __future__ import annotations

import functools

import click

from recast.executors import EXECUTORS, configure, option_name


_TYPES = {"int": click.INT, "float": click.FLOAT}  # a setting's type as its dataclass field declares it


def _settings_options():
    options = []
    for executor in EXECUTORS.values():
        try:
            fields = executor.settings_fields()
        except ImportError:  # an executor module that needs what is not installed: no options
            continue
        for f in fields:
            name = option_name(executor, f.name)
            kind = _TYPES.get(f.type if isinstance(f.type, str) else f.type.__name__, click.STRING)
            options.append((executor.name, f.name, click.option(
                f"--{name}", name.replace("-", "_"), type=kind, default=None, metavar=kind.name.upper(),
                help=f"[--executor {executor.name}] {f.metadata.get('help', '')}")))
    return options


def executor_options(default: str | None = "local"):
    """Add ``--executor`` and the executors' settings to a command; pass it ``executor``, configured.

    ``default`` None: the option may be left out, and the command receives None.
    """
    settings_options = _settings_options()

    def decorate(command):
        @functools.wraps(command)
        def wrapper(*args, executor, **kwargs):
            given = {}
            for owner, field_name, _ in settings_options:
                value = kwargs.pop(option_name(EXECUTORS[owner], field_name).replace("-", "_"))
                if value is None:
                    continue
                if owner != executor:
                    raise click.UsageError(f"--{option_name(EXECUTORS[owner], field_name)} is a setting of "
                                           f"--executor {owner}, not of --executor {executor}")
                given[field_name] = value
            configured = None if executor is None else configure(executor, given)
            return command(*args, executor=configured, **kwargs)

        for _, _, option in reversed(settings_options):
            wrapper = option(wrapper)
        return click.option(
            "--executor", type=click.Choice(sorted(EXECUTORS)), default=default, show_default=default is not None,
            help="Where jobs run: " + "; ".join(f"{e.name}: {e.description}" for e in EXECUTORS.values()) + ".",
        )(wrapper)

    return decorate
