"""Reinterpretation requests: pure data, checked against the analysis's own parameters.

A request gives values for the parameters the analysis declares (typed, with
defaults). Files are paths relative to the request file: never absolute, no
``..``, through no symbolic link, each a regular file. They are read without
following links and copied into the run folder's ``inputs/`` under the path
that was checked, so a run never reads outside its own folder and a request
never writes outside it. Nothing in a request is ever executed or passed to a
shell.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Iterator

from jsonschema import Draft202012Validator

from recast import files as files_mod
from recast import spec
from recast.digest import digest
from recast.errors import RecastError, RequestError, SpecError
from recast.model import Analysis, Parameter

_JSON_TYPES = {"string": "string", "number": "number", "integer": "integer", "boolean": "boolean",
               "file": "string", "list": "array", "object": "object"}
_EXTRA = ("minimum", "maximum", "exclusiveMinimum", "pattern", "enum", "minItems", "maxItems")

# A request for 200 signal points is about 30 KB and 1,500 values: these bounds
# leave ample room and keep a stranger's request to about a second of parsing.
MAX_BYTES = 2**20
MAX_VALUES = 50_000


@dataclass(frozen=True)
class Request:
    analysis_id: str
    source: Path | None
    parameters: dict[str, Any]  # as given, with defaults filled in; files as given (relative)
    files: dict[str, Path]  # checked relative path (a/b.txt) -> absolute source path
    digest: str
    base: Path | None = None  # the folder the files are relative to
    sha256: dict[str, str] = field(default_factory=dict)  # checked relative path -> sha256 when checked


def json_schema(param: Parameter) -> dict:
    """The JSON Schema of one recast parameter (used to check request values)."""
    schema: dict[str, Any] = {"type": _JSON_TYPES[param.type]}
    if param.type == "file":
        schema["minLength"] = 1
    # Keywords are checked in order: a list far over its maxItems is reported before its items are.
    schema.update({k: v for k, v in param.schema.items() if k in _EXTRA})
    if param.items is not None:
        schema["items"] = json_schema(param.items)
    if param.type == "object":
        schema["properties"] = {k: json_schema(v) for k, v in param.properties.items()}
        schema["required"] = list(param.required)
        schema["additionalProperties"] = False
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


def checked_path(relative: Any) -> str:
    """The canonical form (``a/b.txt``) of a request's relative file path; UnsafePath if it is not one."""
    if not isinstance(relative, str):
        raise files_mod.UnsafePath(f"{spec.short(relative)}: expected a path")
    return "/".join(files_mod.relative_parts(relative, "file"))


def _file_problem(base: Path, relative: str, fparam: Parameter) -> str | None:
    """Why ``relative`` is not a file this request may give, or None. Links are looked at, never followed."""
    shown = spec.short(relative)
    pure = PurePosixPath(relative)
    if "\0" in relative or pure.is_absolute() or relative.startswith("\\"):
        return f"{shown}: expected a path relative to the request's folder, not an absolute one"
    if ".." in pure.parts:
        return f"{shown}: '..' is not allowed: a request's files stay inside its folder {base}"
    try:
        parts = files_mod.relative_parts(relative, "file")
    except files_mod.UnsafePath:
        return f"{shown}: expected a path relative to the request's folder"
    current = base
    for i, part in enumerate(parts):
        current = current / part
        try:
            st = os.lstat(current)
        except (FileNotFoundError, NotADirectoryError):
            return f"file {shown} not found in {base}"
        except OSError as exc:
            return f"{shown}: cannot be read ({exc.strerror})"
        if stat.S_ISLNK(st.st_mode):
            return (f"{shown}: {'/'.join(parts[:i + 1])} is a symbolic link; "
                    "a request's files and folders may not be links")
        if i < len(parts) - 1 and not stat.S_ISDIR(st.st_mode):
            return f"file {shown} not found in {base}"
    if stat.S_ISDIR(st.st_mode):
        return f"{shown} is a folder: expected a file"
    if not stat.S_ISREG(st.st_mode):
        return f"{shown} is not a regular file (a fifo, socket or device): expected a file"
    suffixes = fparam.schema.get("suffixes")
    if suffixes and not any(relative.endswith(s) for s in suffixes):
        return f"{shown}: expected a file ending in {' or '.join(suffixes)}"
    return None


