"""Build an analysis's images and pin them: the lock file ``images.lock.json``.

Each :class:`~recast.model.ImageSpec` is built with the Docker engine from its
Dockerfile, with the build argument ``BASE`` naming the base image. No
registry is reachable on our machines, so the default base is
``recast/base:bookworm``, made locally by ``containers/base/make-base.sh``
when missing; elsewhere pass a registry image (``base="python:3.11-slim"``).

The resulting image IDs are recorded in the entry's lock file, next to its
spec::

    {"analysis": "wh1lbb", "version": "1.0.0",
     "images": {"selection": {"tag": ..., "id": "sha256:...", "dockerfile_sha256": ...,
                              "base": ..., "base_id": ..., "built_at": ...}}}

Runs use those IDs (:func:`resolve`), never the tags, so a job always runs in
the image that was built and recorded, even if a tag is moved later. That
holds only if the lock holds IDs: an ``id`` that is not ``sha256:`` and 64 hex
digits (a tag, say, written by hand) is an error, as is a lock that is not the
shape recast writes. Neither is ever silently rebuilt: the message says to run
``recast images build ID``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
from collections import deque
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

from recast import resources
from recast.environments import ImageRef
from recast.errors import RecastError
from recast.model import Analysis, ImageSpec

LOCK_FILE = "images.lock.json"
DEFAULT_BASE = "recast/base:bookworm"
LOG_TAIL = 30
IMAGE_ID = re.compile(r"sha256:[0-9a-f]{64}")  # what the engine reports as an image's ID

Progress = Callable[[str, str], None]  # (image name, one line of build log)


def lock_path(analysis: Analysis) -> Path:
    return analysis.root / LOCK_FILE


def read_lock(analysis: Analysis) -> dict:
    """The entry's lock, or an empty one if it has none or it belongs to another version."""
    empty = {"analysis": analysis.id, "version": analysis.version, "images": {}}
    path = lock_path(analysis)
    try:
        lock = json.loads(path.read_text())
    except FileNotFoundError:
        return empty
    except (OSError, ValueError) as err:
        raise RecastError(f"{path}: unreadable image lock ({err}): delete it and run "
                          f"`recast images build {analysis.id}`") from None
    if not isinstance(lock, dict):
        raise RecastError(f"{path}: not an image lock (expected a JSON object with analysis, version and images): "
                          f"delete it and run `recast images build {analysis.id}`")
    if lock.get("analysis") != analysis.id or lock.get("version") != analysis.version:
        return empty
    entries = lock.get("images")
    if not isinstance(entries, dict) or not all(isinstance(e, dict) for e in entries.values()):
        raise RecastError(f"{path}: images: expected an object of image name -> {{tag, id, ...}}: "
                          f"delete the lock and run `recast images build {analysis.id}`")
    return lock


def resolve(analysis: Analysis, name: str) -> ImageRef:
    """The pinned image for ``name``; its ``id`` is None if it has not been built for this spec."""
    try:
        spec = analysis.images[name]
    except KeyError:
        raise RecastError(f"analysis {analysis.id} has no image {name!r} "
                          f"(it has: {', '.join(sorted(analysis.images)) or 'none'})") from None
    entry = read_lock(analysis)["images"].get(name, {})
    if entry.get("tag") != spec.tag:
        return ImageRef(name=name, tag=spec.tag, id=None)  # built for another spec: build it for this one
    image_id = entry.get("id")
    if not isinstance(image_id, str) or not IMAGE_ID.fullmatch(image_id):
        # A tag here would be looked up at run time, so whatever it names then would run: not pinned.
        shown = repr(image_id) if len(repr(image_id)) <= 80 else f"{repr(image_id)[:77]}..."
        raise RecastError(f"{lock_path(analysis)}: images.{name}.id is {shown}, not an image ID (sha256: and 64 hex "
                          f"digits), so the image is not pinned: run `recast images build {analysis.id}` "
                          "to build it and record its ID")
    return ImageRef(name=name, tag=spec.tag, id=image_id)


