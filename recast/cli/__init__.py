"""The ``recast`` command. Command groups are registered here, and only here.

Every command prints a readable table, or JSON on stdout with ``--json``;
it exits 0 only on success, and a problem is reported as one clear message
(which file, which field, what was expected) rather than a traceback.
"""

from __future__ import annotations

import importlib
import signal
import sys

import click

from recast import __version__
from recast.errors import Interrupted, RecastError

# command name -> "module:attribute"; a module is imported when its command runs (or help lists it), so
# that a command does not pay for every other's imports (recast likelihood: 0.1 s of 0.6 s of start-up)
COMMANDS = {
    "catalog": "recast.cli.catalog:catalog",
    "new": "recast.cli.catalog:new",
    "validate": "recast.cli.catalog:validate",
    "images": "recast.cli.images:images",
    "run": "recast.cli.run:run",
    "results": "recast.cli.run:results",
    "gc": "recast.cli.run:gc",
    "test": "recast.cli.test:test",
    "refresh": "recast.cli.refresh:refresh",
    "diff": "recast.cli.refresh:diff",
    "likelihood": "recast.cli.likelihood:likelihood",
    "import": "recast.cli.imports:import_group",
    "export": "recast.cli.export:export_group",
    # the request service: recast/service/
    "serve": "recast.cli.service:serve",
    "worker": "recast.cli.service:worker",
    "remote": "recast.cli.remote:remote",
}


class _LazyGroup(click.Group):
    """The top-level group: its commands are the modules of :data:`COMMANDS`, imported on use."""

    def list_commands(self, ctx):
        return list(COMMANDS)

    def get_command(self, ctx, name):
        target = COMMANDS.get(name)
        if target is None:
            return None
        module, attribute = target.split(":")
        return getattr(importlib.import_module(module), attribute)


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="recast")
def cli():
    """Preserve LHC analyses and reinterpret them on new signal models."""


class _Terminated(KeyboardInterrupt):
    """SIGTERM, turned into an exception so that every command unwinds (and cleans up) as on Ctrl-C."""


def _terminate(signum, frame):
    raise _Terminated


def main() -> None:
    signal.signal(signal.SIGTERM, _terminate)
    try:
        # Named "recast" however it is started (python -m recast too), for usage lines and shell completion.
        cli.main(prog_name="recast", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except Interrupted as exc:
        click.echo(str(exc), err=True)
        sys.exit(exc.exit_code)
    except RecastError as exc:
        click.secho("error: ", fg="red", bold=True, err=True, nl=False)
        click.echo(str(exc), err=True)
        sys.exit(1)
    except KeyboardInterrupt as exc:
        click.echo("interrupted", err=True)
        sys.exit(143 if isinstance(exc, _Terminated) else 130)