def check(analysis: Analysis, document: Any, source: Path | None, base: Path) -> Request:
    """Validate a request document; raise RequestError naming every bad field."""
    where = str(source or "<request>")
    try:
        spec.validate_document(document, "request", where)
    except SpecError as exc:
        raise RequestError(exc.problems) from None
    problems = []
    if document.get("analysis") not in (None, analysis.id):
        problems.append((where, "analysis", f"this request is for {spec.short(document['analysis'])}, "
                                            f"not {analysis.id!r}"))
    given = document["parameters"]
    validator = Draft202012Validator(parameters_schema(analysis.request_parameters))
    problems.extend(spec.first_errors(validator.iter_errors(given), where, prefix="parameters"))
    if problems:
        raise RequestError(problems)

    values = {k: given.get(k, p.default) for k, p in analysis.request_parameters.items() if k in given or p.has_default}
    base = Path(base)
    files: dict[str, Path] = {}
    sums: dict[str, str] = {}
    given_files = (found for name, param in analysis.request_parameters.items() if name in values
                   for found in file_values(param, values[name], f"parameters.{name}"))
    for field_name, fparam, relative in given_files:
        problem = _file_problem(base, relative, fparam)
        if problem is None:
            key = checked_path(relative)
            try:
                # Read as staging reads: no link followed, a regular file only (it may have changed since lstat).
                sums[key] = sums.get(key) or files_mod.sha256(base, key)
            except (OSError, files_mod.UnsafePath):
                problem = f"{spec.short(relative)}: cannot be read as a regular file inside {base}"
            else:
                files[key] = base / key
        if problem is not None:
            problems.append((where, field_name, problem))
            if len(problems) >= spec.MAX_PROBLEMS:
                break
    if problems:
        raise RequestError(problems)
    request_digest = digest({"analysis": analysis.id, "parameters": values, "files": dict(sorted(sums.items()))})
    return Request(analysis.id, source, values, files, request_digest, base=base, sha256=sums)


def load(analysis: Analysis, path: str | Path) -> Request:
    path = Path(path).resolve()
    try:
        document = spec.load_document(path, max_bytes=MAX_BYTES, max_values=MAX_VALUES)
    except SpecError as exc:
        raise RequestError(exc.problems) from None
    return check(analysis, document, path, path.parent)


_NAME_LENGTH = 64


def run_name(path: str | Path | None, request_digest: str) -> str:
    """The default run folder's name for a request read from ``path``: one safe path component.

    The file's name without its .yaml/.yml/.json suffix, other characters than
    ``A-Za-z0-9._+-`` replaced by ``_``; a name that had to be changed gets a
    short hash of the original, so that two requests never share a run folder
    because their names read the same once replaced. Never empty, ``.``,
    ``..`` or hidden. A name with nothing usable left (``.yaml``, ``日本.yaml``)
    gives ``request-`` and a hash of the name, so that re-running the edited
    file stays incremental; a request without a file (``path`` None),
    ``request-`` and the request's digest.
    """
    if path is None:
        return f"request-{request_digest.removeprefix('sha256:')[:12]}"
    name = Path(path).name
    for suffix in (".yaml", ".yml", ".json"):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
            break
    name_hash = hashlib.sha256(name.encode("utf-8", "surrogateescape")).hexdigest()
    safe = re.sub(r"[^A-Za-z0-9._+-]", "_", name).lstrip(".")[:_NAME_LENGTH]
    if not safe.strip("._-+"):
        return f"request-{name_hash[:12]}"
    return safe if safe == name else f"{safe}-{name_hash[:8]}"


