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
  the body becomes the value *quoted for where it stands*: in a shell script,
  one shell word per value when unquoted (a list, one word per item), escaped
  inside '...', "...", $'...' and here-documents (a line break, which could
  end a here-document or a comment, is refused there); in a Python script, a
  literal (``repr``) in code and an escaped text inside a string literal
  (braces doubled in an f-string). ``{{``/``}}`` are literal braces. So a
  value is always data, wherever the analyst's script puts it.
"""

from __future__ import annotations

import json
import re
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


def _text(value: Any) -> str:
    """A value as the text a script sees: a list is its items, space-separated."""
    return " ".join(_format(v) for v in value) if isinstance(value, list) else _format(value)


def _no_newline(value: str, name: str, where: str) -> str:
    if "\n" in value or "\r" in value:
        raise ValueError(f"the value of {{{name}}} holds a line break, which cannot stand {where} "
                         "without changing what the script does")
    return value


def _shell_quoted(name: str, value: Any, context: str) -> str:
    """``value`` for a placeholder standing in ``context`` of a shell script: one safe form for each."""
    if context == "plain":
        if isinstance(value, list):
            return " ".join(shlex.quote(_format(v)) for v in value) or "''"
        return shlex.quote(_format(value))
    text = _text(value)
    if context == "single":  # inside '...': nothing is special but the quote itself
        return text.replace("'", "'\\''")
    if context == "double":  # inside "...": \ " $ ` are special
        return re.sub(r'([\\"$`])', r"\\\1", text)
    if context == "ansi":  # inside $'...'
        return text.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n").replace("\r", "\\r")
    if context == "heredoc-literal":  # a line equal to the delimiter would end the document
        return _no_newline(text, name, "in a here-document")
    if context == "heredoc":  # an unquoted delimiter: $ ` \ expand
        return re.sub(r"([\\$`])", r"\\\1", _no_newline(text, name, "in a here-document"))
    return _no_newline(text, name, "in a comment")  # comment


_HEREDOC = re.compile(r"<<(-?)[ \t]*(?:'([^'\n]+)'|\"([^\"\n]+)\"|\\?([A-Za-z0-9_]+))")


def shell_contexts(pieces: list[str]) -> list[str]:
    """The quoting context at the end of each literal piece of a shell script (where the next placeholder
    stands): plain, single, double, ansi ($'...'), heredoc, heredoc-literal or comment.

    A small lexer of POSIX sh quoting, enough to quote a value for where it
    stands (never to run the script): quotes, backslashes, comments, ANSI-C
    strings and here-documents (their bodies start at the next line break).
    A placeholder's value is one word wherever it stands, so the state goes
    on from one piece to the next unchanged.
    """
    state, contexts, pending, heredoc, line, previous = "plain", [], [], None, "", "\n"
    for piece in pieces:
        i = 0
        while i < len(piece):
            c = piece[i]
            if state in ("heredoc", "heredoc-literal"):
                if c == "\n":
                    delimiter, strip_tabs = heredoc
                    if (line.lstrip("\t") if strip_tabs else line) == delimiter:
                        state, heredoc = _next_heredoc(pending) if pending else ("plain", None)
                    line = ""
                else:
                    line += c
            elif state == "single":
                state = "plain" if c == "'" else state
            elif state in ("ansi", "double"):
                if c == "\\":
                    i += 1
                elif c == ("'" if state == "ansi" else '"'):
                    state = "plain"
            elif state == "comment":
                if c == "\n":
                    state, heredoc = _next_heredoc(pending) if pending else ("plain", None)
                    line = ""
            elif c == "\\":
                i += 1
            elif c == "'":
                state = "single"
            elif c == '"':
                state = "double"
            elif c == "$" and piece.startswith("'", i + 1):
                state, i = "ansi", i + 1
            elif c == "#" and previous in " \t\n;&|()":
                state = "comment"
            elif c == "<" and (match := _HEREDOC.match(piece, i)):
                quoted = match.group(4) is None or piece[match.start(4) - 1] == "\\"
                pending.append((match.group(2) or match.group(3) or match.group(4), bool(match.group(1)), quoted))
                i = match.end() - 1
            elif c == "\n" and pending:
                state, heredoc = _next_heredoc(pending)
                line = ""
            previous = piece[i] if i < len(piece) else c
            i += 1
        contexts.append(state)
        previous = "x"  # the placeholder's value: a word
    return contexts


def _next_heredoc(pending: list[tuple[str, bool, bool]]) -> tuple[str, tuple[str, bool]]:
    delimiter, strip_tabs, quoted = pending.pop(0)
    return ("heredoc-literal" if quoted else "heredoc"), (delimiter, strip_tabs)


def _python_quoted(name: str, value: Any, string_prefix: str | None, quote: str | None) -> str:
    """``value`` for a placeholder in a Python script: a literal in code; escaped inside a string literal."""
    if string_prefix is None:
        return repr(value)  # request values are JSON: str, int, float, bool, None, list, dict
    text = _text(value)
    if "r" in string_prefix.lower():
        if "\\" in text or quote in text or "\n" in text:
            raise ValueError(f"the value of {{{name}}} holds a backslash, a quote or a line break, which a raw "
                             "string literal cannot hold")
    else:
        text = text.replace("\\", "\\\\").replace(quote, "\\" + quote).replace("\n", "\\n").replace("\r", "\\r")
    if "f" in string_prefix.lower():
        text = text.replace("{", "{{").replace("}", "}}")
    return text


def python_contexts(script: str, names: list[str]) -> list[tuple[str | None, str | None]]:
    """For each placeholder (in order), the prefix and quote of the string literal it stands in, or
    (None, None) in code: found by tokenizing the script with each placeholder as a marker name."""
    import io
    import tokenize

    markers = [f"__recast_placeholder_{i}__" for i in range(len(names))]
    pieces = _split(script)
    text = "".join(piece + (markers[i] if i < len(markers) else "") for i, piece in enumerate(pieces))
    found: dict[str, tuple[str | None, str | None]] = {}
    try:
        for token in tokenize.generate_tokens(io.StringIO(text).readline):
            if token.type == tokenize.STRING or getattr(tokenize, "FSTRING_START", None) == token.type:
                body = token.string
                prefix = re.match(r"[A-Za-z]*", body).group(0)
                quote = body[len(prefix):len(prefix) + 3] if body[len(prefix):len(prefix) + 3] in ('"""', "\'\'\'") \
                    else body[len(prefix):len(prefix) + 1]
                for marker in markers:
                    if marker in body:
                        found[marker] = (prefix, quote[0])
    except (tokenize.TokenError, IndentationError, SyntaxError) as exc:
        raise ValueError(f"the Python script cannot be read: {exc}") from None
    return [found.get(marker, (None, None)) for marker in markers]


