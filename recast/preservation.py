"""The entry's preservation store: what keeps an analysis runnable after registries are gone.

``preserved/`` beside ``analysis.yaml`` holds each image as a docker-archive
tarball (``images/NAME.tar``) listed in ``images.json`` with its image ID and
sha256, and ``files.sha256`` (``sha256sum`` format) records the digest of
every file the entry refers to. :func:`load_images` restores images into an
engine, refusing any archive whose digest does not match.
"""

from __future__ import annotations

import hashlib
import json
import os
from datetime import datetime, timezone
from pathlib import Path

from recast import images as images_mod
from recast.digest import sha256_file
from recast.errors import RecastError
from recast.model import Analysis
from recast.references import parse
from recast.validate import inside

STORE = "preserved"
IMAGES_MANIFEST = "images.json"
FILES_MANIFEST = "files.sha256"
CHUNK = 1 << 20


def store(analysis: Analysis) -> Path:
    return analysis.root / STORE


def read_manifest(analysis: Analysis) -> dict:
    path = store(analysis) / IMAGES_MANIFEST
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        return {"analysis": analysis.id, "images": {}}
    except (OSError, ValueError) as exc:
        raise RecastError(f"{path}: unreadable image manifest ({exc})") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("images"), dict):
        raise RecastError(f"{path}: malformed image manifest: expected an object with 'images'")
    return manifest


def _write_json(path: Path, document: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_text(json.dumps(document, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, path)


def save_images(analysis: Analysis, names: list[str] | None = None) -> dict:
    """Write each pinned image as ``preserved/images/NAME.tar``; record ID and sha256."""
    api = images_mod.engine_api()
    manifest = read_manifest(analysis)
    for name in names or sorted(analysis.images):
        ref = images_mod.resolve(analysis, name)
        if not ref.id:
            raise RecastError(f"image {name!r} of {analysis.id} is not built: run `recast images build {analysis.id}`")
        tagged = images_mod.find_image(api, ref.tag)
        # Saved by tag (when the tag still names the pinned image) so that loading restores the tag too.
        source = ref.tag if tagged == ref.id else ref.id
        target = store(analysis) / "images" / f"{name}.tar"
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_suffix(".tar.partial")
        digest, size = hashlib.sha256(), 0
        try:
            with open(partial, "wb") as out:
                for chunk in api.get_image(source, chunk_size=CHUNK):
                    out.write(chunk)
                    digest.update(chunk)
                    size += len(chunk)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        os.replace(partial, target)
        manifest["images"][name] = {"tag": ref.tag, "id": ref.id, "archive": f"images/{name}.tar",
                                    "format": "docker-archive", "sha256": digest.hexdigest(), "bytes": size,
                                    "saved_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        _write_json(store(analysis) / IMAGES_MANIFEST, manifest)
    return manifest


def verify_archive(analysis: Analysis, name: str) -> Path:
    """The archive of image ``name``, after checking that it exists and has its recorded sha256."""
    entry = read_manifest(analysis)["images"].get(name)
    if entry is None:
        raise RecastError(f"image {name!r} of {analysis.id} has no archive: run `recast images save {analysis.id}`")
    path = inside(store(analysis), entry.get("archive", ""))
    if path is None or not path.is_file():
        raise RecastError(f"archive {entry.get('archive')!r} of image {name!r} is missing from {store(analysis)}")
    found = sha256_file(path)
    if found != entry.get("sha256"):
        raise RecastError(f"archive {path} of image {name!r} is damaged or truncated: sha256 {found}, "
                          f"expected {entry.get('sha256')} (recorded when it was saved); it was not loaded")
    return path


def load_images(analysis: Analysis, names: list[str] | None = None) -> dict[str, str]:
    """Restore archived images into the engine; every archive is verified before anything is loaded."""
    import docker

    manifest = read_manifest(analysis)
    names = names or sorted(manifest["images"])
    if not names:
        raise RecastError(f"{analysis.id} has no archived images in {store(analysis)}")
    archives = {name: verify_archive(analysis, name) for name in names}
    api = images_mod.engine_api()
    lock = images_mod.read_lock(analysis)
    restored = {}
    for name, path in archives.items():
        entry = manifest["images"][name]
        try:
            with open(path, "rb") as data:
                for _ in api.load_image(data):
                    pass
        except docker.errors.APIError as err:
            raise RecastError(f"the Docker engine could not load {path}: {err.explanation or err}") from None
        if images_mod.find_image(api, entry["id"]) != entry["id"]:
            raise RecastError(f"loading {path} did not restore image {entry['id']} of {name!r}")
        if images_mod.find_image(api, entry["tag"]) != entry["id"]:
            api.tag(entry["id"], *entry["tag"].rsplit(":", 1))
        lock["images"][name] = {**lock["images"].get(name, {}), "tag": entry["tag"], "id": entry["id"],
                                "restored_from": entry["archive"]}
        images_mod.write_lock(analysis, lock)
        restored[name] = entry["id"]
    return restored


def referenced_files(analysis: Analysis) -> list[Path]:
    """Every file of the entry that a run or a check reads: templates, $entry/ bindings,
    example requests with their files and references, checks and their fixtures."""
    from recast import spec
    from recast.request import file_values

    files = {t.path for t in analysis.templates.values()}
    for stage in analysis.stages:
        for value in stage.bind.values():
            try:
                ref = parse(value)
            except ValueError:
                continue
            if ref is not None and ref.kind == "entry":
                files.add(analysis.root / ref.name)
    for example in analysis.examples.values():
        files.add(example.request)
        if example.reference:
            files.add(example.reference)
        try:
            parameters = spec.load_document(example.request).get("parameters", {})
        except Exception:  # an unreadable request is reported by `recast validate`
            continue
        for name, param in analysis.request_parameters.items():
            if name in parameters:
                for _, _, relative in file_values(param, parameters[name], name):
                    files.add(example.request.parent / relative)
    if analysis.checks:
        files.add(Path(analysis.checks["path"]))
        for step in analysis.checks.get("steps", {}).values():
            fixtures = analysis.root / step.get("fixtures", ".")
            template = analysis.templates.get(step["template"])
            for pname, value in step["parameters"].items():
                param = template.parameters.get(pname) if template else None
                if param is not None and (param.type == "file" or (param.items and param.items.type == "file")):
                    for v in value if isinstance(value, list) else [value]:
                        files.add(fixtures / v)
    root = analysis.root.resolve()
    return sorted(p.resolve() for p in files if p.resolve().is_relative_to(root))


def pin_files(analysis: Analysis) -> Path:
    """Record the sha256 of every referenced file in ``preserved/files.sha256``."""
    lines = [f"{sha256_file(p)}  {p.relative_to(analysis.root.resolve())}" for p in referenced_files(analysis)]
    path = store(analysis) / FILES_MANIFEST
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


def recorded_files(analysis: Analysis) -> dict[str, str]:
    path = store(analysis) / FILES_MANIFEST
    if not path.is_file():
        return {}
    recorded = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        digest, sep, name = line.partition("  ")
        if not sep or len(digest) != 64:
            raise RecastError(f"{path}: line {number}: expected 'SHA256  PATH' (sha256sum format)")
        recorded[name] = digest
    return recorded
