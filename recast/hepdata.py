"""``recast import hepdata``: a published likelihood archive (HEPData) as a likelihood-only catalog entry.

The archive is read defensively (it comes from the internet): members with
absolute paths or ``..``, links, devices, names with control characters or
backslashes, duplicate names, a file that is also a folder, oversized
members, too many members, an archive that expands past a total size (a
compression bomb, counted on the bytes actually written) and truncated
archives are refused with an error naming the archive and the member.
JSON nested too deeply is refused when read. Both layouts HEPData records
use are understood, in any number of regions:

- one ``patch.<name>.json`` JSON Patch per signal point beside a
  background-only workspace (``RegionA/BkgOnly.json`` ...);
- one pyhf ``patchset.json`` beside the workspace, whose digest is verified
  against it (``pyhf.patchset.PatchSet.verify``).

A URL is downloaded with ``requests``, streamed to disk with a progress bar
under a total deadline (a server that drips bytes cannot hold the import
forever); its sha256 is recorded (and checked when ``--sha256`` is given).

The entry written is ``<catalog>/<id>/analysis.yaml`` (schema
``recast/analysis/VERSION``, the newest, with a ``likelihood:`` block, see
``specs/VERSION/likelihood.schema.json``) beside the workspaces and patches,
copied with the archive's own relative layout. It is assembled in a hidden
folder of the catalog and renamed into place, so a failed import leaves the
catalog as it was.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tarfile
import tempfile
import time
import urllib.parse
import zlib
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import Any, Sequence

from recast.likelihood.errors import ArchiveError, LikelihoodError
from recast.likelihood.workspace import (
    SignalPoint,
    apply_patch,
    labelled_values,
    load_patch_file,
    load_patchset,
    point_values_from_name,
    read_json,
    validate_workspace_spec,
)

# The published archives (../shared/hepdata): SUSY-2018-31 has 654 members
# expanding to 36 MB, 1Lbb has 3 members expanding to 62 MB (its patchset.json
# alone is 57 MB). The limits leave room for much larger likelihoods while a
# 1 MB archive can no longer fill the disk or the inode table.
MAX_MEMBER_BYTES = 512 * 1024**2  # the largest published patchset we know is 57 MB
MAX_TOTAL_BYTES = 512 * 1024**2  # 8 times the largest real archive; gzip turns 1 MB of zeros into 1 GB
MAX_MEMBERS = 20_000  # 30 times the 654 members of SUSY-2018-31
MAX_DOWNLOAD_BYTES = 2 * 1024**3
DOWNLOAD_DEADLINE = 30 * 60.0  # seconds for a whole download: 2 GB at 1 MB/s
_ENTRY_ID = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


# --- the archive ----------------------------------------------------------------------------


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _member_problem(member: tarfile.TarInfo, max_member_bytes: int) -> str | None:
    name = member.name
    parts = PurePosixPath(name).parts
    if not name:
        return "has an empty name"
    # NUL, newline, escape ...: NUL makes open() fail, the others forge lines and colours in messages and terminals
    control = _CONTROL.search(name)
    if control:
        return f"has a control character ({control.group()!r}) in its name"
    if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name):
        return "has an absolute path"
    if ".." in parts or ".." in name.split("\\"):
        return "has '..' in its path (it would be written outside the extraction folder)"
    # a Windows path separator: one file here, a folder and a file when the entry is copied to Windows
    if "\\" in name:
        return "has a backslash in its name"
    if member.issym() or member.islnk():
        return f"is a {'symbolic' if member.issym() else 'hard'} link (to {member.linkname!r}); links are refused"
    if not (member.isfile() or member.isdir()):
        return "is not a regular file or folder (device, fifo, ...)"
    if member.isfile() and member.size > max_member_bytes:
        return f"is {member.size} bytes, more than the limit of {max_member_bytes} bytes"
    return None


class _Layout:
    """The tree the members describe, checked member by member before anything is written.

    tar lets a later member silently replace an earlier one (the same name
    twice) or turn a file into a folder (``x`` then ``x/y``): what would be
    extracted is then not what was checked, and writing it fails half-way.
    """

    def __init__(self) -> None:
        self.files: set[tuple[str, ...]] = set()
        self.folders: set[tuple[str, ...]] = set()  # named by a folder member or implied by a deeper member

    def add(self, member: tarfile.TarInfo) -> str | None:
        parts = PurePosixPath(member.name).parts  # "a/./b//c/" is ("a", "b", "c")
        if not parts:
            return None if member.isdir() else "has an empty name"  # "./" is the archive's root folder
        for depth in range(1, len(parts)):
            if parts[:depth] in self.files:
                return f"is inside {'/'.join(parts[:depth])!r}, which is a file in the archive"
        if member.isdir():
            if parts in self.files:
                return "is both a file and a folder in the archive"
        elif parts in self.files:
            return "appears twice in the archive"
        elif parts in self.folders:
            return "is both a folder and a file in the archive"
        for depth in range(1, len(parts)):
            self.folders.add(parts[:depth])
        (self.folders if member.isdir() else self.files).add(parts)
        return None


def _too_big(label: str, name: str, max_total_bytes: int, when: str) -> ArchiveError:
    return ArchiveError(
        f"{label}: member {name!r} takes the expanded archive past the limit of {max_total_bytes} bytes "
        f"(refused as a likely compression bomb; raise --max-total-mb for a larger likelihood); {when}"
    )


def safe_extract(
    archive: str | Path,
    destination: str | Path,
    max_member_bytes: int = MAX_MEMBER_BYTES,
    max_total_bytes: int = MAX_TOTAL_BYTES,
    max_members: int = MAX_MEMBERS,
    label: str | None = None,
) -> list[str]:
    """Extract a tar archive (gz, bz2, xz or plain) after checking every member; the regular files written.

    ``label`` names the archive in errors (a URL rather than the scratch file it was downloaded to).
    On an error nothing is left in ``destination`` if this call created it.
    """
    archive, destination = Path(archive), Path(destination)
    label = label or str(archive)
    try:
        tar = tarfile.open(archive, "r:*")
    except FileNotFoundError:
        raise ArchiveError(f"{label}: no such file; expected a likelihood archive (.tar.gz)") from None
    except (tarfile.ReadError, EOFError, zlib.error, OSError) as err:
        raise ArchiveError(f"{label}: not a readable tar archive ({err}); expected a .tar.gz as HEPData serves") from None
    created = not destination.exists()
    try:
        with tar:
            members = _checked_members(tar, label, max_member_bytes, max_total_bytes, max_members)
            return _write_members(tar, members, destination, label, max_member_bytes, max_total_bytes)
    except BaseException:
        # a half-extracted folder must not be mistaken for the archive's content
        if created and destination.exists():
            shutil.rmtree(destination, ignore_errors=True)
        raise


def _checked_members(tar: tarfile.TarFile, label: str, max_member_bytes: int, max_total_bytes: int,
                     max_members: int) -> list[tarfile.TarInfo]:
    """Every member's header, checked before anything is written (reading stops at the first problem)."""
    members: list[tarfile.TarInfo] = []
    layout = _Layout()
    total = 0
    try:
        for member in tar:
            if len(members) >= max_members:
                raise ArchiveError(
                    f"{label}: more than {max_members} members (published likelihoods have a few hundred); "
                    "nothing was extracted"
                )
            problem = _member_problem(member, max_member_bytes) or layout.add(member)
            if problem:
                raise ArchiveError(f"{label}: member {member.name!r} {problem}; nothing was extracted")
            total += member.size if member.isfile() else 0
            if total > max_total_bytes:
                raise _too_big(label, member.name, max_total_bytes, "nothing was extracted")
            members.append(member)
    except (tarfile.ReadError, EOFError, zlib.error, OSError) as err:
        raise ArchiveError(
            f"{label}: truncated or corrupt after {len(members)} members ({err}); download it again"
        ) from None
    if not members:
        raise ArchiveError(f"{label}: the archive is empty")
    return members


