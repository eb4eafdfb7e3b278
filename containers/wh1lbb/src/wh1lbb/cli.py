"""Command-line plumbing shared by the console scripts: errors for people, JSON in and out, common options."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path


class InputError(Exception):
    """Bad input: the message names the file and what was expected."""


def load_json(path: str | Path, what: str):
    """Read a JSON file, or raise InputError naming it."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise InputError(f"{path}: {what} not found") from None
    except OSError as error:
        raise InputError(f"{path}: cannot read {what}: {error.strerror}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise InputError(f"{path}: {what} is not valid JSON ({error})") from None


def write_json(path: str | Path, document) -> None:
    """Write indented JSON in the order the document was built (cutflows are ordered)."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(document, indent=2) + "\n")
    except OSError as error:
        raise InputError(f"{path}: cannot write: {error.strerror}") from None


def run(prog: str, body: Callable[[], None]) -> int:
    """Run a command body; report InputError as ``prog: error: ...``, exit 2."""
    try:
        body()
    except InputError as error:
        print(f"{prog}: error: {error}", file=sys.stderr)
        return 2
    return 0


def add_mass_options(parser: argparse.ArgumentParser, purpose: str) -> None:
    """--m-c1n2 and --m-n1, the two masses of a signal point."""
    parser.add_argument("--m-c1n2", type=float, required=True, metavar="M",
                        help=f"mass of the mass-degenerate chargino1 and neutralino2, in GeV ({purpose})")
    parser.add_argument("--m-n1", type=float, required=True, metavar="M",
                        help=f"mass of the lightest neutralino (the LSP), in GeV ({purpose})")
