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

The lock also records what each image was built from (:func:`build_inputs`):
the sha256 of its Dockerfile and of every file of the build context that the
Dockerfile's ``COPY``/``ADD`` instructions take, less what the context's
``.dockerignore`` leaves out (its ``*``, ``**``, ``?``, ``[...]`` and ``!``
patterns, read as Docker reads them). An image whose Dockerfile or copied
files changed since is *out of date* (:func:`stale`), and runs refuse it
(:func:`require_current`). When recast cannot read the Dockerfile that simply
(``$VARIABLES`` or URLs in a source, heredocs, ``--exclude``, bind mounts of
the context, a ``# escape=`` directive) it hashes the whole context instead,
and when it cannot read the ``.dockerignore`` (escapes with backslashes) it ignores
nothing: either way an image is never wrongly taken as current. The lock
files themselves are never hashed (recast writes them after a build).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import subprocess
import tempfile
from collections import deque
from collections.abc import Callable, Iterator
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
                          f"`{_build_command(analysis)}`") from None
    if not isinstance(lock, dict):
        raise RecastError(f"{path}: not an image lock (expected a JSON object with analysis, version and images): "
                          f"delete it and run `{_build_command(analysis)}`")
    if lock.get("analysis") != analysis.id or lock.get("version") != analysis.version:
        return empty
    entries = lock.get("images")
    if not isinstance(entries, dict) or not all(isinstance(e, dict) for e in entries.values()):
        raise RecastError(f"{path}: images: expected an object of image name -> {{tag, id, ...}}: "
                          f"delete the lock and run `{_build_command(analysis)}`")
    return lock


def _build_command(analysis: Analysis) -> str:
    from recast.catalog import command

    return command(analysis, "images build")


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
                          f"digits), so the image is not pinned: run `{_build_command(analysis)}` "
                          "to build it and record its ID")
    return ImageRef(name=name, tag=spec.tag, id=image_id)


def build_inputs(spec: ImageSpec, digests: dict | None = None) -> dict:
    """What ``spec`` is built from: its Dockerfile's sha256 and the sha256 of each context file it copies.

    ``digests`` caches file digests by (path, size, mtime, inode) across calls,
    so that images sharing a context hash each file once.
    """
    digests = {} if digests is None else digests
    try:
        dockerfile = spec.dockerfile.read_bytes()
    except OSError as err:
        raise RecastError(f"image {spec.name!r}: cannot read its Dockerfile {spec.dockerfile} ({err.strerror})") from None
    sources, why_all = _copied_sources(dockerfile.decode(errors="replace"))
    ignore, why_unread = _dockerignore(spec.context)
    files_ = {}
    for relative, path in _context_walk(spec.context, sources, ignore):
        files_[relative] = _digest(path, digests)
    scope = "files the Dockerfile copies, less .dockerignore"
    if why_all:
        scope = f"every file of the context ({why_all})"
    if why_unread:
        scope += f"; .dockerignore not applied ({why_unread})"
    return {"dockerfile_sha256": hashlib.sha256(dockerfile).hexdigest(),
            "context_sha256": hashlib.sha256(json.dumps(files_, sort_keys=True).encode()).hexdigest(),
            "context_files": files_, "context_scope": scope}


def stale(analysis: Analysis) -> dict[str, str]:
    """The built images of ``analysis`` that are out of date, each with why (what changed since its build)."""
    lock = read_lock(analysis)["images"]
    digests: dict = {}
    found = {}
    for name, spec in sorted(analysis.images.items()):
        entry = lock.get(name, {})
        if entry.get("tag") != spec.tag or not entry.get("id") or spec.pulled:
            continue  # not built (reported as such by whoever needs it), or not built here
        if not isinstance(entry.get("context_files"), dict) or not entry.get("dockerfile_sha256"):
            found[name] = "built before recast recorded what images are built from"
            continue
        now = build_inputs(spec, digests)
        if now["dockerfile_sha256"] != entry["dockerfile_sha256"]:
            found[name] = f"its Dockerfile {_shown(spec.dockerfile)} changed since it was built"
        elif now["context_sha256"] != entry.get("context_sha256"):
            before = entry["context_files"]
            changed = sorted(k for k in set(before) | set(now["context_files"])
                             if before.get(k) != now["context_files"].get(k))
            listed = ", ".join(changed[:3]) + (f" and {len(changed) - 3} more" if len(changed) > 3 else "")
            found[name] = f"{listed} changed since it was built"
    return found