def _split(template: str) -> list[str]:
    """The literal pieces of a template around its placeholders ({{ and }} already made single braces)."""
    pieces, current, last = [], [], 0
    for match in references.PLACEHOLDER.finditer(template):
        current.append(template[last:match.start()])
        last = match.end()
        token = match.group(0)
        if token in ("{{", "}}"):
            current.append(token[0])
        else:
            pieces.append("".join(current))
            current = []
    current.append(template[last:])
    pieces.append("".join(current))
    return pieces


class ProcessKind(Protocol):
    kind: str
    field: str  # where its text lives in a template, for messages

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
    field = "process.argv"

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
    field = "process.script"
    INTERPRETERS = {"sh": ["sh", "-c"], "bash": ["bash", "-c"], "python3": ["python3", "-c"]}

    def texts(self, process: dict) -> list[tuple[str, str]]:
        return [("process.script", process["script"])]

    def standalone_lists(self) -> bool:
        return False

    def argv(self, process: dict, values: dict[str, Any]) -> list[str]:
        return [*self.INTERPRETERS[process["interpreter"]], self.render(process, values)]

    def render(self, process: dict, values: dict[str, Any]) -> str:
        """The script with each placeholder's value quoted for where it stands. ValueError when a value
        cannot stand there safely (a line break in a here-document, say)."""
        script = process["script"]
        names = references.placeholders(script)
        pieces = _split(script)
        if process["interpreter"] == "python3":
            filled = [_python_quoted(n, values[n], *where) for n, where in zip(names, python_contexts(script, names))]
        else:
            filled = [_shell_quoted(n, values[n], where) for n, where in zip(names, shell_contexts(pieces[:-1]))]
        return "".join(piece + (filled[i] if i < len(filled) else "") for i, piece in enumerate(pieces))


PROCESS_KINDS: dict[str, ProcessKind] = {"command": Command(), "script": Script()}


def get(kind: str) -> ProcessKind:
    return PROCESS_KINDS[kind]


def argv(process: dict, values: dict[str, Any]) -> list[str]:
    """The one way a template's process and a job's values become what the job runs."""
    return get(process["kind"]).argv(process, values)
