"""Options and output helpers shared by the command groups."""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Iterator

import click
from click.shell_completion import CompletionItem
from rich.console import Console, ConsoleOptions, RenderableType
from rich.table import Table
from rich.cells import cell_len
from rich.text import Text

catalog_option = click.option(
    "--catalog", "catalog_dir", type=click.Path(file_okay=False), envvar="RECAST_CATALOG",
    help="Catalog folder (default: the catalog shipped with recast; env RECAST_CATALOG).",
)
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON on stdout instead of a table.")
allow_stale_option = click.option(
    "--allow-stale-images", is_flag=True,
    help="Run images although their Dockerfile or copied files changed since they were built "
         "(recorded in provenance.json); by default such a run is refused.",
)


def complete_analysis(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    """Shell completion of analysis ids, from the catalog in use (--catalog before the id, or RECAST_CATALOG)."""
    from recast import catalog as catalog_mod
    from recast.errors import RecastError

    try:
        ids = [p.name for p in catalog_mod.entries(ctx.params.get("catalog_dir") or os.environ.get("RECAST_CATALOG"))]
    except (RecastError, OSError):
        return []
    return [CompletionItem(i) for i in ids if i.startswith(incomplete)]

console = Console(soft_wrap=True)
err_console = Console(stderr=True)


def emit_json(document) -> None:
    json.dump(document, sys.stdout, indent=1, sort_keys=True, default=str)
    sys.stdout.write("\n")


def table(title: str | None, columns: list[str], rows: list[list]) -> Cells:
    """A table to print: laid out for the width it is printed at (see :class:`Cells`)."""
    return Cells(title, columns, rows)


_NUMBER = re.compile(r"[\[(]?[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?%?[\]),;]?")
_WORD_FLOOR = 16  # a longer word that is not a number (a path, a digest) may be folded rather than not fit


def _unbreakable(word: str) -> int:
    """How narrow a column may be for ``word``: a number (or a header word) whole, other words folded past 16."""
    return cell_len(word) if _NUMBER.fullmatch(word) else min(cell_len(word), _WORD_FLOOR)


class Cells:
    """A table that never breaks a number or a header apart.

    Printed at the console's width (80 columns when piped): as a table whose
    columns wrap between words (and fold only words of more than 16
    characters that are not numbers) when that fits, else as one block per
    row (``column  value`` lines), which always reads.
    """

    def __init__(self, title: str | None, columns: list[str], rows: list[list]):
        self.title = title
        self.columns = list(columns)
        self.rows = [[fmt(v) for v in r] for r in rows]

    def widths(self, available: int) -> list[int] | None:
        """Column widths (without padding) that fit ``available`` columns with no word broken; None if none do."""
        cells = [[c, *(r[i] for r in self.rows)] for i, c in enumerate(self.columns)]
        natural = [max((cell_len(line) for text in col for line in text.splitlines() or [""]), default=1) or 1
                   for col in cells]
        floor = [max([cell_len(word) for word in col[0].split()]
                     + [_unbreakable(word) for text in col[1:] for word in text.split()], default=1) or 1
                 for col in cells]
        room = available - 3 * len(self.columns) - 1  # each column's padding and rule, and the last rule
        widths = list(natural)
        while sum(widths) > room:
            # narrow the column with the most room to spare above its longest word
            slack, i = max((w - f, i) for i, (w, f) in enumerate(zip(widths, floor)))
            if slack <= 0:
                return None
            widths[i] -= 1
        return widths

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> Iterator[RenderableType]:
        widths = self.widths(options.max_width)
        if widths is None:
            yield from self._records(options.max_width)
            return
        t = Table(title=self.title, title_justify="left", show_lines=False)
        for column, width in zip(self.columns, widths):
            t.add_column(column, width=width, overflow="fold")
        for row in self.rows:
            t.add_row(*[Text(cell) for cell in row])
        yield t

    def _records(self, width: int):
        if self.title:
            yield Text(self.title, style="italic")
        key_width = min(max(cell_len(c) for c in self.columns), max(12, width // 3))
        for n, row in enumerate(self.rows):
            if n:
                yield Text("")
            for column, cell in zip(self.columns, row):
                lines = cell.splitlines() or [""]
                yield Text.assemble((f"{column:<{key_width}}", "bold"), "  ", lines[0])
                for line in lines[1:]:
                    yield Text(" " * (key_width + 2) + line)


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
