"""Load spec documents (YAML or JSON) and check them against recast's schemas.

The schemas are versioned package data (``specs/<version>/*.schema.json``),
loaded offline through this module only: a ``$id`` is never fetched. Every
problem is reported with its file, the path of the field, and what was
expected, all at once rather than first-failure-only.
"""

from __future__ import annotations

import json
from functools import cache
from itertools import islice
from pathlib import Path
from typing import Any, Iterable

import yaml
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError
from referencing import Registry, Resource

from recast import resources
from recast.errors import SpecError

SCHEMA_VERSIONS = ("1.0.0", "1.1.0")
"""Every version of the schemas recast reads, oldest first. A document names its own (``schema:
recast/KIND/VERSION``) and is checked against that version, so an entry written for 1.0.0 keeps
working unchanged. 1.1.0 adds the forms of real published workflows: script processes, outputs in
sub-folders, folders and globs, zip/cartesian/batched scatters and scatters over another stage's
list, sub-workflows, pulled images, a working directory, host resources, credentials, retries."""
SCHEMA_VERSION = SCHEMA_VERSIONS[-1]
"""The version recast writes (results, provenance, imports, scaffolds)."""
KINDS = ("analysis", "template", "workflow", "parameter", "request", "result", "provenance", "likelihood", "checks")


def schema_name(kind: str, version: str = SCHEMA_VERSION) -> str:
    """The ``schema:`` value of a document of ``kind``: ``recast/template/1.1.0``."""
    return f"recast/{kind}/{version}"


@cache
def _registry() -> Registry:
    registry = Registry()
    for version in SCHEMA_VERSIONS:
        for path in sorted(resources.schema_dir(version).glob("*.schema.json")):
            schema = json.loads(path.read_text())
            registry = registry.with_resource(schema["$id"], Resource.from_contents(schema))
    return registry


def schema_uri(kind: str, version: str = SCHEMA_VERSION) -> str:
    return f"https://recast.dev/specs/{version}/{kind}.schema.json"


@cache
def validator(kind: str, version: str = SCHEMA_VERSION) -> Draft202012Validator:
    if kind not in KINDS:
        raise ValueError(f"unknown schema kind {kind!r}")
    if version not in SCHEMA_VERSIONS:
        raise ValueError(f"unknown schema version {version!r}")
    schema = _registry().contents(schema_uri(kind, version))
    return Draft202012Validator(schema, registry=_registry(), format_checker=Draft202012Validator.FORMAT_CHECKER)


def declared_version(document: Any, kind: str) -> str | None:
    """The version a document of ``kind`` declares in ``schema:``, if it is one recast reads."""
    declared = document.get("schema") if isinstance(document, dict) else None
    if isinstance(declared, str) and declared.startswith(f"recast/{kind}/"):
        version = declared[len(f"recast/{kind}/"):]
        if version in SCHEMA_VERSIONS:
            return version
    return None


def field_path(parts) -> str:
    """``('workflow', 'stages', 2, 'template')`` -> ``workflow.stages[2].template``."""
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _hint(error: ValidationError) -> str | None:
    """A schema's own ``x-hint``: what to write instead, in the words of the spec's author."""
    return error.schema.get("x-hint") if isinstance(error.schema, dict) else None


