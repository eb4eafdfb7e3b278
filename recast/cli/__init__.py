"""The ``recast`` command. Command groups are registered here, and only here.

Every command prints a readable table, or JSON on stdout with ``--json``;
it exits 0 only on success, and a problem is reported as one clear message
(which file, which field, what was expected) rather than a traceback.
"""

from __future__ import annotations

import signal
import sys

import click

from recast import __version__
from recast.cli.catalog import catalog, new, validate
from recast.cli.export import export_group
from recast.cli.images import images
from recast.cli.imports import import_group
from recast.cli.likelihood import likelihood
from recast.cli.refresh import diff, refresh
from recast.cli.remote import remote
from recast.cli.service import serve, worker
from recast.cli.run import gc, results, run
from recast.cli.test import test
from recast.errors import Interrupted, RecastError


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="recast")
def cli():
    """Preserve LHC analyses and reinterpret them on new signal models."""


for command in (catalog, new, validate, images, run, results, gc, test, refresh, diff, likelihood, import_group,
                export_group):
    cli.add_command(command)
for command in (serve, worker, remote):  # the request service: recast/service/
    cli.add_command(command)


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
