"""``recast import hepdata``: a published likelihood archive (HEPData) as a likelihood-only catalog entry.

The archive is read defensively (it comes from the internet): members with
absolute paths or ``..``, links, devices, oversized members and truncated
archives are refused with an error naming the archive and the member. Both
layouts HEPData records use are understood, in any number of regions:

- one ``patch.<name>.json`` JSON Patch per signal point beside a
  background-only workspace (``RegionA/BkgOnly.json`` ...);
- one pyhf ``patchset.json`` beside the workspace, whose digest is verified
  against it (``pyhf.patchset.PatchSet.verify``).

A URL is downloaded with ``requests``, streamed to disk with a progress bar;
its sha256 is recorded (and checked when ``--sha256`` is given).

The entry written is ``<catalog>/<id>/analysis.yaml`` (schema
``recast/analysis/1.0.0`` with a ``likelihood:`` block, see
``specs/1.0.0/likelihood.schema.json``) beside the workspaces and patches,
copied with the archive's own relative layout.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import tarfile
import tempfile
import zlib
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import Any, Sequence

from recast.likelihood.errors import ArchiveError, LikelihoodError
from recast.likelihood.workspace import (
    SignalPoint,
    apply_patch,
    load_patch_file,
    load_patchset,
    point_values_from_name,
    read_json,
    validate_workspace_spec,
)

MAX_MEMBER_BYTES = 512 * 1024**2  # the largest published patchset we know is 57 MB
MAX_TOTAL_BYTES = 4 * 1024**3
MAX_DOWNLOAD_BYTES = 2 * 1024**3
_ENTRY_ID = re.compile(r"^[a-z0-9][a-z0-9_-]*$")


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
    if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name):
        return "has an absolute path"
    if ".." in parts or ".." in name.split("\\"):
        return "has '..' in its path (it would be written outside the extraction folder)"
    if member.issym() or member.islnk():
        return f"is a {'symbolic' if member.issym() else 'hard'} link (to {member.linkname!r}); links are refused"
    if not (member.isfile() or member.isdir()):
        return "is not a regular file or folder (device, fifo, ...)"
    if member.isfile() and member.size > max_member_bytes:
        return f"is {member.size} bytes, more than the limit of {max_member_bytes} bytes"
    return None


def safe_extract(
    archive: str | Path,
    destination: str | Path,
    max_member_bytes: int = MAX_MEMBER_BYTES,
    max_total_bytes: int = MAX_TOTAL_BYTES,
) -> list[str]:
    """Extract a tar archive (gz, bz2, xz or plain) after checking every member; the regular files written."""
    archive, destination = Path(archive), Path(destination)
    try:
        tar = tarfile.open(archive, "r:*")
    except FileNotFoundError:
        raise ArchiveError(f"{archive}: no such file; expected a likelihood archive (.tar.gz)") from None
    except (tarfile.ReadError, EOFError, zlib.error, OSError) as err:
        raise ArchiveError(f"{archive}: not a readable tar archive ({err}); expected a .tar.gz as HEPData serves") from None
    written: list[str] = []
    with tar:
        members: list[tarfile.TarInfo] = []
        total = 0
        try:
            for member in tar:
                problem = _member_problem(member, max_member_bytes)
                if problem:
                    raise ArchiveError(f"{archive}: member {member.name!r} {problem}; nothing was extracted")
                total += member.size if member.isfile() else 0
                if total > max_total_bytes:
                    raise ArchiveError(f"{archive}: the members add up to more than {max_total_bytes} bytes; nothing was extracted")
                members.append(member)
        except (tarfile.ReadError, EOFError, zlib.error, OSError) as err:
            raise ArchiveError(
                f"{archive}: truncated or corrupt after {len(members)} members ({err}); download it again"
            ) from None
        if not members:
            raise ArchiveError(f"{archive}: the archive is empty")
        for member in members:
            target = destination.joinpath(*PurePosixPath(member.name).parts)
            if member.isdir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                source = tar.extractfile(member)
                with source, open(target, "wb") as out:
                    copied = 0
                    for block in iter(lambda: source.read(1 << 20), b""):
                        copied += len(block)
                        out.write(block)
                if copied != member.size:
                    raise ArchiveError(f"{archive}: member {member.name!r} is truncated ({copied} of {member.size} bytes)")
            except (tarfile.ReadError, EOFError, zlib.error, OSError) as err:
                raise ArchiveError(f"{archive}: member {member.name!r} is truncated or corrupt ({err}); download the archive again") from None
            written.append(member.name)
    return written


@dataclass
class Downloaded:
    path: Path
    sha256: str
    size: int
    url: str | None = None


def download(url: str, directory: str | Path, progress: bool = True, max_bytes: int = MAX_DOWNLOAD_BYTES, timeout: float = 60.0) -> Downloaded:
    """Stream ``url`` to a file in ``directory`` with a progress bar, hashing as it goes."""
    import requests
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

    name = Path(url.split("?")[0].rstrip("/")).name or "archive.tar.gz"
    target = Path(directory) / name
    digest = hashlib.sha256()
    size = 0
    try:
        with requests.get(url, stream=True, timeout=(10, timeout)) as response:
            if response.status_code != 200:
                raise ArchiveError(f"{url}: HTTP {response.status_code} {response.reason}; expected the archive")
            expected = int(response.headers.get("Content-Length") or 0) or None
            if expected and expected > max_bytes:
                raise ArchiveError(f"{url}: {expected} bytes, more than the limit of {max_bytes}")
            columns = [TextColumn(f"[bold]download[/bold] {name}"), BarColumn(), DownloadColumn(), TransferSpeedColumn()]
            with Progress(*columns, console=Console(stderr=True), disable=not progress) as bar, open(target, "wb") as out:
                task = bar.add_task("download", total=expected)
                for block in response.iter_content(chunk_size=1 << 16):
                    size += len(block)
                    if size > max_bytes:
                        raise ArchiveError(f"{url}: more than the limit of {max_bytes} bytes")
                    digest.update(block)
                    out.write(block)
                    bar.update(task, advance=len(block))
    except requests.RequestException as err:
        raise ArchiveError(f"{url}: download failed: {err}") from None
    if expected is not None and size != expected:
        raise ArchiveError(f"{url}: the download is truncated ({size} of {expected} bytes)")
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
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    return isinstance(document, dict) and {"channels", "measurements", "observations"} <= set(document)


def _labels_from_readme(root: Path, name: str, count: int) -> list[str]:
    """Parameter names from a README that spells the patch file pattern, e.g. ``patch.sbottom_msb_mn2_mn1.json``."""
    prefix = name.rsplit("_", count)[0] if count else name
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
                region.points = [SignalPoint(p.name, p.patch, p.source, dict(zip(labels, p.values.values()))) for p in info.points]
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
) -> dict[str, Any]:
    """Import an archive (path or http(s) URL) as ``<catalog>/<entry_id>``; a summary of what was written."""
    catalog = Path(catalog)
    with tempfile.TemporaryDirectory(prefix="recast-import-") as scratch:
        scratch = Path(scratch)
        if re.match(r"^https?://", source):
            fetched = download(source, scratch, progress=progress)
        else:
            path = Path(source)
            if not path.is_file():
                raise ArchiveError(f"{source}: no such file (and not an http(s) URL); expected a likelihood archive")
            fetched = Downloaded(path=path, sha256=sha256_file(path), size=path.stat().st_size)
        if expected_sha256 and fetched.sha256 != expected_sha256.lower():
            raise ArchiveError(f"{source}: sha256 is {fetched.sha256}, expected {expected_sha256}")
        extracted = scratch / "extracted"
        safe_extract(fetched.path, extracted, max_member_bytes=max_member_bytes)
        regions = discover(extracted, labels=labels, archive=fetched.path.name)

        entry_id = entry_id or entry_id_from(fetched.path.name)
        if not _ENTRY_ID.match(entry_id) or len(entry_id) > 64:
            raise LikelihoodError(f"entry id {entry_id!r}: expected lower-case letters, digits, '-' and '_' (at most 64)")
        target = catalog / entry_id
        if target.exists() and not force:
            raise LikelihoodError(f"{target}: the entry exists already; use --force to replace it or --id to choose another id")
        # written beside the entry's final place, then renamed: a failed import leaves nothing behind
        catalog.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{entry_id}-", dir=catalog))
        try:
            copied = _copy_files(extracted, staging, regions)
            inspire = inspire_id or next((i for r in regions if (i := _inspire_from(r.references))), None)
            document = _analysis_document(
                entry_id, regions, fetched, extracted, staging, copied,
                title=title, description=description, inspire_id=inspire, hepdata_record=hepdata_record,
                collaboration=collaboration, luminosity_fb=luminosity_fb, sqrt_s_tev=sqrt_s_tev, unit=unit,
            )
            _validate_entry(document, staging / "analysis.yaml")
            _write_yaml(staging / "analysis.yaml", document)
            if target.exists():
                shutil.rmtree(target)
            staging.rename(target)
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)
    return {
        "id": entry_id,
        "path": str(target),
        "archive": document["likelihood"]["source"]["archive"],
        "workspaces": [
            {"name": r.name, "layout": r.layout, "points": len(r.points), "parameters": r.labels} for r in regions
        ],
        "points": sum(len(r.points) for r in regions),
    }


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
    region_names = ", ".join(r.name for r in regions)
    return {
        "schema": "recast/analysis/1.0.0",
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