def explain(error: ValidationError) -> tuple[str, str]:
    """(field path, one line for people: what was found, what was expected)."""
    if error.validator in ("oneOf", "anyOf") and error.context:
        if all(e.validator == "required" for e in error.context):
            missing = [e.message.split(" is a required")[0] for e in error.context]
            return field_path(error.absolute_path), "missing required field(s): expected " + " or ".join(
                sorted(set(missing))
            )
        # Report the alternative that came closest rather than 'is not valid under any': the deepest,
        # then one whose schema says what to write instead, then any but a mere type or `kind` mismatch
        # (an alternative whose `kind` differs is not the one the author meant).
        return explain(max(error.context, key=lambda e: (len(e.absolute_path), _hint(e) is not None,
                                                         e.validator not in ("type", "const"))))
    where = field_path(error.absolute_path)
    if (hint := _hint(error)) is not None:
        return where, f"{short(error.instance)}: {hint}"
    if error.validator == "additionalProperties":
        return where, f"{error.message} (remove it, or check its spelling)"
    if error.validator == "required":
        return where, f"missing required field {error.message.split(' is a required')[0]}"
    if error.validator == "const":
        return where, f"expected {error.validator_value!r}, found {short(error.instance)}"
    if error.validator == "enum":
        return where, clip(f"expected one of {', '.join(map(repr, error.validator_value))}, found {short(error.instance)}")
    if error.validator == "pattern":
        return where, f"{short(error.instance)} does not have the expected form {clip(error.validator_value, 100)}"
    if error.validator == "type":
        return where, f"expected {error.validator_value}, found {type(error.instance).__name__} {short(error.instance)}"
    if error.validator == "maxItems":
        return where, f"{len(error.instance)} items, more than the maximum of {error.validator_value}"
    if error.validator == "maxLength":
        return where, f"{len(error.instance)} characters, more than the maximum of {error.validator_value}"
    # jsonschema's own messages start with the whole instance: keep them one line long.
    message = error.message
    if len(message) > 200 and isinstance(error.instance, (str, list, dict)):
        message = message.replace(repr(error.instance), short(error.instance), 1)
    return where, clip(message)


MAX_PROBLEMS = 50


def first_errors(errors: Iterable[ValidationError], source: str | Path, prefix: str = "") -> list[tuple[str, str, str]]:
    """Up to MAX_PROBLEMS errors, sorted by field (under ``prefix``), then one line saying more were not shown.

    ``errors`` is consumed lazily: a document with a million bad values costs MAX_PROBLEMS of them.
    """
    found = sorted(islice(errors, MAX_PROBLEMS + 1), key=lambda e: list(map(str, e.absolute_path)))
    listed = []
    for error in found[:MAX_PROBLEMS]:
        where, message = explain(error)
        if prefix:
            where = prefix + (where if not where or where.startswith("[") else "." + where)
        listed.append((str(source), clip(where, 160), message))
    if len(found) > MAX_PROBLEMS:
        listed.append((str(source), "", f"more problems not shown (only the first {MAX_PROBLEMS} are listed)"))
    return listed


def problems(document: Any, kind: str, source: str | Path) -> list[tuple[str, str, str]]:
    """Every violation of the schema version ``document`` declares (the newest when it declares none).

    A document of an older version that uses forms of a newer one is told which version to declare.
    """
    declared = document.get("schema") if isinstance(document, dict) else None
    version = declared_version(document, kind)
    if version is None and isinstance(declared, str):
        return [(str(source), "schema", f"{short(declared)} is not a schema recast reads here: expected one of "
                 f"{', '.join(schema_name(kind, v) for v in SCHEMA_VERSIONS)}")]
    version = version or SCHEMA_VERSION
    found = first_errors(validator(kind, version).iter_errors(document), source)
    if found and version != SCHEMA_VERSION:
        for newer in SCHEMA_VERSIONS[SCHEMA_VERSIONS.index(version) + 1:]:
            upgraded = {**document, "schema": schema_name(kind, newer)}
            if next(validator(kind, newer).iter_errors(upgraded), None) is None:
                return [(str(source), "schema", f"{schema_name(kind, version)} does not have the forms this document "
                         f"uses (listed below); they are new in {newer}: declare schema: {schema_name(kind, newer)}"),
                        *found]
    return found


def validate_document(document: Any, kind: str, source: str | Path = "<document>") -> None:
    """Raise :class:`SpecError` listing every schema violation of ``document``."""
    found = problems(document, kind, source)
    if found:
        raise SpecError(found)