def _write_members(tar: tarfile.TarFile, members: list[tarfile.TarInfo], destination: Path, label: str,
                   max_member_bytes: int, max_total_bytes: int) -> list[str]:
    written: list[str] = []
    total = 0
    for member in members:
        parts = PurePosixPath(member.name).parts
        target = destination.joinpath(*parts)
        try:
            if member.isdir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            # "x": a new file, never through something already there (the layout was checked, this is the backstop)
            out = open(target, "xb")
        except OSError as err:
            raise ArchiveError(f"{label}: member {member.name!r} cannot be written ({err.strerror}); nothing was kept") from None
        with out:
            try:
                source = tar.extractfile(member)
                copied = 0
                with source:
                    # counted on the bytes written, not the header's size: what reaches the disk is what is limited
                    for block in iter(lambda: source.read(1 << 20), b""):
                        copied += len(block)
                        total += len(block)
                        if copied > max_member_bytes:
                            raise ArchiveError(
                                f"{label}: member {member.name!r} expands past the limit of {max_member_bytes} bytes; nothing was kept"
                            )
                        if total > max_total_bytes:
                            raise _too_big(label, member.name, max_total_bytes, "nothing was kept")
                        out.write(block)
            except (tarfile.ReadError, EOFError, zlib.error) as err:
                raise ArchiveError(f"{label}: member {member.name!r} is truncated or corrupt ({err}); download the archive again") from None
            except OSError as err:
                raise ArchiveError(f"{label}: member {member.name!r} cannot be extracted ({err}); nothing was kept") from None
        if copied != member.size:
            raise ArchiveError(
                f"{label}: member {member.name!r} is truncated or corrupt ({copied} bytes where its header says "
                f"{member.size}); download the archive again"
            )
        written.append(member.name)
    return written


