"""The small language that connects workflow stages: placeholders and references.

- In a template's argv, ``{name}`` is a parameter placeholder and ``{outdir}`` the
  job's output folder; ``{{`` and ``}}`` are literal braces.
- In a stage's bindings and in an analysis's results, a string starting with
  ``$`` is a reference: ``$request.NAME``, ``$item`` / ``$item.FIELD``,
  ``$steps.STAGE.OUTPUT`` or ``$entry/PATH`` (a file archived in the catalog
  entry). ``$$`` starts a literal string that begins with ``$``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

BUILTIN_PLACEHOLDERS = frozenset({"outdir"})
PLACEHOLDER = re.compile(r"\{\{|\}\}|\{([A-Za-z_][A-Za-z0-9_]*)\}|\{|\}")
_IDENT = r"[A-Za-z][A-Za-z0-9_]*"
_REFERENCE = re.compile(
    rf"^\$(?:request\.(?P<request>{_IDENT})"
    rf"|item(?:\.(?P<item>{_IDENT}))?"
    rf"|steps\.(?P<stage>{_IDENT})\.(?P<output>{_IDENT})"
    rf"|entry/(?P<entry>[^\0]+))$"
)


@dataclass(frozen=True)
class Reference:
    kind: str  # request | item | steps | entry
    name: str | None = None  # request parameter, item field, or entry path
    stage: str | None = None
    output: str | None = None

    def __str__(self) -> str:
        if self.kind == "request":
            return f"$request.{self.name}"
        if self.kind == "item":
            return "$item" + (f".{self.name}" if self.name else "")
        if self.kind == "steps":
            return f"$steps.{self.stage}.{self.output}"
        return f"$entry/{self.name}"


class PlaceholderError(ValueError):
    pass


def placeholders(element: str) -> list[str]:
    """Names used in one argv element; unbalanced braces raise PlaceholderError."""
    names = []
    for match in PLACEHOLDER.finditer(element):
        token = match.group(0)
        if token in ("{", "}"):
            raise PlaceholderError(f"unbalanced {token!r} in {element!r} (write {token * 2} for a literal brace)")
        if match.group(1):
            names.append(match.group(1))
    return names


def substitute(element: str, values: dict[str, str]) -> str:
    """Fill placeholders of one argv element. Values are inserted verbatim, never re-parsed."""

    def fill(match: re.Match) -> str:
        token = match.group(0)
        if token == "{{":
            return "{"
        if token == "}}":
            return "}"
        return values[match.group(1)]

    return PLACEHOLDER.sub(fill, element)


def whole_placeholder(element: str) -> str | None:
    """The name if the element is exactly one placeholder (a list there expands to many elements)."""
    match = PLACEHOLDER.fullmatch(element)
    return match.group(1) if match and match.group(1) else None


def parse(value) -> Reference | None:
    """A Reference for a ``$...`` string; None for literals. Malformed references raise ValueError."""
    if not isinstance(value, str) or not value.startswith("$") or value.startswith("$$"):
        return None
    match = _REFERENCE.match(value)
    if not match:
        raise ValueError(
            f"{value!r} is not a reference: expected $request.NAME, $item, $item.FIELD, "
            "$steps.STAGE.OUTPUT or $entry/PATH (write $$ for a literal $)"
        )
    if match.group("request"):
        return Reference("request", match.group("request"))
    if match.group("stage"):
        return Reference("steps", stage=match.group("stage"), output=match.group("output"))
    if match.group("entry"):
        return Reference("entry", match.group("entry"))
    return Reference("item", match.group("item"))


def parse_or_none(value) -> Reference | None:
    """Like :func:`parse`, but a malformed reference is None (validation reports it)."""
    try:
        return parse(value)
    except ValueError:
        return None


def literal(value):
    """The literal a binding stands for (``$$x`` -> ``$x``)."""
    if isinstance(value, str) and value.startswith("$$"):
        return value[1:]
    return value