# -- reading documents ----------------------------------------------------------
#
# Requests come from strangers, so a document is refused by counting, before
# anything can take long or use much memory: its size before it is read, and
# while it is parsed its values, aliases and nesting. The bounds are far above
# what any spec needs (the largest shipped spec is 5 KB, under 300 values, 8
# levels deep; a run's results.json for 200 signal points is about 200 KB),
# and low enough that pure-Python YAML (~0.3 MB/s, ~60,000 values/s) stops
# within seconds on the worst document. Requests use lower bounds
# (recast.request.MAX_BYTES, MAX_VALUES).

MAX_DOCUMENT_BYTES = 8 * 2**20
MAX_DOCUMENT_VALUES = 500_000  # after expanding aliases
MAX_ALIASES = 1_000
MAX_DEPTH = 64
MAX_INT_DIGITS = 19  # |n| < 2**63 has at most 19 digits; int() is never called on more
_INT_BOUND = 2**63
_YAML = "tag:yaml.org,2002:"
_NOT_JSON_TAGS = {_YAML + t: f"!!{t}" for t in ("binary", "set", "omap", "pairs")}


def short(value: Any, limit: int = 80) -> str:
    """``repr(value)`` for a message, at most ``limit`` characters (a stranger's value may be megabytes)."""
    import reprlib

    abbreviated = reprlib.Repr()
    abbreviated.maxstring = abbreviated.maxother = limit
    abbreviated.maxlist = abbreviated.maxdict = abbreviated.maxtuple = abbreviated.maxset = 8
    abbreviated.maxlevel = 3
    text = abbreviated.repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def clip(text: str, limit: int = 200) -> str:
    """``text`` cut to ``limit`` characters, marked with "…" when cut: no message is ever megabytes."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


class _Refused(Exception):
    """A document recast will not read; where (line, field) is filled in as it becomes known."""

    def __init__(self, message: str, line: int | None = None, field: list | None = None):
        super().__init__(message)
        self.message, self.line, self.field = message, line, field

    def where(self) -> str:
        # Keys come from the document: a field path names them, briefly.
        field = clip(field_path([clip(k, 40) if isinstance(k, str) else k for k in self.field]), 160) if self.field else ""
        if self.line is None:
            return field
        return f"{field} (line {self.line})" if field else f"line {self.line}"


def _check_int_text(text: str) -> None:
    digits = text.replace("_", "").lstrip("+-")
    if len(digits) > MAX_INT_DIGITS:
        raise _Refused(f"integer {short(text, 40)} has {len(digits)} digits: expected |n| < 2**63 "
                       f"(at most {MAX_INT_DIGITS} digits)")


def _check_int(number: int, text: str) -> None:
    if abs(number) >= _INT_BOUND:
        raise _Refused(f"integer {short(text, 40)} is out of range: expected |n| < 2**63")


def _check_text(text: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:  # "\ud800" escapes: nothing downstream could write or digest it
        raise _Refused(f"text {short(text, 40)} is not valid Unicode ({exc.reason})") from None


def _check_float(number: float, text: str) -> None:
    import math

    if not math.isfinite(number):
        raise _Refused(f"{short(text, 40)} is not a finite number (NaN and infinities are not allowed)")


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader, bounded: values, aliases and depth are counted as they are read,
    the alias graph is sized before anything is built from it (an alias bomb is small on disk and
    a DAG in memory, but every reader of the result walks it as a tree), duplicate keys are refused,
    and only JSON data comes out (string keys; finite floats; 64-bit integers; no binary, sets, dates)."""

    def __init__(self, stream: str, max_values: int):
        super().__init__(stream)
        self.max_values = max_values
        self.values_read = self.aliases = self.depth = 0

    def compose_node(self, parent, index):
        event = self.peek_event()
        line = event.start_mark.line + 1
        if isinstance(event, yaml.AliasEvent):
            self.aliases += 1
            if self.aliases > MAX_ALIASES:
                raise _Refused(f"more than {MAX_ALIASES} aliases (*{event.anchor})", line)
        else:
            self.values_read += 1
            if self.values_read > self.max_values:
                raise _Refused(f"more than {self.max_values} values", line)
        self.depth += 1
        try:
            if self.depth > MAX_DEPTH:
                raise _Refused(f"nested more than {MAX_DEPTH} levels deep", line)
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1

    def construct_document(self, node):
        self._check(node)
        return super().construct_document(node)

    def _check(self, root) -> None:
        """Size and check the document as the tree its aliases make, visiting each node once."""
        measured: dict[int, tuple[int, int]] = {}  # id(node) -> (values, levels) of its expanded tree
        open_nodes: set[int] = set()

        def visit(node, path: list, depth: int) -> tuple[int, int]:
            line = node.start_mark.line + 1
            if id(node) in open_nodes:
                raise _Refused("an alias refers to a collection that contains it (a recursive structure)", line, path)
            if id(node) in measured:
                values, levels = measured[id(node)]
                if depth + levels - 1 > MAX_DEPTH:
                    raise _Refused(f"nested more than {MAX_DEPTH} levels deep (through an alias)", line, path)
                return values, levels
            if depth > MAX_DEPTH:
                raise _Refused(f"nested more than {MAX_DEPTH} levels deep", line, path)
            if node.tag in _NOT_JSON_TAGS:
                raise _Refused(f"YAML tag {_NOT_JSON_TAGS[node.tag]} is not allowed: expected plain JSON data", line, path)
            open_nodes.add(id(node))
            values, levels = 1, 0
            try:
                if isinstance(node, yaml.ScalarNode):
                    self._check_scalar(node)
                    children = []
                elif isinstance(node, yaml.SequenceNode):
                    children = [(child, [*path, i]) for i, child in enumerate(node.value)]
                else:
                    children = self._mapping_children(node, path)
                for child, child_path in children:
                    child_values, child_levels = visit(child, child_path, depth + 1)
                    values += child_values
                    levels = max(levels, child_levels)
                    if values > self.max_values:
                        raise _Refused(f"more than {self.max_values} values once its aliases are expanded", line, path)
            except _Refused as exc:
                if exc.line is None:
                    exc.line, exc.field = line, path
                raise
            finally:
                open_nodes.discard(id(node))
            measured[id(node)] = (values, levels + 1)
            return values, levels + 1

        visit(root, [], 1)

    def _mapping_children(self, node, path: list) -> list:
        children, seen = [], {}
        for key_node, value_node in node.value:
            if key_node.tag == _YAML + "merge":
                children.append((value_node, path))
                continue
            line = key_node.start_mark.line + 1
            if not isinstance(key_node, yaml.ScalarNode):
                raise _Refused("a list or mapping as a key is not allowed: keys are strings", line, path)
            if key_node.tag != _YAML + "str":
                raise _Refused(f"key {short(key_node.value, 40)} is not a string: quote it", line, path)
            key = key_node.value
            try:
                _check_text(key)
            except _Refused as exc:
                raise _Refused(exc.message, line, path) from None
            if key in seen:
                raise _Refused(f"duplicate key {short(key, 40)} (first on line {seen[key]})", line, path)
            seen[key] = line
            children.append((value_node, [*path, key]))
        return children

    def _check_scalar(self, node) -> None:
        try:
            if node.tag == _YAML + "int":
                _check_int_text(node.value)
                _check_int(self.construct_yaml_int(node), node.value)
            elif node.tag == _YAML + "float":
                _check_float(self.construct_yaml_float(node), node.value)
            elif node.tag == _YAML + "bool":
                self.construct_yaml_bool(node)
            else:
                _check_text(node.value)
        except (ValueError, KeyError):  # an explicit tag on a value that is not one: !!int abc
            raise _Refused(f"{short(node.value, 40)} is not a valid {node.tag.removeprefix(_YAML)}") from None

    def construct_undecoded_timestamp(self, node):
        # JSON has no dates: an unquoted date stays the text it was written as.
        return self.construct_scalar(node)


