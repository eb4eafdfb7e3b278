"""Load spec documents (YAML or JSON) and check them against recast's schemas.

The schemas are versioned package data (``specs/<version>/*.schema.json``),
loaded offline through this module only: a ``$id`` is never fetched. Every
problem is reported with its file, the path of the field, and what was
expected, all at once rather than first-failure-only.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError
from referencing import Registry, Resource

from recast import resources
from recast.errors import SpecError

SCHEMA_VERSION = "1.0.0"
KINDS = ("analysis", "template", "workflow", "parameter", "request", "result", "provenance", "likelihood", "checks")


@cache
def _registry() -> Registry:
    registry = Registry()
    for path in sorted(resources.schema_dir(SCHEMA_VERSION).glob("*.schema.json")):
        schema = json.loads(path.read_text())
        registry = registry.with_resource(schema["$id"], Resource.from_contents(schema))
    return registry


def schema_uri(kind: str) -> str:
    return f"https://recast.dev/specs/{SCHEMA_VERSION}/{kind}.schema.json"


@cache
def validator(kind: str) -> Draft202012Validator:
    if kind not in KINDS:
        raise ValueError(f"unknown schema kind {kind!r}")
    schema = _registry().contents(schema_uri(kind))
    return Draft202012Validator(schema, registry=_registry(), format_checker=Draft202012Validator.FORMAT_CHECKER)


def field_path(parts) -> str:
    """``('workflow', 'stages', 2, 'template')`` -> ``workflow.stages[2].template``."""
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def explain(error: ValidationError) -> tuple[str, str]:
    """(field path, one line for people: what was found, what was expected)."""
    if error.validator in ("oneOf", "anyOf") and error.context:
        if all(e.validator == "required" for e in error.context):
            missing = [e.message.split(" is a required")[0] for e in error.context]
            return field_path(error.absolute_path), "missing required field(s): expected " + " or ".join(
                sorted(set(missing))
            )
        # Report the alternative that came closest rather than 'is not valid under any'.
        return explain(max(error.context, key=lambda e: len(e.absolute_path)))
    where = field_path(error.absolute_path)
    if error.validator == "additionalProperties":
        return where, f"{error.message} (remove it, or check its spelling)"
    if error.validator == "required":
        return where, f"missing required field {error.message.split(' is a required')[0]}"
    if error.validator == "const":
        return where, f"expected {error.validator_value!r}, found {error.instance!r}"
    if error.validator == "enum":
        return where, f"expected one of {', '.join(map(repr, error.validator_value))}, found {error.instance!r}"
    if error.validator == "pattern":
        return where, f"{error.instance!r} does not have the expected form {error.validator_value}"
    if error.validator == "type":
        return where, f"expected {error.validator_value}, found {type(error.instance).__name__} {error.instance!r}"
    return where, error.message


def problems(document: Any, kind: str, source: str | Path) -> list[tuple[str, str, str]]:
    errors = sorted(validator(kind).iter_errors(document), key=lambda e: list(map(str, e.absolute_path)))
    return [(str(source), *explain(e)) for e in errors]


def validate_document(document: Any, kind: str, source: str | Path = "<document>") -> None:
    """Raise :class:`SpecError` listing every schema violation of ``document``."""
    found = problems(document, kind, source)
    if found:
        raise SpecError(found)


def load_document(path: str | Path) -> Any:
    """Read YAML or JSON; a syntax error names the file, line and column."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError([(str(path), "", "file not found")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError([(str(path), "", f"cannot read: {exc}")]) from None
    try:
        if path.suffix == ".json":
            return json.loads(text)
        return yaml.safe_load(text)
    except json.JSONDecodeError as exc:
        raise SpecError([(str(path), f"line {exc.lineno} column {exc.colno}", f"malformed JSON: {exc.msg}")]) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1} column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise SpecError([(str(path), where, f"malformed YAML: {problem}")]) from None