def require_current(analysis: Analysis, allow_stale: bool = False) -> dict[str, str]:
    """Refuse out-of-date images (unless ``allow_stale``); return those found out of date, with why."""
    found = stale(analysis)
    if found and not allow_stale:
        reasons = "; ".join(f"{name}: {why}" for name, why in found.items())
        raise RecastError(f"image out of date: run `{_build_command(analysis)}` "
                          f"({reasons}); or pass --allow-stale-images to run the image that was built anyway")
    return found


def _shown(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _digest(path: Path, digests: dict) -> str:
    st = path.lstat()
    key = (str(path), st.st_size, st.st_mtime_ns, st.st_ino, st.st_mode)
    if key not in digests:
        if path.is_symlink():  # Docker sends the link itself
            digests[key] = "link:" + os.readlink(path)
        else:
            h = hashlib.sha256(b"x" if st.st_mode & 0o111 else b"-")  # the executable bit is copied too
            with open(path, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    h.update(chunk)
            digests[key] = h.hexdigest()
    return digests[key]


_ALL = ["."]


def _instructions(text: str) -> Iterator[str]:
    """A Dockerfile's instructions, continuation lines joined, comments left out."""
    current = ""
    for line in text.splitlines():
        if line.lstrip().startswith("#"):  # a comment, also between continuation lines
            continue
        if line.rstrip().endswith("\\"):
            current += line.rstrip()[:-1] + " "
            continue
        current += line
        if current.strip():
            yield current.strip()
        current = ""
    if current.strip():
        yield current.strip()


def _copied_sources(text: str) -> tuple[list[str], str | None]:
    """The context paths (patterns) a Dockerfile's COPY and ADD take, or everything and why."""
    if re.match(r"\s*#\s*escape\s*=", text):
        return _ALL, "a # escape= directive"
    sources = []
    for line in _instructions(text):
        keyword, _, rest = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "RUN" and re.search(r"--mount=\S*type=bind", rest) and "from=" not in rest:
            return _ALL, "a RUN mounts the context"
        if keyword not in ("COPY", "ADD"):
            continue
        if "<<" in rest:
            return _ALL, "a heredoc"
        args = rest.strip()
        flags = []
        while args.startswith("--"):
            flag, _, args = args.partition(" ")
            flags.append(flag)
            args = args.strip()
        if any(f.startswith("--from") for f in flags):
            continue  # from another stage or image, not from the context
        if any(f.startswith("--exclude") or f.startswith("--parents") for f in flags):
            return _ALL, f"{keyword} {' '.join(flags)}"
        try:
            words = json.loads(args) if args.startswith("[") else args.split()
        except ValueError:
            return _ALL, f"an unreadable {keyword}"
        if not isinstance(words, list) or len(words) < 2 or not all(isinstance(w, str) for w in words):
            return _ALL, f"an unreadable {keyword}"
        for source in words[:-1]:
            if "$" in source or "://" in source or source.startswith("git@"):
                return _ALL, f"{keyword} {source}"
            cleaned = os.path.normpath(source.lstrip("/")) if source.strip("/") else "."
            if cleaned == ".." or cleaned.startswith("../"):
                return _ALL, f"{keyword} {source}"
            sources.append(cleaned)
    return sources, None


def _pattern(pattern: str) -> re.Pattern | None:
    """A Docker path pattern (``*``, ``**``, ``?``, ``[...]``) as a regular expression; None if it has escapes."""
    if "\\" in pattern:
        return None
    out, i = "", 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**", i):
            i += 2
            if pattern.startswith("/", i):
                out += "(?:.*/)?"
                i += 1
            else:
                out += ".*"
            continue
        if c == "*":
            out += "[^/]*"
        elif c == "?":
            out += "[^/]"
        elif c == "[":
            end = pattern.find("]", i + 2)
            if end < 0:
                return None
            body = pattern[i + 1:end]
            out += "[" + ("^" + body[1:] if body[:1] in "^!" else body) + "]"
            i = end
        else:
            out += re.escape(c)
        i += 1
    return re.compile(out + r"\Z")


def _dockerignore(context: Path) -> tuple[list[tuple[bool, re.Pattern]], str | None]:
    """The context's .dockerignore as (excluded?, pattern) in order, or nothing and why it could not be read."""
    try:
        text = (context / ".dockerignore").read_text()
    except FileNotFoundError:
        return [], None
    except (OSError, UnicodeDecodeError) as err:
        return [], f"unreadable: {err}"
    rules = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        line = line[1:].strip() if negated else line
        line = os.path.normpath(line.lstrip("/")) if line.strip("/") else "."
        compiled = _pattern(line)
        if compiled is None:
            return [], f"pattern {line!r} uses escapes"
        rules.append((not negated, compiled))
    return rules, None


def _ignored(relative: str, rules: list[tuple[bool, re.Pattern]]) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parent folders decides."""
    parts = relative.split("/")
    prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    ignored = False
    for exclude, pattern in rules:
        if any(pattern.match(p) for p in prefixes):
            ignored = exclude
    return ignored


def _is_lock(relative: str) -> bool:
    name = relative.rsplit("/", 1)[-1]
    return name == LOCK_FILE or name.startswith(f".{LOCK_FILE}.")


def _context_walk(context: Path, sources: list[str], rules) -> Iterator[tuple[str, Path]]:
    """(relative path, path) of each context file that a source names and .dockerignore keeps, sorted."""
    literal = all(not re.search(r"[*?\[]", s) for s in sources)
    roots = ["."] if "." in sources or not literal else sorted(set(sources))
    chosen = [_pattern(s) for s in sources]
    negations = any(not exclude for exclude, _ in rules)
    seen = set()
    for root in roots:
        start = context / root
        if start.is_symlink() or start.is_file():
            candidates = [start]
        elif start.is_dir():
            candidates = []
            for folder, dirs, names in os.walk(start):
                rel_folder = os.path.relpath(folder, context)
                if not negations:  # a folder ignored without exceptions is not sent at all
                    dirs[:] = [d for d in dirs if not _ignored(os.path.normpath(f"{rel_folder}/{d}"), rules)]
                dirs.sort()
                # os.walk does not descend into links to folders; Docker sends such a link as a link
                candidates += [Path(folder, n) for n in sorted(names)]
                candidates += [Path(folder, d) for d in dirs if Path(folder, d).is_symlink()]
        else:
            continue
        for path in candidates:
            relative = path.relative_to(context).as_posix()
            if relative in seen or _is_lock(relative) or _ignored(relative, rules):
                continue
            if not ("." in sources or any(p is not None and any(p.match(q) for q in _parents(relative))
                                          for p in chosen)):
                continue
            seen.add(relative)
            yield relative, path


def _parents(relative: str) -> list[str]:
    parts = relative.split("/")
    return ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]


def build(analysis: Analysis, base: str | None = None, progress: Progress | None = None) -> dict[str, ImageRef]:
    """Build every image of ``analysis`` on ``base`` and record their IDs in the lock file.

    ``base`` None means the local base :data:`DEFAULT_BASE`, made first if
    missing. ``progress``, if given, receives each line of the build logs.
    """
    api = engine_api()
    hint = ""
    if base is None:
        base = DEFAULT_BASE
        if not all(spec.pulled for spec in analysis.images.values()):
            ensure_base(base, progress=progress)
    elif find_image(api, base) is None:
        # The engine will pull it; if that fails, the build error says why and this what to do.
        hint = (f"\n(the base image {base} is not in this Docker engine, so it must come from a registry; "
                f"without one, leave out --base to build on {DEFAULT_BASE}, made locally)")
    lock = read_lock(analysis)
    built = {}
    # What each image is built from, read before its build: a file edited during it leaves the image stale.
    digests: dict = {}
    inputs_before = {spec.name: build_inputs(spec, digests) for spec in analysis.images.values()
                     if not spec.pulled and spec.dockerfile.is_file() and spec.context.is_dir()}
    for spec in analysis.images.values():  # a missing Dockerfile or context: _build_one says so
        if spec.pulled:
            lock["images"][spec.name] = pull(api, analysis, spec)
            write_lock(analysis, lock)
            built[spec.name] = ImageRef(name=spec.name, tag=spec.tag, id=lock["images"][spec.name]["id"])
            continue
        try:
            image_id = _build_one(api, analysis, spec, base, progress)
        except RecastError as err:
            raise RecastError(f"{err}{hint}") from None
        lock["images"][spec.name] = {
            "tag": spec.tag,
            "id": image_id,
            **inputs_before[spec.name],
            "base": base,
            "base_id": find_image(api, base),
            "built_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        write_lock(analysis, lock)  # after each image, so a later failure keeps what was built
        built[spec.name] = ImageRef(name=spec.name, tag=spec.tag, id=image_id)
    return built


def pull(api, analysis: Analysis, spec: ImageSpec) -> dict:
    """A published image by its reference: the engine's own copy if it has one, else pulled; its lock entry.

    A reference by digest must match the image's recorded repository digest,
    whichever way the image came: a tag could name anything, a digest cannot.
    """
    import docker

    where = f"image {spec.name!r} ({spec.tag}) of analysis {analysis.id}"
    image_id = find_image(api, spec.tag)
    if image_id is None:
        try:
            api.pull(spec.tag)
        except docker.errors.APIError as err:
            raise RecastError(f"{where}: cannot pull it: {err.explanation or err} (on a machine without its "
                              "registry, load it first: docker load, or recast images load)") from None
        image_id = find_image(api, spec.tag)
        if image_id is None:
            raise RecastError(f"{where}: the engine reports no image after pulling it")
    digests = api.inspect_image(image_id).get("RepoDigests") or []
    if "@sha256:" in spec.tag and spec.tag.split("@", 1)[1] not in {d.split("@", 1)[-1] for d in digests}:
        raise RecastError(f"{where}: the image found has the digests {', '.join(digests) or 'none'}, not "
                          f"{spec.tag.split('@', 1)[1]}: refused")
    return {"tag": spec.tag, "id": image_id, "pulled": True, "repo_digests": sorted(digests),
            "built_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}


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


# Images by registry digest: `recast images push ID --registry HOST[:PORT]/PREFIX`.
#
# A pushed image is recorded in the lock beside its local ID, as
# ``registry_ref: REPOSITORY@sha256:DIGEST``: the digest names the one image
# the registry will ever serve under it. A machine without the image pulls
# exactly that reference (see :func:`pull_pinned`) and refuses it unless it is
# the pinned image ID; a tag is never pulled.

REGISTRY_REF = re.compile(r"[a-z0-9][a-z0-9._-]*(?::[0-9]+)?(?:/[a-z0-9][a-z0-9._-]*)+@sha256:[0-9a-f]{64}")


def registry_repository(registry: str, spec: ImageSpec) -> str:
    """Where ``push`` puts an image in ``registry`` (``HOST[:PORT]/PREFIX``): PREFIX/NAME, NAME its tag's last part."""
    repository = spec.tag.rsplit(":", 1)[0] if ":" in spec.tag.rsplit("/", 1)[-1] else spec.tag
    return f"{registry.strip().rstrip('/')}/{repository.rsplit('/', 1)[-1]}"


def registry_ref(analysis: Analysis, name: str) -> str | None:
    """The ``REPOSITORY@sha256:DIGEST`` an image was pushed as, if it was pushed since it was built."""
    spec = analysis.images.get(name)
    entry = read_lock(analysis)["images"].get(name, {})
    ref = entry.get("registry_ref")
    if spec is None or entry.get("tag") != spec.tag or not isinstance(ref, str):
        return None
    return ref


def push(analysis: Analysis, registry: str, names: list[str] | None = None,
         progress: Progress | None = None) -> dict[str, str]:
    """Push the pinned images of ``analysis`` to ``registry`` and record each one's digest reference in the lock.

    Returns image name -> ``REPOSITORY@sha256:DIGEST``. Only the pinned image
    (by its ID) is pushed, under its spec tag's version; the local ID stays in the lock.
    """
    import docker

    if not re.fullmatch(r"[a-z0-9][a-z0-9._-]*(?::[0-9]+)?(?:/[a-z0-9][a-z0-9._-]*)+/?", registry.strip()):
        raise RecastError(f"--registry {registry!r}: expected HOST[:PORT]/PREFIX, e.g. 127.0.0.1:5001/recast "
                          "(lower-case letters, digits, '.', '_', '-')")
    api = engine_api()
    names = names or sorted(analysis.images)
    pushed = {}
    for name in names:
        ref = resolve(analysis, name)
        if not ref.id:
            raise RecastError(f"image {name!r} of {analysis.id} is not built: run `{_build_command(analysis)}`")
        if find_image(api, ref.id) is None:
            raise RecastError(f"image {name!r} ({ref.id[:19]}) is not in this Docker engine, so it cannot be pushed: "
                              f"run `{_build_command(analysis)}`")
        repository = registry_repository(registry, analysis.images[name])
        version = ref.tag.rsplit(":", 1)[1] if ":" in ref.tag.rsplit("/", 1)[-1] else "latest"
        digest = None
        try:
            api.tag(ref.id, repository, version)
            for chunk in api.push(repository, tag=version, stream=True, decode=True):
                if "error" in chunk:
                    raise RecastError(f"pushing image {name!r} to {repository}:{version} failed: {chunk['error'].strip()}")
                if progress and chunk.get("status"):
                    progress(name, f"{chunk['status']} {chunk.get('progress', '')}".strip())
                digest = chunk.get("aux", {}).get("Digest", digest)
        except docker.errors.APIError as err:
            raise RecastError(f"pushing image {name!r} to {repository}: {err.explanation or err}") from None
        if not digest:
            raise RecastError(f"pushing image {name!r} to {repository}: the registry reported no digest")
        pushed[name] = f"{repository}@{digest}"
        lock = read_lock(analysis)  # read again: only this image's reference is added
        lock["images"][name]["registry_ref"] = pushed[name]
        write_lock(analysis, lock)
    return pushed


def pull_pinned(api, image_id: str, reference: str) -> None:
    """Pull ``reference`` (``REPOSITORY@sha256:DIGEST``) into the engine ``api`` and check it is ``image_id``.

    Anything else is refused: a reference that is not by digest, and an image
    whose ID is not the pinned one (which is then removed again).
    """
    import docker

    if not REGISTRY_REF.fullmatch(reference):
        raise RecastError(f"{reference[:120]!r} is not REPOSITORY@sha256:DIGEST: only a digest names one image "
                          "for good, so nothing else is pulled")
    repository, digest = reference.split("@")
    # Jobs of one run pull the same image at once: one at a time, or one job's removal of a wrong image
    # would leave the other looking at nothing ("is image None") instead of at what the registry gave.
    with _pull_lock(reference):
        try:
            api.pull(repository, tag=digest)
        except docker.errors.APIError as err:
            raise RecastError(f"pulling {reference} failed: {err.explanation or err}") from None
        found = find_image(api, reference)
        if found != image_id:
            try:
                api.remove_image(reference)
            except docker.errors.APIError:
                pass  # in use, or shared with another tag: left as it is, and never run
            raise RecastError(f"{reference} is image {found}, not the pinned {image_id}: refused")


@contextlib.contextmanager
def _pull_lock(reference: str):
    """An exclusive lock per image reference among this user's processes on this machine."""
    import fcntl

    name = hashlib.sha256(reference.encode()).hexdigest()[:16]
    path = Path(tempfile.gettempdir()) / f"recast-pull-{os.getuid()}-{name}.lock"
    with open(os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600), "r+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
