"""Reinterpretation requests: pure data, checked against the analysis's own parameters.

A request gives values for the parameters the analysis declares (typed, with
defaults). Files are paths relative to the request file; they may not be
absolute or leave the request's folder, and are copied into the run folder's
``inputs/`` so a run never reads outside its own folder. Nothing in a request
is ever executed or passed to a shell.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from jsonschema import Draft202012Validator

from recast import spec
from recast.digest import digest, sha256_file
from recast.errors import RequestError, SpecError
from recast.model import Analysis, Parameter
from recast.validate import inside

_JSON_TYPES = {"string": "string", "number": "number", "integer": "integer", "boolean": "boolean",
               "file": "string", "list": "array", "object": "object"}
_EXTRA = ("minimum", "maximum", "exclusiveMinimum", "pattern", "enum", "minItems", "maxItems")


@dataclass(frozen=True)
class Request:
    analysis_id: str
    source: Path | None
    parameters: dict[str, Any]  # as given, with defaults filled in; files as given (relative)
    files: dict[str, Path]  # relative path as given -> absolute source path
    digest: str


def json_schema(param: Parameter) -> dict:
    """The JSON Schema of one recast parameter (used to check request values)."""
    schema: dict[str, Any] = {"type": _JSON_TYPES[param.type]}
    if param.type == "file":
        schema["minLength"] = 1
    if param.items is not None:
        schema["items"] = json_schema(param.items)
    if param.type == "object":
        schema["properties"] = {k: json_schema(v) for k, v in param.properties.items()}
        schema["required"] = list(param.required)
        schema["additionalProperties"] = False
    schema.update({k: v for k, v in param.schema.items() if k in _EXTRA})
    return schema


def parameters_schema(parameters: dict[str, Parameter]) -> dict:
    return {
        "type": "object",
        "properties": {k: json_schema(p) for k, p in parameters.items()},
        "required": [k for k, p in parameters.items() if not p.has_default],
        "additionalProperties": False,
    }


def file_values(param: Parameter, value: Any, where: str) -> Iterator[tuple[str, Parameter, str]]:
    if param.type == "file":
        yield where, param, value
    elif param.type == "list" and param.items is not None:
        for i, item in enumerate(value):
            yield from file_values(param.items, item, f"{where}[{i}]")
    elif param.type == "object":
        for k, p in param.properties.items():
            if k in value:
                yield from file_values(p, value[k], f"{where}.{k}")


def check(analysis: Analysis, document: Any, source: Path | None, base: Path) -> Request:
    """Validate a request document; raise RequestError naming every bad field."""
    where = str(source or "<request>")
    try:
        spec.validate_document(document, "request", where)
    except SpecError as exc:
        raise RequestError(exc.problems) from None
    problems = []
    if document.get("analysis") not in (None, analysis.id):
        problems.append((where, "analysis", f"this request is for {document['analysis']!r}, not {analysis.id!r}"))
    given = document["parameters"]
    validator = Draft202012Validator(parameters_schema(analysis.request_parameters))
    for error in sorted(validator.iter_errors(given), key=lambda e: list(map(str, e.absolute_path))):
        problems.append((where, spec.field_path(["parameters", *error.absolute_path]), spec.explain(error)[1]))
    if problems:
        raise RequestError(problems)

    values = {k: given.get(k, p.default) for k, p in analysis.request_parameters.items() if k in given or p.has_default}
    files: dict[str, Path] = {}
    for name, param in analysis.request_parameters.items():
        if name not in values:
            continue
        for field, fparam, relative in file_values(param, values[name], f"parameters.{name}"):
            if "\0" in relative or Path(relative).is_absolute():
                problems.append((where, field, f"{relative!r}: expected a path relative to the request's folder"))
                continue
            target = inside(base, relative)
            if target is None:
                problems.append((where, field, f"{relative!r} leaves the request's folder {base}"))
            elif not target.is_file():
                problems.append((where, field, f"file {relative!r} not found in {base}"))
            elif fparam.schema.get("suffixes") and not any(relative.endswith(s) for s in fparam.schema["suffixes"]):
                problems.append((where, field, f"{relative!r}: expected a file ending in {' or '.join(fparam.schema['suffixes'])}"))
            else:
                files[os.path.normpath(relative)] = target
    if problems:
        raise RequestError(problems)
    request_digest = digest({"analysis": analysis.id, "parameters": values,
                             "files": {k: sha256_file(p) for k, p in sorted(files.items())}})
    return Request(analysis.id, source, values, files, request_digest)


def load(analysis: Analysis, path: str | Path) -> Request:
    path = Path(path).resolve()
    try:
        document = spec.load_document(path)
    except SpecError as exc:
        raise RequestError(exc.problems) from None
    return check(analysis, document, path, path.parent)


def stage_inputs(request: Request, run_dir: Path) -> dict[str, Path]:
    """Copy the request's files into ``run_dir/inputs``; unchanged files are left alone
    (same content, same modification time) so that a re-run does no work."""
    staged = {}
    for relative, source in request.files.items():
        target = run_dir / "inputs" / relative
        if not (target.is_file() and sha256_file(target) == sha256_file(source)):
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)
        staged[relative] = target
    return staged


def resolved_parameters(request: Request, staged: dict[str, Path], analysis: Analysis) -> dict[str, Any]:
    """The request's values with every file replaced by its absolute path in the run folder."""

    def resolve(param: Parameter, value: Any) -> Any:
        if param.type == "file":
            return str(staged[os.path.normpath(value)])
        if param.type == "list" and param.items is not None:
            return [resolve(param.items, v) for v in value]
        if param.type == "object":
            return {k: resolve(param.properties[k], v) if k in param.properties else v for k, v in value.items()}
        return value

    return {k: resolve(analysis.request_parameters[k], v) for k, v in request.parameters.items()}