_FOLDER = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _open_folders(run_dir: Path, parts: tuple[str, ...]) -> int:
    """An fd of ``run_dir/parts...``, each folder made if missing and none a link: a path nothing can redirect."""
    fd = os.open(run_dir, _FOLDER)
    try:
        for i, part in enumerate(parts):
            try:
                os.mkdir(part, 0o755, dir_fd=fd)
            except FileExistsError:
                pass
            try:
                child = os.open(part, _FOLDER, dir_fd=fd)
            except OSError:
                raise files_mod.UnsafePath(f"{run_dir.joinpath(*parts[:i + 1])} is a symbolic link or not a folder: "
                                           "refusing to stage the request's files through it") from None
            os.close(fd)
            fd = child
    except BaseException:
        os.close(fd)
        raise
    return fd


def _sha256_at(folder: int, name: str) -> str | None:
    """sha256 of the regular file ``name`` in ``folder``; None if missing, a link, or not a regular file."""
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=folder)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        h = hashlib.sha256()
        for block in iter(lambda: handle.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _source_folder(request: Request, relative: str) -> Path:
    if request.base is not None:
        return request.base
    # A Request made without its folder: each file is folder/relative.
    return request.files[relative].parents[len(files_mod.relative_parts(relative)) - 1]


def _copy_in(request: Request, relative: str, expected: str, folder: int, name: str) -> None:
    """Copy one request file into ``folder`` (an fd) as ``name``: read with no link followed, written to
    a new file renamed over the old one, so that a link left there is replaced, never written through."""
    base = _source_folder(request, relative)
    temporary = f".{name}.{os.getpid()}.tmp"
    h = hashlib.sha256()
    with files_mod.open_regular(base, relative) as source:
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644,
                     dir_fd=folder)
        try:
            with os.fdopen(fd, "wb") as out:
                for block in iter(lambda: source.read(1 << 20), b""):
                    h.update(block)
                    out.write(block)
            if h.hexdigest() != expected:
                raise RecastError(f"request file {relative!r} in {base} changed after the request was "
                                  "checked: run again")
            os.replace(temporary, name, src_dir_fd=folder, dst_dir_fd=folder)
        except BaseException:
            try:
                os.unlink(temporary, dir_fd=folder)
            except FileNotFoundError:
                pass
            raise


def stage_inputs(request: Request, run_dir: Path) -> dict[str, Path]:
    """Copy the request's files into ``run_dir/inputs``; unchanged files are left alone
    (same content, same modification time) so that a re-run does no work."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)  # the user's choice of folder; what recast makes inside is checked
    staged = {}
    for relative in request.files:
        parts = ("inputs", *files_mod.relative_parts(relative, "request file"))
        try:
            folder = _open_folders(run_dir, parts[:-1])
        except OSError as exc:
            raise RecastError(f"cannot stage request file {relative!r} in {run_dir / 'inputs'}: "
                              f"{exc.strerror or exc}") from None
        try:
            # The path jobs are given: the one just opened without following links, so none is on it.
            target = files_mod.confined(run_dir, "/".join(parts), "request file")
            expected = request.sha256.get(relative) or files_mod.sha256(_source_folder(request, relative), relative)
            if _sha256_at(folder, parts[-1]) != expected:
                _copy_in(request, relative, expected, folder, parts[-1])
        except OSError as exc:
            raise RecastError(f"cannot stage request file {relative!r} in {run_dir / 'inputs'}: "
                              f"{exc.strerror or exc}") from None
        finally:
            os.close(folder)
        staged[relative] = target
    return staged


def resolved_parameters(request: Request, staged: dict[str, Path], analysis: Analysis) -> dict[str, Any]:
    """The request's values with every file replaced by its absolute path in the run folder."""

    def resolve(param: Parameter, value: Any) -> Any:
        if param.type == "file":
            return str(staged[checked_path(value)])
        if param.type == "list" and param.items is not None:
            return [resolve(param.items, v) for v in value]
        if param.type == "object":
            return {k: resolve(param.properties[k], v) if k in param.properties else v for k, v in value.items()}
        return value

    return {k: resolve(analysis.request_parameters[k], v) for k, v in request.parameters.items()}
