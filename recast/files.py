"""Files in folders recast does not trust: containment, no-follow reads, atomic writes.

A request folder is a stranger's; a job's output folder is written by analyst
code running on a stranger's inputs. Either may hold symbolic links, hard
links or special files where recast expects a regular file, and a path may
climb out with ``..``. Every read and write recast makes in such a folder
goes through this module, which:

- resolves a relative path component by component from an open folder, with
  ``O_NOFOLLOW`` at every step, so that no link is ever followed (a link is
  an error, not a detour);
- accepts only regular files where a file is expected (no fifo, device, or
  socket, which could block or leak);
- writes recast's own records by creating a new file beside the target and
  renaming it over the target: a link left at the target is replaced, never
  followed.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import stat
import tempfile
from pathlib import Path, PurePosixPath
from typing import BinaryIO, Iterator

from recast.errors import RecastError


class UnsafePath(RecastError):
    """A path that would leave its folder, go through a link, or is not a regular file."""


def relative_parts(relative: str | os.PathLike, what: str = "path") -> tuple[str, ...]:
    """The components of a relative path, refusing absolute paths, ``..``, NUL and empty paths."""
    text = os.fspath(relative)
    if not text or "\0" in text:
        raise UnsafePath(f"{what} {text!r}: expected a non-empty relative path")
    pure = PurePosixPath(text)
    if pure.is_absolute() or text.startswith("\\"):
        raise UnsafePath(f"{what} {text!r}: expected a relative path, not an absolute one")
    parts = tuple(p for p in pure.parts if p != ".")
    if ".." in parts:
        raise UnsafePath(f"{what} {text!r}: '..' is not allowed (it would leave its folder)")
    if not parts:
        raise UnsafePath(f"{what} {text!r}: expected a file name")
    return parts


def relative_to_root(root: Path, path: str | os.PathLike) -> tuple[str, ...]:
    """The parts of ``path`` (absolute, or relative to ``root``) below ``root``; textual, no links resolved."""
    path = Path(path)
    if path.is_absolute():
        try:
            path = path.relative_to(root)
        except ValueError:
            raise UnsafePath(f"{path} is not inside {root}") from None
    return relative_parts(path)


@contextlib.contextmanager
def _walk_to_parent(root: Path, parts: tuple[str, ...]) -> Iterator[int]:
    """An fd of the folder holding ``parts[-1]``, reached from ``root`` without following any link."""
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(root, flags)
    try:
        for i, part in enumerate(parts[:-1]):
            try:
                child = os.open(part, flags, dir_fd=fd)
            except OSError as exc:
                where = "/".join(parts[: i + 1])
                raise UnsafePath(f"{root}/{where}: not a folder inside {root} ({_why(exc)})") from None
            os.close(fd)
            fd = child
        yield fd
    finally:
        os.close(fd)


def _why(exc: OSError) -> str:
    import errno

    if exc.errno in (errno.ELOOP, errno.ENOTDIR):
        return "a symbolic link or not a folder; links are not followed"
    return exc.strerror or str(exc)


def _open_last(root: Path, parts: tuple[str, ...], flags: int, what: str) -> int:
    """An fd of ``root/parts``, opened read-only with ``flags`` and no link followed on the way or at the end."""
    with _walk_to_parent(root, parts) as parent:
        try:
            return os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | flags, dir_fd=parent)
        except FileNotFoundError:
            raise
        except OSError as exc:
            raise UnsafePath(f"{root / '/'.join(parts)}: {what} ({_why(exc)})") from None


@contextlib.contextmanager
def open_regular(root: str | os.PathLike, path: str | os.PathLike, max_bytes: int | None = None) -> Iterator[BinaryIO]:
    """Open ``path`` (relative to ``root``, or absolute below it) for reading, refusing links and non-regular files."""
    root = Path(root)
    parts = relative_to_root(root, path)
    fd = _open_last(root, parts, os.O_NONBLOCK, "cannot be read as a regular file")
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise UnsafePath(f"{root / '/'.join(parts)}: not a regular file")
        if max_bytes is not None and st.st_size > max_bytes:
            raise UnsafePath(f"{root / '/'.join(parts)}: {st.st_size} bytes, more than the limit of {max_bytes}")
        os.set_blocking(fd, True)
        handle = os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
    with handle:
        yield handle


def read_bytes(root: str | os.PathLike, path: str | os.PathLike, max_bytes: int | None = None) -> bytes:
    with open_regular(root, path, max_bytes) as handle:
        data = handle.read() if max_bytes is None else handle.read(max_bytes + 1)
    if max_bytes is not None and len(data) > max_bytes:
        raise UnsafePath(f"{path}: more than the limit of {max_bytes} bytes")
    return data


def sha256(root: str | os.PathLike, path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open_regular(root, path) as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_regular(root: str | os.PathLike, path: str | os.PathLike) -> os.stat_result:
    """lstat-check ``path`` below ``root``: every component a real folder, the last a regular file."""
    with open_regular(root, path) as handle:
        return os.fstat(handle.fileno())


def check_mountable(root: str | os.PathLike, path: str | os.PathLike) -> os.stat_result:
    """``path`` below ``root`` is a regular file or a folder, reached through no link at any step.

    What a folder holds may be links: inside a container they resolve in the
    container's own view, never to the host's files. Only the mount's source
    itself must not be a link, because the engine would follow it.
    """
    root = Path(root)
    parts = relative_to_root(root, path)
    with _walk_to_parent(root, parts) as parent:
        st = os.stat(parts[-1], dir_fd=parent, follow_symlinks=False)
    if not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)):
        raise UnsafePath(f"{root / '/'.join(parts)}: a link, or neither a regular file nor a folder")
    return st


SNAKEMAKE_MARKER = ".snakemake_timestamp"


def tree(root: str | os.PathLike, path: str | os.PathLike, max_entries: int = 100_000) -> list[str]:
    """The regular files of the folder ``path`` below ``root`` (relative to it, sorted).

    The folder is reached through no link, and everything in it must be a
    folder or a regular file: a link (or a device, a fifo) anywhere inside is
    refused, as is a tree of more than ``max_entries`` entries. Snakemake's
    own marker at the top (``.snakemake_timestamp``, which it writes into a
    folder output after the job) is not part of the output.
    """
    root = Path(root)
    parts = relative_to_root(root, path)
    top = _open_last(root, parts, os.O_DIRECTORY, "not a folder")
    found, entries = [], 0
    try:
        for folder, dirs, names, fd in os.fwalk(".", dir_fd=top, follow_symlinks=False):
            for name in dirs + names:
                entries += 1
                if entries > max_entries:
                    raise UnsafePath(f"{root / '/'.join(parts)}: more than {max_entries} files and folders")
                st = os.stat(name, dir_fd=fd, follow_symlinks=False)
                relative = os.path.normpath(os.path.join(folder, name))
                if stat.S_ISREG(st.st_mode):
                    if relative != SNAKEMAKE_MARKER:
                        found.append(relative)
                elif not stat.S_ISDIR(st.st_mode):
                    raise UnsafePath(f"{root / '/'.join(parts)}/{relative}: a link, or neither a regular file nor "
                                     "a folder; links are not followed")
    finally:
        os.close(top)
    return sorted(found)


def tree_sha256(root: str | os.PathLike, path: str | os.PathLike) -> str:
    """One digest of a folder: of each regular file's relative path and sha256, in order (see :func:`tree`)."""
    folder = Path(root) / Path(*relative_to_root(Path(root), path))
    digest = hashlib.sha256()
    for name in tree(root, path):
        digest.update(f"{sha256(folder, name)}  {name}\n".encode())
    return digest.hexdigest()


def confined(root: str | os.PathLike, relative: str | os.PathLike, what: str = "path") -> Path:
    """``root/relative`` as a path that is textually inside ``root`` and goes through no link.

    The file need not exist; the folders on the way that do exist must be real folders.
    """
    root = Path(root)
    parts = relative_parts(relative, what)
    current = root
    for part in parts[:-1]:
        current = current / part
        try:
            st = os.lstat(current)
        except FileNotFoundError:
            break
        if not stat.S_ISDIR(st.st_mode):
            raise UnsafePath(f"{what} {os.fspath(relative)!r}: {current} is a link or not a folder")
    return root.joinpath(*parts)


def atomic_write(path: str | os.PathLike, data: str | bytes, mode: int = 0o644) -> Path:
    """Write ``data`` to ``path`` through a new file renamed over it: a link at ``path`` is replaced, not followed.

    The folder must exist and must not itself be a link.
    """
    path = Path(path)
    parent = path.parent
    if os.path.islink(parent):
        raise UnsafePath(f"{parent} is a symbolic link; refusing to write {path.name} there")
    if isinstance(data, str):
        data = data.encode()
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=parent)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path