@dataclass
class Downloaded:
    path: Path
    sha256: str
    size: int
    url: str | None = None


def download_name(url: str) -> str:
    """The file name a download is saved under: the URL's last path segment as one plain component.

    Never empty, ``.`` or ``..`` (``https://host/a/..`` would otherwise name the parent folder).
    """
    segment = urllib.parse.unquote(urllib.parse.urlsplit(url).path.rstrip("/").rsplit("/", 1)[-1])
    # leading dots stripped: no ".", "..", or hidden file; anything unusual becomes "_"
    name = re.sub(r"[^A-Za-z0-9._+-]", "_", segment).lstrip(".")[:128]
    return name or "archive.tar.gz"


def _content_length(url: str, value: str | None) -> int | None:
    if value is None:
        return None
    if not re.fullmatch(r"\s*\d{1,18}\s*", value):
        raise ArchiveError(f"{url}: the server sent Content-Length {value!r}, not a number of bytes; refusing the download")
    return int(value)


def download(url: str, directory: str | Path, progress: bool = True, max_bytes: int = MAX_DOWNLOAD_BYTES,
             timeout: float = 60.0, deadline: float = DOWNLOAD_DEADLINE) -> Downloaded:
    """Stream ``url`` to a file in ``directory`` with a progress bar, hashing as it goes.

    ``timeout`` bounds each wait for data, ``deadline`` the whole download (seconds):
    requests has only the first, which a server sending one byte at a time never trips.
    On an error the partial file is removed.
    """
    import requests
    import urllib3
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

    name = download_name(url)
    target = Path(directory) / name
    digest = hashlib.sha256()
    size = 0
    expected = None
    give_up = time.monotonic() + deadline

    def too_slow() -> ArchiveError:
        return ArchiveError(
            f"{url}: the download took longer than {deadline:g} s ({size} bytes received); "
            "giving up (raise --timeout for a slow connection)"
        )

    try:
        # a read never waits past the deadline either (a silent server is caught by the read timeout)
        with requests.get(url, stream=True, timeout=(min(10.0, deadline), min(timeout, deadline))) as response:
            if response.status_code != 200:
                raise ArchiveError(f"{url}: HTTP {response.status_code} {response.reason}; expected the archive")
            expected = _content_length(url, response.headers.get("Content-Length")) or None
            if expected and expected > max_bytes:
                raise ArchiveError(f"{url}: {expected} bytes, more than the limit of {max_bytes}")
            columns = [TextColumn(f"[bold]download[/bold] {name}"), BarColumn(), DownloadColumn(), TransferSpeedColumn()]
            with Progress(*columns, console=Console(stderr=True), disable=not progress) as bar, open(target, "xb") as out:
                task = bar.add_task("download", total=expected)
                while True:
                    if time.monotonic() > give_up:
                        raise too_slow()
                    # read1: what has arrived, at most 64 KiB; iter_content waits for a whole block,
                    # which a dripping server makes last for hours between two deadline checks
                    block = response.raw.read1(1 << 16, decode_content=True)
                    if not block:
                        break
                    size += len(block)
                    if size > max_bytes:
                        raise ArchiveError(f"{url}: more than the limit of {max_bytes} bytes")
                    digest.update(block)
                    out.write(block)
                    bar.update(task, advance=len(block))
        if expected is not None and size != expected:
            raise ArchiveError(f"{url}: the download is truncated ({size} of {expected} bytes)")
    except (requests.RequestException, urllib3.exceptions.HTTPError) as err:
        target.unlink(missing_ok=True)
        if time.monotonic() > give_up:
            raise too_slow() from None
        raise ArchiveError(f"{url}: download failed: {err}") from None
    except OSError as err:
        target.unlink(missing_ok=True)
        raise ArchiveError(f"{url}: the download cannot be written to {target.parent} ({err.strerror})") from None
    except BaseException:
        target.unlink(missing_ok=True)
        raise
    return Downloaded(path=target, sha256=digest.hexdigest(), size=size, url=url)


