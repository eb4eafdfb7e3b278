"""A submitted request: streamed to disk under limits, checked like the CLI checks it, stored by content.

Everything in a submission is a stranger's. The multipart body is parsed as it
arrives (never held in memory, never spooled elsewhere): each file is written
into a fresh folder under ``DATA/uploads/`` at a sanitised relative name
(no absolute paths, no ``..``, no control characters, no links: files are
created with ``O_EXCL | O_NOFOLLOW``), counting bytes against the limits of
:class:`recast.service.config.Limits`. Nothing is ever decompressed; a
compressed body (``Content-Encoding``) is refused, and so is compressed
content in a file whose name does not say it is compressed.

The request document is read with :func:`recast.spec.load_document` and
bounded (values counted with YAML aliases expanded, nesting depth, number
sizes, JSON types only) before :func:`recast.request.check` checks it against
the analysis on the uploaded files' folder. Every problem is collected and
the submission refused with all of them; only a good submission's files are
moved into the content-addressed store ``DATA/files/ab/abcdef...``.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import secrets
import shutil
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, AsyncIterator

from recast import request as request_mod
from recast import spec
from recast.errors import RecastError, RequestError, SpecError
from recast.files import UnsafePath, relative_parts
from recast.model import Analysis
from recast.service.config import Limits, ServiceConfig

DOCUMENT_FIELD = "request"
FILE_FIELD = "file"
MAX_TEXT_FIELD = 64 * 1024
MAX_TEXT_FIELDS = 200
MAX_DEPTH = 48
# Magic numbers of compressed formats, and the name endings that admit to them.
_COMPRESSED = {b"\x1f\x8b": "gzip", b"BZh": "bzip2", b"\xfd7zXZ\x00": "xz", b"(\xb5/\xfd": "zstd",
               b"PK\x03\x04": "zip"}
_COMPRESSED_SUFFIXES = (".gz", ".tgz", ".gzip", ".bz2", ".xz", ".zst", ".zip")


class UploadRefused(RecastError):
    """A submission refused before its request could be checked; ``status`` is the HTTP status."""

    def __init__(self, status: int, message: str):
        self.status = status
        super().__init__(message)


@dataclass
class UploadedFile:
    name: str  # the sanitised relative path
    path: Path  # where it is, under the upload's folder
    sha256: str
    size: int


@dataclass
class Upload:
    root: Path  # DATA/uploads/RANDOM: deleted by discard()
    document: bytes | None = None
    document_name: str = ""
    fields: dict[str, list[str]] = field(default_factory=dict)
    files: dict[str, UploadedFile] = field(default_factory=dict)

    @property
    def files_dir(self) -> Path:
        return self.root / "files"

    def field(self, name: str, default: str = "") -> str:
        values = self.fields.get(name)
        return values[0] if values else default

    def discard(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


# -- names ----------------------------------------------------------------------------------


def safe_name(raw: str, limits: Limits) -> str:
    """A client's file name as a relative path we may create, or UploadRefused (422) saying why."""
    if not raw:
        raise UploadRefused(422, "an uploaded file has no name")
    if len(raw) > limits.name_chars:
        raise UploadRefused(422, f"file name {raw[:40]!r}...: longer than {limits.name_chars} characters")
    if "\\" in raw or any(unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") for c in raw):
        raise UploadRefused(422, f"file name {raw!r}: control characters and backslashes are not allowed")
    try:
        parts = relative_parts(raw, "file name")
    except UnsafePath as exc:
        raise UploadRefused(422, str(exc)) from None
    if len(parts) > 16 or any(len(p.encode()) > 255 for p in parts):
        raise UploadRefused(422, f"file name {raw!r}: too deep, or a part longer than 255 bytes")
    return "/".join(parts)


def _create(root: Path, name: str) -> int:
    """Create ``root/name`` exclusively, making its folders; no existing link or file is ever followed."""
    parts = name.split("/")
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(root, flags)
    try:
        for part in parts[:-1]:
            with contextlib.suppress(FileExistsError):
                os.mkdir(part, 0o700, dir_fd=fd)
            try:
                child = os.open(part, flags, dir_fd=fd)
            except OSError:
                raise UploadRefused(422, f"file name {name!r}: {part!r} is also a file of this upload") from None
            os.close(fd)
            fd = child
        try:
            return os.open(parts[-1], os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
                           dir_fd=fd)
        except FileExistsError:
            raise UploadRefused(422, f"file name {name!r}: given twice (or also a folder of this upload)") from None
        except IsADirectoryError:
            raise UploadRefused(422, f"file name {name!r}: also a folder of this upload") from None
    finally:
        os.close(fd)


# -- the multipart stream ---------------------------------------------------------------------


class _Receiver:
    """python-multipart callbacks: each part goes to a file or a bounded text field as it arrives."""

    def __init__(self, upload: Upload, limits: Limits):
        self.upload, self.limits = upload, limits
        self.total = 0
        self.file_total = 0
        self.error: UploadRefused | None = None
        self._header_field = b""
        self._header_value = b""
        self._headers: dict[bytes, bytes] = {}
        self._reset_part()

    def _reset_part(self):
        self._kind = None  # "file" | "document" | "text"
        self._name = ""
        self._fd: int | None = None
        self._hash = None
        self._size = 0
        self._text = bytearray()
        self._head = b""
        self._path: Path | None = None

    def fail(self, status: int, message: str):
        if self.error is None:
            self.error = UploadRefused(status, message)
        raise self.error

    # callbacks
    def on_part_begin(self):
        self._headers = {}
        self._reset_part()

    def on_header_field(self, data, start, end):
        self._header_field += data[start:end]

    def on_header_value(self, data, start, end):
        self._header_value += data[start:end]

    def on_header_end(self):
        self._headers[self._header_field.strip().lower()] = self._header_value.strip()
        self._header_field = self._header_value = b""

    def on_headers_finished(self):
        from python_multipart.multipart import parse_options_header

        disposition, options = parse_options_header(self._headers.get(b"content-disposition", b""))
        if disposition != b"form-data":
            self.fail(422, "every part of the form must be form-data")
        try:
            field_name = options.get(b"name", b"").decode("utf-8")
            filename = options.get(b"filename")
            filename = filename.decode("utf-8") if filename is not None else None
        except UnicodeDecodeError:
            self.fail(422, "a form field or file name is not UTF-8")
        if field_name in (FILE_FIELD, DOCUMENT_FIELD) and filename == "":
            self._kind = "empty"  # a browser's file input left empty: a part with no name and no content
        elif field_name == FILE_FIELD or (filename is not None and field_name != DOCUMENT_FIELD):
            if len(self.upload.files) >= self.limits.files:
                self.fail(413, f"more than {self.limits.files} files")
            if not filename:
                self.fail(422, "an uploaded file has no name")
            self._kind = "file"
            self._name = safe_name(filename, self.limits)
            if self._name in self.upload.files:
                self.fail(422, f"file name {self._name!r}: given twice")
            self._path = self.upload.files_dir / self._name
            self._fd = _create(self.upload.files_dir, self._name)
            self._hash = hashlib.sha256()
        elif field_name == DOCUMENT_FIELD:
            self._kind = "document"
            self.upload.document_name = filename or ""
        else:
            if sum(len(v) for v in self.upload.fields.values()) >= MAX_TEXT_FIELDS:
                self.fail(413, f"more than {MAX_TEXT_FIELDS} form fields")
            self._kind = "text"
            self._name = field_name

    def on_part_data(self, data, start, end):
        chunk = data[start:end]
        self.total += len(chunk)
        if self.total > self.limits.total_bytes + self.limits.document_bytes:
            self.fail(413, f"the upload is larger than the limit of {self.limits.total_bytes} bytes")
        if self._kind == "file":
            self._size += len(chunk)
            self.file_total += len(chunk)
            if self.file_total > self.limits.total_bytes:
                self.fail(413, f"the files are larger than the limit of {self.limits.total_bytes} bytes in all")
            if self._size > self.limits.file_bytes:
                self.fail(413, f"file {self._name!r} is larger than the limit of {self.limits.file_bytes} bytes")
            if len(self._head) < 8:
                self._head += chunk[:8]
            self._hash.update(chunk)
            view = memoryview(chunk)
            while view:
                view = view[os.write(self._fd, view):]
        elif self._kind == "empty":
            if chunk:
                self.fail(422, "an uploaded file has no name")
        elif self._kind == "document":
            if len(self._text) + len(chunk) > self.limits.document_bytes:
                self.fail(413, f"the request document is larger than the limit of {self.limits.document_bytes} bytes")
            self._text += chunk
        elif self._kind == "text":
            if len(self._text) + len(chunk) > MAX_TEXT_FIELD:
                self.fail(413, f"form field {self._name!r} is larger than {MAX_TEXT_FIELD} bytes")
            self._text += chunk

    def on_part_end(self):
        if self._kind == "file":
            os.close(self._fd)
            self._fd = None
            self._check_compression()
            self.upload.files[self._name] = UploadedFile(self._name, self._path, self._hash.hexdigest(), self._size)
        elif self._kind == "document":
            if self.upload.document is not None:
                self.fail(422, "the request document is given twice")
            self.upload.document = bytes(self._text)
        elif self._kind == "text":
            try:
                value = self._text.decode("utf-8")
            except UnicodeDecodeError:
                self.fail(422, f"form field {self._name!r} is not UTF-8 text")
            self.upload.fields.setdefault(self._name, []).append(value)
        self._reset_part()

    def _check_compression(self):
        for magic, kind in _COMPRESSED.items():
            if self._head.startswith(magic) and not self._name.lower().endswith(_COMPRESSED_SUFFIXES):
                self.fail(422, f"file {self._name!r} holds {kind}-compressed data but its name does not say so "
                               "(nothing uploaded is ever decompressed by the service)")

    def close(self):
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


async def receive(headers, stream: AsyncIterator[bytes], config: ServiceConfig) -> Upload:
    """Parse a multipart/form-data body into a new upload folder; on any refusal, nothing is left behind."""
    from python_multipart.multipart import MultipartParseError, MultipartParser, parse_options_header

    limits = config.limits
    encoding = headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        raise UploadRefused(415, f"Content-Encoding {encoding!r} is not accepted: send the body uncompressed "
                                 "(the service never decompresses what it is sent)")
    content_type, options = parse_options_header(headers.get("content-type", ""))
    if content_type != b"multipart/form-data" or not options.get(b"boundary"):
        raise UploadRefused(415, "expected a multipart/form-data body")
    length = headers.get("content-length")
    if length is not None:
        if not length.isdigit():
            raise UploadRefused(400, "malformed Content-Length")
        if int(length) > limits.total_bytes + limits.document_bytes + 1024 * 1024:
            raise UploadRefused(413, f"the upload ({length} bytes) is larger than the limit of "
                                     f"{limits.total_bytes} bytes")
    config.uploads_dir.mkdir(parents=True, exist_ok=True)
    upload = Upload(root=config.uploads_dir / secrets.token_hex(12))
    upload.files_dir.mkdir(parents=True, mode=0o700)
    receiver = _Receiver(upload, limits)
    callbacks = {name: getattr(receiver, name) for name in (
        "on_part_begin", "on_part_data", "on_part_end", "on_header_field", "on_header_value", "on_header_end",
        "on_headers_finished")}
    parser = MultipartParser(options[b"boundary"], callbacks)
    try:
        async for chunk in stream:
            parser.write(chunk)
        parser.finalize()
        if receiver._kind is not None:
            raise UploadRefused(400, "the multipart body ended in the middle of a part")
    except UploadRefused:
        receiver.close()
        upload.discard()
        raise
    except (MultipartParseError, ValueError) as exc:
        receiver.close()
        upload.discard()
        raise UploadRefused(400, f"malformed multipart body: {exc}") from None
    except BaseException:
        receiver.close()
        upload.discard()
        raise
    return upload


# -- the request document -----------------------------------------------------------------------


def load_document(upload: Upload, limits: Limits) -> Any:
    """The request document, read by recast.spec's loader, then bounded (see :func:`bounded`)."""
    if upload.document is None:
        raise RequestError([("request", "", f"no request document: send it as the form field {DOCUMENT_FIELD!r}")])
    suffix = ".json" if upload.document_name.lower().endswith(".json") else ".yaml"
    path = upload.root / f"request{suffix}"
    path.write_bytes(upload.document)
    try:
        document = spec.load_document(path)
    except SpecError as exc:
        raise RequestError([("request", w, m) for _, w, m in exc.problems]) from None
    except (ValueError, RecursionError) as exc:
        # e.g. a 5000-digit integer (Python refuses to convert it) or nesting deeper than the parser goes
        raise RequestError([("request", "", f"cannot be read: {exc}")]) from None
    problems = bounded(document, limits)
    if problems:
        raise RequestError(problems)
    return document


def bounded(document: Any, limits: Limits) -> list[tuple[str, str, str]]:
    """Problems of a parsed document that is not plain, reasonably sized JSON data.

    Values are counted as visited, so a YAML alias bomb (a few lines that
    expand to billions of values) stops at ``limits.document_nodes``; a
    recursive alias stops at the depth limit.
    """
    problems: list[tuple[str, str, str]] = []
    budget = [limits.document_nodes]

    def visit(value: Any, path: list, depth: int) -> bool:
        budget[0] -= 1
        where = spec.field_path(path)
        if budget[0] < 0:
            problems.append(("request", "", f"more than {limits.document_nodes} values (counting YAML aliases "
                                            "expanded): refused"))
            return False
        if depth > MAX_DEPTH:
            problems.append(("request", where, f"nested deeper than {MAX_DEPTH} levels (or recursive)"))
            return False
        if isinstance(value, bool) or value is None:
            return True
        if isinstance(value, int):
            if abs(value) >= 2**63:
                problems.append(("request", where, "integer too large (at most 64 bits)"))
            return True
        if isinstance(value, float):
            if not math.isfinite(value):
                problems.append(("request", where, f"expected a finite number, found {value}"))
            return True
        if isinstance(value, str):
            if len(value) > MAX_TEXT_FIELD:
                problems.append(("request", where, f"text longer than {MAX_TEXT_FIELD} characters"))
            return True
        if isinstance(value, list):
            return all(visit(v, [*path, i], depth + 1) for i, v in enumerate(value))
        if isinstance(value, dict):
            for k, v in value.items():
                if not isinstance(k, str):
                    problems.append(("request", where, f"key {k!r}: expected text"))
                    continue
                if not visit(v, [*path, k], depth + 1):
                    return False
            return True
        problems.append(("request", where, f"expected JSON data (text, number, boolean, list, mapping), "
                                           f"found {type(value).__name__}"))
        return True

    visit(document, [], 0)
    return problems


def check(upload: Upload, analysis: Analysis, limits: Limits) -> tuple[dict, request_mod.Request]:
    """The checked request and the document to store, or RequestError naming every bad field."""
    document = load_document(upload, limits)
    base = upload.files_dir
    try:
        checked = request_mod.check(analysis, document, Path("request"), base)
    except RequestError as exc:
        # The upload's folder is the server's business: name it as the user knows it.
        raise RequestError([(f, w, m.replace(str(base), "the uploaded files")) for f, w, m in exc.problems]) from None
    used = set(checked.files)
    unused = sorted(set(upload.files) - used)
    if unused:
        raise RequestError([("request", "files", f"{name!r} is uploaded but the request does not refer to it")
                            for name in unused])
    stored = {"schema": spec.schema_name("request"), "analysis": analysis.id, "parameters": document["parameters"]}
    if isinstance(document.get("description"), str):
        stored["description"] = document["description"]
    return stored, checked


def store(upload: Upload, config: ServiceConfig) -> list[UploadedFile]:
    """Move a checked upload's files into the content-addressed store; return them."""
    stored = []
    for item in upload.files.values():
        target = content_path(config, item.sha256)
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.is_file():
            os.chmod(item.path, 0o400)
            os.replace(item.path, target)
        stored.append(item)
    return stored


def content_path(config: ServiceConfig, sha256: str) -> Path:
    if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
        raise RecastError(f"not a sha256: {sha256!r}")
    return config.files_dir / sha256[:2] / sha256


def materialise(config: ServiceConfig, folder: Path, files: list[tuple[str, str]]) -> None:
    """Recreate a request's folder of files, ``(name, sha256)`` each, from the store (checked as copied)."""
    from recast.digest import sha256_file

    for name, sha in files:
        target = folder / "/".join(relative_parts(name, "file name"))
        if target.is_file() and sha256_file(target) == sha:
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{secrets.token_hex(4)}.tmp")
        shutil.copyfile(content_path(config, sha), tmp)
        if sha256_file(tmp) != sha:
            tmp.unlink()
            raise RecastError(f"stored file {name} ({sha}) does not match its sha256: the store is damaged")
        os.replace(tmp, target)