_Loader.add_constructor(_YAML + "timestamp", _Loader.construct_undecoded_timestamp)


class _Marker:
    """What a JSON hook returns in place of a value it refuses; found, with its field, by the walk."""

    def __init__(self, message: str):
        self.message = message


def _json_pairs(pairs):
    seen = set()
    for key, _ in pairs:
        if key in seen:
            return _Marker(f"duplicate key {short(key, 40)}")
        seen.add(key)
    return dict(pairs)


def _json_int(text: str):
    try:
        _check_int_text(text)
        number = int(text)
        _check_int(number, text)
    except _Refused as exc:
        return _Marker(exc.message)
    return number


def _json_float(text: str):
    try:
        number = float(text)
        _check_float(number, text)
    except _Refused as exc:
        return _Marker(exc.message)
    return number


def _json_constant(text: str):
    return _Marker(f"{text} is not a finite number (NaN and infinities are not allowed)")


def _load_json(text: str, max_values: int) -> Any:
    try:
        document = json.loads(text, object_pairs_hook=_json_pairs, parse_int=_json_int,
                              parse_float=_json_float, parse_constant=_json_constant)
    except RecursionError:
        raise _Refused(f"nested more than {MAX_DEPTH} levels deep") from None
    count = 0

    def walk(value: Any, path: list, depth: int) -> None:
        nonlocal count
        count += 1
        if count > max_values:
            raise _Refused(f"more than {max_values} values", field=path)
        if depth > MAX_DEPTH:
            raise _Refused(f"nested more than {MAX_DEPTH} levels deep", field=path)
        if isinstance(value, _Marker):
            raise _Refused(value.message, field=path)
        try:
            if isinstance(value, str):
                _check_text(value)
            elif isinstance(value, dict):
                for key in value:
                    _check_text(key)
        except _Refused as exc:
            raise _Refused(exc.message, field=path) from None
        if isinstance(value, dict):
            for key, item in value.items():
                walk(item, [*path, key], depth + 1)
        elif isinstance(value, list):
            for i, item in enumerate(value):
                walk(item, [*path, i], depth + 1)

    walk(document, [], 1)
    return document