def build(analysis: Analysis, base: str | None = None, progress: Progress | None = None) -> dict[str, ImageRef]:
    """Build every image of ``analysis`` on ``base`` and record their IDs in the lock file.

    ``base`` None means the local base :data:`DEFAULT_BASE`, made first if
    missing. ``progress``, if given, receives each line of the build logs.
    """
    api = engine_api()
    hint = ""
    if base is None:
        base = DEFAULT_BASE
        ensure_base(base, progress=progress)
    elif find_image(api, base) is None:
        # The engine will pull it; if that fails, the build error says why and this what to do.
        hint = (f"\n(the base image {base} is not in this Docker engine, so it must come from a registry; "
                f"without one, leave out --base to build on {DEFAULT_BASE}, made locally)")
    lock = read_lock(analysis)
    built = {}
    for spec in analysis.images.values():
        try:
            image_id = _build_one(api, analysis, spec, base, progress)
        except RecastError as err:
            raise RecastError(f"{err}{hint}") from None
        lock["images"][spec.name] = {
            "tag": spec.tag,
            "id": image_id,
            "dockerfile_sha256": hashlib.sha256(spec.dockerfile.read_bytes()).hexdigest(),
            "base": base,
            "base_id": find_image(api, base),
            "built_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        write_lock(analysis, lock)  # after each image, so a later failure keeps what was built
        built[spec.name] = ImageRef(name=spec.name, tag=spec.tag, id=image_id)
    return built


def ensure_base(tag: str = DEFAULT_BASE, progress: Progress | None = None) -> str:
    """Make the local base image ``tag`` with ``containers/base/make-base.sh`` unless it exists; its ID."""
    api = engine_api()
    image_id = find_image(api, tag)
    if image_id:
        return image_id
    script = resources.containers_dir() / "base" / "make-base.sh"
    tail = deque(maxlen=LOG_TAIL)
    proc = subprocess.Popen(["bash", str(script), tag], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, text=True)
    for line in proc.stdout:
        tail.append(line.rstrip("\n"))
        if progress:
            progress("base", tail[-1])
    if proc.wait() != 0 or not (image_id := find_image(api, tag)):
        raise RecastError(f"could not make the base image {tag} with {script} (exit {proc.returncode}); "
                          "to build on a registry image instead, pass --base python:3.11-slim\n"
                          + "\n".join(tail))
    return image_id


def _build_one(api, analysis: Analysis, spec: ImageSpec, base: str, progress: Progress | None) -> str:
    import docker

    where = f"image {spec.name!r} ({spec.tag}) of analysis {analysis.id}"
    if not spec.dockerfile.is_file():
        raise RecastError(f"{where}: Dockerfile {spec.dockerfile} does not exist")
    if not spec.context.is_dir():
        raise RecastError(f"{where}: build context {spec.context} is not a folder")
    try:  # a Dockerfile inside the context is named relative to it; the SDK sends one outside along
        dockerfile = str(spec.dockerfile.relative_to(spec.context))
    except ValueError:
        dockerfile = str(spec.dockerfile)
    tail = deque(maxlen=LOG_TAIL)
    image_id = None
    try:
        stream = api.build(
            path=str(spec.context), dockerfile=dockerfile, tag=spec.tag,
            buildargs={"BASE": base, **spec.build_args}, network_mode="host",
            rm=True, forcerm=True, decode=True,
            labels={"recast.analysis": analysis.id, "recast.version": analysis.version, "recast.image": spec.name},
        )
        for chunk in stream:
            for line in filter(None, chunk.get("stream", "").splitlines()):
                tail.append(line)
                if progress:
                    progress(spec.name, line)
            if "error" in chunk:
                raise RecastError(f"{where}: build from {spec.dockerfile} failed: {chunk['error'].strip()}\n"
                                  + "\n".join(tail))
            image_id = chunk.get("aux", {}).get("ID", image_id)
    except docker.errors.APIError as err:
        raise RecastError(f"{where}: the Docker engine refused the build of {spec.dockerfile}: "
                          f"{err.explanation or err}\n" + "\n".join(tail)) from None
    image_id = image_id or find_image(api, spec.tag)
    if not image_id:
        raise RecastError(f"{where}: the build reported no image\n" + "\n".join(tail))
    return image_id


def find_image(api, reference: str) -> str | None:
    import docker

    try:
        return api.inspect_image(reference)["Id"]
    except docker.errors.ImageNotFound:
        return None


def write_lock(analysis: Analysis, lock: dict) -> None:
    path = lock_path(analysis)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_text(json.dumps(lock, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, path)


def engine_api():
    import docker

    try:
        return docker.from_env().api
    except docker.errors.DockerException as err:
        raise RecastError(f"no Docker engine answers, so images cannot be built: "
                          f"start one with containers/engine.sh\n  {err}") from None
