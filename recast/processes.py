"""What a job runs: one handler per ``process.kind`` of a template.

Validation, planning and ``recast test --step`` all go through this table, so
a kind is defined once: where its placeholders are (:meth:`texts`, checked by
``recast validate``) and how a template and its values become an argument
list (:meth:`argv`). Whatever the kind, a job runs an argument list: nothing
of a request is ever pasted unquoted into text that a shell or an interpreter
parses.

- ``command``: ``argv``, an argument list; ``{p}`` placeholders are filled
  verbatim inside one argument (no shell sees them), and an argument that is
  exactly ``{p}`` for a list parameter expands to one argument per item.
- ``script``: an ``interpreter`` (``sh``, ``bash``, ``python3``) and a
  ``script`` body, run as ``INTERPRETER -c BODY``. A ``{p}`` placeholder in
  the body becomes the value *quoted for that interpreter*: one shell word per
  value (``shlex.quote``; a list becomes one word per item), or a Python
  literal (``repr``). ``{{``/``}}`` are literal braces.
"""

from __future__ import annotations

import json
import shlex
from typing import Any, Callable, Protocol

from recast import references

MAX_SCRIPT_CHARS = 64 * 1024  # one argument of a process: the kernel takes at most 128 KiB


def _format(value: Any) -> str:
    """A value as one argument of a command."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True)
    return str(value)  # floats: repr-exact shortest round trip


def _shell_word(value: Any) -> str:
    if isinstance(value, list):
        return " ".join(shlex.quote(_format(v)) for v in value) or "''"
    return shlex.quote(_format(value))


def _python_literal(value: Any) -> str:
    return repr(value)  # request values are JSON: str, int, float, bool, None, list, dict


class ProcessKind(Protocol):
    kind: str

    def texts(self, process: dict) -> list[tuple[str, str]]:
        """(field, text) of each place in ``process`` where placeholders may stand."""
        ...

    def standalone_lists(self) -> bool:
        """Whether a list or object placeholder must fill a whole text to be used."""
        ...

    def argv(self, process: dict, values: dict[str, Any]) -> list[str]:
        """The argument list, with every placeholder filled from ``values``."""
        ...


class Command:
    kind = "command"

    def texts(self, process: dict) -> list[tuple[str, str]]:
        return [(f"process.argv[{i}]", element) for i, element in enumerate(process["argv"])]

    def standalone_lists(self) -> bool:
        return True

    def argv(self, process: dict, values: dict[str, Any]) -> list[str]:
        argv: list[str] = []
        for element in process["argv"]:
            whole = references.whole_placeholder(element)
            if whole is not None and isinstance(values.get(whole), list):
                argv.extend(_format(v) for v in values[whole])
            else:
                argv.append(references.substitute(element, {k: _format(v) for k, v in values.items()}))
        return argv


class Script:
    kind = "script"
    INTERPRETERS: dict[str, tuple[list[str], Callable[[Any], str]]] = {
        "sh": (["sh", "-c"], _shell_word),
        "bash": (["bash", "-c"], _shell_word),
        "python3": (["python3", "-c"], _python_literal),
    }

    def texts(self, process: dict) -> list[tuple[str, str]]:
        return [("process.script", process["script"])]

    def standalone_lists(self) -> bool:
        return False

    def argv(self, process: dict, values: dict[str, Any]) -> list[str]:
        prefix, quote = self.INTERPRETERS[process["interpreter"]]
        return [*prefix, references.substitute(process["script"], {k: quote(v) for k, v in values.items()})]


PROCESS_KINDS: dict[str, ProcessKind] = {"command": Command(), "script": Script()}


def get(kind: str) -> ProcessKind:
    return PROCESS_KINDS[kind]


def argv(process: dict, values: dict[str, Any]) -> list[str]:
    """The one way a template's process and a job's values become what the job runs."""
    return get(process["kind"]).argv(process, values)