# --- what the archive contains --------------------------------------------------------------


@dataclass
class Region:
    name: str
    workspace: str  # relative to the extraction folder
    layout: str  # "files" or "patchset"
    patchset: str | None = None
    patch_files: list[str] = field(default_factory=list)
    points: list[SignalPoint] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    spec: dict = field(default_factory=dict, repr=False)
    description: str = ""
    references: dict = field(default_factory=dict)


def _is_workspace(path: Path) -> bool:
    """A background-only workspace: named so (BkgOnly.json), or a JSON object with a workspace's keys."""
    if "bkgonly" in path.name.lower():
        return True
    if path.stat().st_size > 200 * 1024**2:
        return False
    try:
        document = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError, RecursionError):
        # not a workspace (a BkgOnly.json that is not JSON is reported by read_json, which names the problem)
        return False
    return isinstance(document, dict) and {"channels", "measurements", "observations"} <= set(document)


def _labels_from_readme(root: Path, name: str, count: int) -> list[str]:
    """Parameter names from a README that spells the patch file pattern, e.g. ``patch.sbottom_msb_mn2_mn1.json``."""
    # The words before the first number (``DS_400_40_Staus`` -> ``DS``): numbers need not end the name.
    words = []
    for token in name.split("_"):
        if point_values_from_name(token):
            break
        words.append(token)
    prefix = "_".join(words) if count else name
    for readme in sorted(root.rglob("README*")):
        try:
            text = readme.read_text(errors="replace")
        except OSError:
            continue
        for match in re.finditer(rf"{re.escape(prefix)}((?:_\[?[A-Za-z][A-Za-z0-9]*\]?)+)", text):
            tokens = [t.strip("[]") for t in match.group(1).strip("_").split("_")]
            if len(tokens) == count:
                return tokens
    return []


