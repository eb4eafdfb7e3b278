"""Options and output helpers shared by the command groups."""

from __future__ import annotations

import json
import sys

import click
from rich.console import Console
from rich.table import Table

catalog_option = click.option(
    "--catalog", "catalog_dir", type=click.Path(file_okay=False), envvar="RECAST_CATALOG",
    help="Catalog folder (default: the catalog shipped with recast; env RECAST_CATALOG).",
)
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON on stdout instead of a table.")

console = Console(soft_wrap=True)
err_console = Console(stderr=True)


def emit_json(document) -> None:
    json.dump(document, sys.stdout, indent=1, sort_keys=True, default=str)
    sys.stdout.write("\n")


def table(title: str | None, columns: list[str], rows: list[list]) -> Table:
    t = Table(title=title, title_justify="left", show_lines=False)
    for c in columns:
        t.add_column(c, overflow="fold")
    for r in rows:
        t.add_row(*[fmt(v) for v in r])
    return t


def fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(fmt(v) for v in value)
    if value is None:
        return "-"
    return str(value)


def is_band(name: str, value) -> bool:
    """An expected band as the likelihood engine names it: ``*_exp``, five numbers (-2σ..+2σ)."""
    return (name.endswith("_exp") and isinstance(value, (list, tuple)) and len(value) == 5
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value))


def band(value) -> str:
    """The median, then the ±2σ range."""
    return f"{value[2]:.4g} [{value[0]:.3g}, {value[4]:.3g}]"