def _load_yaml(text: str, max_values: int) -> Any:
    loader = _Loader(text, max_values)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def _read(path: Path, max_bytes: int) -> bytes:
    """The file's bytes, its size checked before reading; a fifo or device is refused, not waited on."""
    import os
    import stat

    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    with os.fdopen(fd, "rb") as handle:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise _Refused("not a regular file")
        if st.st_size > max_bytes:
            raise _Refused(f"{st.st_size} bytes, more than the limit of {max_bytes} bytes; not read")
        os.set_blocking(fd, True)
        data = handle.read(max_bytes + 1)
    if len(data) > max_bytes:  # it grew after the check
        raise _Refused(f"more than the limit of {max_bytes} bytes; not read")
    return data


def load_document(path: str | Path, max_bytes: int = MAX_DOCUMENT_BYTES,
                  max_values: int = MAX_DOCUMENT_VALUES) -> Any:
    """Read YAML or JSON data, bounded (see above); every refusal names the file, and line and field when known."""
    path = Path(path)
    try:
        text = _read(path, max_bytes).decode("utf-8")
        if path.suffix == ".json":
            return _load_json(text, max_values)
        return _load_yaml(text, max_values)
    except FileNotFoundError:
        raise SpecError([(str(path), "", "file not found")]) from None
    except _Refused as exc:
        raise SpecError([(str(path), exc.where(), exc.message)]) from None
    except UnicodeDecodeError as exc:
        raise SpecError([(str(path), "", f"cannot read: not UTF-8 text (byte {exc.start})")]) from None
    except OSError as exc:
        raise SpecError([(str(path), "", f"cannot read: {exc.strerror or exc}")]) from None
    except json.JSONDecodeError as exc:
        raise SpecError([(str(path), f"line {exc.lineno} column {exc.colno}", f"malformed JSON: {exc.msg}")]) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1} column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise SpecError([(str(path), where, f"malformed YAML: {clip(problem)}")]) from None