def discover(root: Path, labels: Sequence[str] | None = None, archive: str = "") -> list[Region]:
    """The regions of an extracted archive: each background-only workspace with its patches."""
    regions: list[Region] = []
    candidates = sorted(p for p in root.rglob("*.json") if p.is_file() and "patch" not in p.name.lower() and _is_workspace(p))
    for path in candidates:
        folder = path.parent
        relative = path.relative_to(root).as_posix()
        region_name = folder.relative_to(root).as_posix().replace("/", "_") if folder != root else path.stem
        spec = read_json(path, LikelihoodError, "a pyhf workspace")
        validate_workspace_spec(spec, f"{archive}: {relative}")
        patchsets = sorted(p for p in folder.glob("*.json") if p != path and "patchset" in p.name.lower())
        files = sorted(folder.glob("patch.*.json"))
        if patchsets:
            region = Region(region_name, relative, "patchset", patchset=patchsets[0].relative_to(root).as_posix(), spec=spec)
            info = load_patchset(patchsets[0], workspace_spec=spec, workspace_path=f"{archive}: {relative}")
            region.points, region.labels = info.points, list(labels or info.labels)
            region.description, region.references = info.description, info.references
            if labels:
                # Checked like a file's point names: a count that does not match is an error, never a silent cut.
                region.points = [SignalPoint(p.name, p.patch, p.source,
                                             labelled_values(p.name, list(p.values.values()), labels, f"{archive}: {relative}"))
                                 for p in info.points]
        elif files:
            region = Region(region_name, relative, "files", patch_files=[f.relative_to(root).as_posix() for f in files], spec=spec)
            count = len(point_values_from_name(_patch_name(files[0])))
            region.labels = list(labels or _labels_from_readme(root, _patch_name(files[0]), count) or [f"p{i + 1}" for i in range(count)])
            region.points = [load_patch_file(f, labels=region.labels) for f in files]
        else:
            continue
        for point in region.points:
            apply_patch({"channels": spec["channels"]}, point, f"{archive}: {relative}")
        regions.append(region)
    if not regions:
        raise LikelihoodError(
            f"{archive}: no background-only workspace with signal patches found; expected BkgOnly.json beside "
            "patch.<name>.json files or a patchset.json"
        )
    names = [r.name for r in regions]
    if len(set(names)) != len(names):
        raise LikelihoodError(f"{archive}: two workspaces would have the same region name ({names})")
    return regions


def _patch_name(path: Path) -> str:
    return path.name[len("patch."):-len(".json")]


# --- the catalog entry ----------------------------------------------------------------------


def entry_id_from(name: str) -> str:
    stem = re.sub(r"(\.tar)?\.(gz|tgz|bz2|xz|tar)$", "", name, flags=re.IGNORECASE)
    slug = re.sub(r"[^a-z0-9]+", "-", stem.lower()).strip("-")
    return (slug or "likelihood")[:64]


def _inspire_from(references: dict) -> str | None:
    for value in references.values():
        match = re.match(r"^ins(\d+)$", str(value))
        if match:
            return match.group(1)
    return None


def import_hepdata(
    source: str,
    catalog: str | Path,
    *,
    entry_id: str | None = None,
    title: str | None = None,
    description: str | None = None,
    inspire_id: str | int | None = None,
    hepdata_record: str | int | None = None,
    collaboration: str | None = None,
    luminosity_fb: float | None = None,
    sqrt_s_tev: float | None = None,
    labels: Sequence[str] | None = None,
    unit: str = "GeV",
    expected_sha256: str | None = None,
    force: bool = False,
    progress: bool = True,
    max_member_bytes: int = MAX_MEMBER_BYTES,
    max_total_bytes: int = MAX_TOTAL_BYTES,
    max_members: int = MAX_MEMBERS,
    deadline: float = DOWNLOAD_DEADLINE,
) -> dict[str, Any]:
    """Import an archive (path or http(s) URL) as ``<catalog>/<entry_id>``; a summary of what was written.

    ``deadline`` bounds a download (seconds); the ``max_*`` limits bound the archive's content.
    """
    catalog = Path(catalog)
    with tempfile.TemporaryDirectory(prefix="recast-import-") as scratch:
        scratch = Path(scratch)
        if re.match(r"^https?://", source):
            # a folder of its own: whatever the URL's name, the download cannot land on "extracted"
            (scratch / "download").mkdir()
            fetched = download(source, scratch / "download", progress=progress, deadline=deadline)
        else:
            path = Path(source)
            if not path.is_file():
                raise ArchiveError(f"{source}: no such file (and not an http(s) URL); expected a likelihood archive")
            fetched = Downloaded(path=path, sha256=sha256_file(path), size=path.stat().st_size)
        if expected_sha256 and fetched.sha256 != expected_sha256.lower():
            raise ArchiveError(f"{source}: sha256 is {fetched.sha256}, expected {expected_sha256}")
        extracted = scratch / "extracted"
        safe_extract(fetched.path, extracted, max_member_bytes=max_member_bytes, max_total_bytes=max_total_bytes,
                     max_members=max_members, label=source)
        try:
            regions = discover(extracted, labels=labels, archive=source)
        except LikelihoodError as err:
            raise _in_archive_terms(err, extracted, source) from None

        entry_id = entry_id or entry_id_from(fetched.path.name)
        if not _ENTRY_ID.match(entry_id) or len(entry_id) > 64:
            raise LikelihoodError(f"entry id {entry_id!r}: expected lower-case letters, digits, '-' and '_' (at most 64)")
        target = catalog / entry_id
        if (target.exists() or target.is_symlink()) and not force:
            raise LikelihoodError(f"{target}: the entry exists already; use --force to replace it or --id to choose another id")
        try:
            document = _publish(catalog, entry_id, target, regions, fetched, extracted, title=title,
                                description=description, inspire_id=inspire_id, hepdata_record=hepdata_record,
                                collaboration=collaboration, luminosity_fb=luminosity_fb, sqrt_s_tev=sqrt_s_tev,
                                unit=unit)
        except OSError as err:
            raise LikelihoodError(f"{target}: the entry cannot be written ({err}); the catalog is unchanged") from None
    return {
        "id": entry_id,
        "path": str(target),
        "archive": document["likelihood"]["source"]["archive"],
        "workspaces": [
            {"name": r.name, "layout": r.layout, "points": len(r.points), "parameters": r.labels} for r in regions
        ],
        "points": sum(len(r.points) for r in regions),
    }


def _in_archive_terms(err: LikelihoodError, extracted: Path, label: str) -> LikelihoodError:
    """The same error with the scratch folder's paths written as ``ARCHIVE: member``.

    The scratch folder is gone by the time a person reads the message; the archive and member are what they can look at.
    """
    return type(err)(str(err).replace(f"{extracted}{os.sep}", f"{label}: "))


def _publish(catalog: Path, entry_id: str, target: Path, regions: list[Region], fetched: Downloaded, extracted: Path,
             **metadata) -> dict[str, Any]:
    """Write the entry beside its final place, then rename it there: a failed import leaves the catalog as it was."""
    catalog.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{entry_id}-", dir=catalog))
    try:
        copied = _copy_files(extracted, staging, regions)
        metadata["inspire_id"] = metadata["inspire_id"] or next((i for r in regions if (i := _inspire_from(r.references))), None)
        document = _analysis_document(entry_id, regions, fetched, extracted, staging, copied, **metadata)
        _validate_entry(document, staging / "analysis.yaml")
        _write_yaml(staging / "analysis.yaml", document)
        if target.exists() or target.is_symlink():
            # --force: the old entry is moved aside, not deleted, until the new one is in place
            aside = Path(tempfile.mkdtemp(prefix=f".{entry_id}-old-", dir=catalog))
            target.rename(aside / entry_id)
            try:
                staging.rename(target)
            except OSError:
                (aside / entry_id).rename(target)
                raise
            finally:
                shutil.rmtree(aside, ignore_errors=True)
        else:
            staging.rename(target)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return document


def _copy_files(extracted: Path, staging: Path, regions: list[Region]) -> list[str]:
    files: list[str] = []
    for region in regions:
        files.append(region.workspace)
        files.extend([region.patchset] if region.patchset else region.patch_files)
    files.extend(p.relative_to(extracted).as_posix() for p in sorted(extracted.rglob("README*")) if p.is_file())
    for relative in files:
        destination = staging / relative
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(extracted / relative, destination)
    return files


def _analysis_document(entry_id, regions, fetched, extracted, staging, copied, *, title, description, inspire_id,
                       hepdata_record, collaboration, luminosity_fb, sqrt_s_tev, unit) -> dict[str, Any]:
    import pyhf

    parameters = regions[0].labels
    for region in regions[1:]:
        if region.labels != parameters:
            raise LikelihoodError(f"{fetched.path.name}: regions {regions[0].name} and {region.name} name their parameters differently ({parameters} vs {region.labels})")
    workspaces, points, channels = [], [], []
    for region in regions:
        measurement = region.spec["measurements"][0]
        patches: dict[str, Any]
        if region.layout == "patchset":
            patches = {"layout": "patchset", "patchset": region.patchset, "sha256": sha256_file(staging / region.patchset), "count": len(region.points)}
            if region.description:
                patches["description"] = region.description
        else:
            directory = PurePosixPath(region.workspace).parent.as_posix()
            patches = {"layout": "files", "directory": directory, "pattern": "patch.*.json", "count": len(region.points)}
        workspaces.append({
            "name": region.name,
            "path": region.workspace,
            "sha256": sha256_file(staging / region.workspace),
            "digest": pyhf.utils.digest(region.spec, algorithm="sha256"),
            "measurement": measurement["name"],
            "poi": measurement["config"]["poi"],
            "channels": [c["name"] for c in region.spec["channels"]],
            "patches": patches,
        })
        channels.extend(c["name"] for c in region.spec["channels"] if c["name"] not in channels)
        directory = PurePosixPath(region.workspace).parent
        for point in region.points:
            entry = {"name": point.name, "workspace": region.name, "values": [point.values.get(label, 0.0) for label in parameters]}
            if region.layout == "files":
                entry["patch"] = (directory / f"patch.{point.name}.json").as_posix()
            points.append(entry)
    archive = {"name": fetched.path.name, "sha256": fetched.sha256, "size_bytes": fetched.size}
    if fetched.url:
        archive["url"] = fetched.url
    source: dict[str, Any] = {"archive": archive, "imported": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}
    if hepdata_record is not None:
        source["hepdata_record"] = hepdata_record
    if inspire_id is not None:
        source["inspire_id"] = inspire_id
    readmes = [c for c in copied if PurePosixPath(c).name.lower().startswith("readme")]
    if readmes:
        source["readme"] = min(readmes, key=len)
    signal_regions = [c for c in channels if c.upper().startswith("SR")]
    metadata: dict[str, Any] = {
        "tags": ["likelihood-only", "hepdata"],
        "processes": sorted({p.name.rsplit("_", len(parameters))[0] for p in regions[0].points}) if parameters else [],
        "signal_regions": signal_regions,
    }
    for key, value in (("collaboration", collaboration), ("inspire_id", inspire_id), ("hepdata_record", hepdata_record),
                       ("luminosity_fb", luminosity_fb), ("sqrt_s_tev", sqrt_s_tev)):
        if value is not None:
            metadata[key] = value
    from recast.spec import schema_name  # here, not at import: `recast likelihood cls ARCHIVE` loads this module

    region_names = ", ".join(r.name for r in regions)
    return {
        "schema": schema_name("analysis"),
        "id": entry_id,
        "version": "1.0.0",
        "title": title or f"Published likelihood {fetched.path.name}",
        "description": description or (
            f"Full likelihood imported from {fetched.url or fetched.path.name} (sha256 {fetched.sha256[:12]}…): "
            f"{len(regions)} background-only workspace(s) ({region_names}) and {len(points)} signal points. "
            "Likelihood-only entry: reinterpret with `recast likelihood cls|limit|scan`."
        ),
        "metadata": metadata,
        "likelihood": {
            "format": "pyhf-json",
            "pyhf_schema_version": "1.0.0",
            "workspaces": workspaces,
            "parameters": [{"name": label, "label": label, "unit": unit} for label in parameters],
            "points": points,
            "source": source,
        },
    }


def _validate_entry(document: dict, path: Path) -> None:
    """The entry must pass the analysis schema (which includes the likelihood block's schema)."""
    from recast import spec

    spec.validate_document(json.loads(json.dumps(document)), "analysis", path)


def _write_yaml(path: Path, document: dict) -> None:
    import yaml

    class _Dumper(yaml.SafeDumper):
        pass

    # lists of numbers on one line keep 600 points readable
    def represent_list(dumper, data):
        flow = all(isinstance(x, (int, float)) for x in data)
        return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=flow)

    _Dumper.add_representer(list, represent_list)
    path.write_text(yaml.dump(document, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=120))
