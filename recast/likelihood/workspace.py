"""Published likelihoods: a background-only workspace and its signal points.

A signal point is a JSON Patch (RFC 6902) that adds the signal to the
background-only workspace. HEPData records ship them either as one
``patch.<name>.json`` file per point or as one pyhf ``patchset.json`` whose
metadata names the model parameters and carries the digest of the workspace
it belongs to. Both become :class:`SignalPoint` objects here; nothing else in
the engine needs to know which layout a point came from.

Every problem is reported as a :class:`~recast.likelihood.errors.LikelihoodError`
naming the file, the point and what was expected.
"""

from __future__ import annotations

import copy
import functools
import json
import math
import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Iterable, Sequence

from recast.likelihood.errors import PatchError, WorkspaceError

_PATCH_FILE = re.compile(r"^patch\.(?P<name>.+)\.json$")
_SAMPLE_PATH = re.compile(r"^/channels/\d+/samples/(\d+|-)$")


@dataclass(frozen=True)
class SignalPoint:
    """One signal hypothesis: a name, its JSON Patch and the model parameter values."""

    name: str
    patch: list[dict[str, Any]] = field(repr=False)
    source: str
    values: dict[str, float] = field(default_factory=dict)

    def describe(self) -> str:
        return f"{self.source} (point {self.name})"


# pyhf's documents nest about 10 deep (a patchset's sample data); copy.deepcopy and jsonschema
# recurse once per level and overflow Python's stack a few hundred levels down
MAX_JSON_DEPTH = 64


_SCALARS = frozenset((int, float, str, bool, type(None)))


def json_depth(document: Any) -> int:
    """How deep lists and objects nest in ``document`` (a scalar is 0), counted without recursion.

    A list or object of scalars only (most of a likelihood: bin contents) is
    recognised from the set of its items' types, without visiting each item
    in Python (a 57 MB patchset: 0.24 -> 0.06 s).
    """
    deepest, stack = 0, [(document, 1)]
    while stack:
        node, level = stack.pop()
        children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else None
        if children is None:
            continue
        deepest = max(deepest, level)
        if _SCALARS.issuperset(map(type, children)):
            continue
        stack.extend((child, level + 1) for child in children if isinstance(child, (dict, list)))
    return deepest


def _finite_float(literal: str) -> float:
    """A JSON number as a float; one too large for a float (1e400, 400 digits) is an error, not infinity."""
    value = float(literal)
    if math.isinf(value):
        raise ValueError(f"a number of {len(literal)} characters ({literal[:12]}...) is too large for a 64-bit float")
    return value


def _float_sized_int(literal: str) -> int:
    """A JSON integer; one beyond a 64-bit float's range (400 digits) is an error (it would fail as a bin content)."""
    value = int(literal)
    if len(literal) > 300 and abs(value) > 1.7976931348623157e308:
        raise ValueError(f"a number of {len(literal)} characters ({literal[:12]}...) is too large for a 64-bit float")
    return value


def _no_constant(name: str):
    """Python's json reads NaN and Infinity, which JSON does not have: refused (a yield of NaN ends in
    fits that cannot converge)."""
    raise ValueError(f"{name} is not a JSON number")


def read_json(path: Path, error: type[Exception], what: str) -> Any:
    """Parse a JSON file, raising ``error`` that names the file, line and column (or the nesting depth)."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise error(f"{path}: no such file; expected {what}") from None
    except OSError as err:
        raise error(f"{path}: cannot read {what}: {err}") from None
    if raw[:2] == b"\x1f\x8b" or raw[257:262] == b"ustar" or raw[:3] in (b"BZh", b"\xfd7z"):
        raise error(
            f"{path}: a compressed or tar archive, not JSON; expected {what}. Give the archive itself as WORKSPACE to "
            f"`recast likelihood`, or import it once: recast import hepdata {path}"
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise error(f"{path}: cannot read {what}: not UTF-8 text ({err})") from None
    too_deep = f"{path}: lists or objects nest more than {MAX_JSON_DEPTH} levels deep; expected {what}"
    try:
        document = json.loads(text, parse_float=_finite_float, parse_int=_float_sized_int, parse_constant=_no_constant)
    except json.JSONDecodeError as err:
        raise error(f"{path}: line {err.lineno} column {err.colno}: not valid JSON ({err.msg}); expected {what}") from None
    except RecursionError:  # json's parser gives up about 1000 levels down
        raise error(too_deep) from None
    except ValueError as err:  # e.g. an integer of more than 4300 digits
        raise error(f"{path}: not valid JSON ({err}); expected {what}") from None
    if json_depth(document) > MAX_JSON_DEPTH:
        raise error(too_deep)
    return document


def _schema_message(err: Exception) -> str:
    """The field path and the short message of a pyhf InvalidSpecification (not the whole instance)."""
    path = getattr(err, "path", "") or "(top level)"
    parent = getattr(err, "parent", None)
    return f"field {path}: {_short(getattr(parent, 'message', None) or str(err).splitlines()[0])}"


def _short(message: str) -> str:
    """jsonschema quotes the whole offending value; keep its beginning and end."""
    return message if len(message) <= 300 else message[:150] + " … " + message[-140:]


def _plain_parameter(parameter: Any) -> bool:
    if not isinstance(parameter, dict) or not isinstance(parameter.get("name"), str):
        return False
    for key, value in parameter.items():
        if key in ("inits", "auxdata", "factors", "sigmas"):
            if not _numbers(value):
                return False
        elif key == "bounds":
            if not (isinstance(value, list) and value and all(isinstance(b, list) and all(type(x) in (int, float) for x in b) for b in value)):
                return False
        elif key == "fixed":
            if type(value) is not bool:
                return False
        elif key != "name":
            return False
    return True


def _plainly_valid_workspace(spec: Any) -> bool:
    """True only for a workspace that pyhf's workspace.json schema certainly accepts.

    Stricter than the schema (exactly its keys, every sample and modifier of
    the plain form :func:`_plainly_valid` accepts in a patch): anything else,
    valid or not, goes through jsonschema, which then names what is wrong.
    jsonschema took 0.7 s for the 1Lbb workspace.
    """
    if not isinstance(spec, dict) or spec.keys() != {"channels", "measurements", "observations", "version"}:
        return False
    if spec["version"] != "1.0.0" or type(spec["version"]) is not str:
        return False
    channels, observations, measurements = spec["channels"], spec["observations"], spec["measurements"]
    if not all(isinstance(x, list) and x for x in (channels, observations, measurements)):
        return False
    for channel in channels:
        if not isinstance(channel, dict) or channel.keys() != {"name", "samples"} or not isinstance(channel["name"], str):
            return False
        samples = channel["samples"]
        if not isinstance(samples, list) or not samples:
            return False
        for sample in samples:
            if not (isinstance(sample, dict) and sample.keys() == {"name", "data", "modifiers"} and isinstance(sample["name"], str)
                    and _numbers(sample["data"]) and isinstance(sample["modifiers"], list)
                    and all(_plain_modifier(m) for m in sample["modifiers"])):
                return False
    for observation in observations:
        if not (isinstance(observation, dict) and observation.keys() == {"name", "data"} and isinstance(observation["name"], str)
                and _numbers(observation["data"])):
            return False
    return all(_plain_measurement(measurement) for measurement in measurements)


def _plain_measurement(measurement: Any) -> bool:
    """True only for a measurement that pyhf's measurement schema certainly accepts (stricter than it)."""
    if not isinstance(measurement, dict) or measurement.keys() != {"name", "config"} or not isinstance(measurement["name"], str):
        return False
    config = measurement["config"]
    if not isinstance(config, dict) or config.keys() != {"poi", "parameters"} or not isinstance(config["poi"], str):
        return False
    return isinstance(config["parameters"], list) and all(_plain_parameter(p) for p in config["parameters"])


def validate_workspace_spec(spec: Any, where: str) -> None:
    import pyhf

    if not isinstance(spec, dict):
        raise WorkspaceError(f"{where}: expected a pyhf workspace (a JSON object), found {type(spec).__name__}")
    if _plainly_valid_workspace(spec):
        return
    try:
        pyhf.schema.validate(spec, "workspace.json")
    except pyhf.exceptions.InvalidSpecification as err:
        raise WorkspaceError(f"{where}: {_schema_message(err)} (expected pyhf's workspace.json schema)") from None


@functools.cache
def _validator(schema_name: str, pointer: str = ""):
    """A reusable validator for pyhf's schema ``schema_name`` (at ``pointer`` inside it).

    ``pyhf.schema.validate`` builds a new resolver per call (75 ms per patch);
    a scan of hundreds of patches validates each one with a cached validator.
    """
    import jsonschema
    import pyhf
    from referencing import Registry, Resource
    from referencing.jsonschema import DRAFT6

    registry = Registry()
    for name in ("defs.json", "jsonpatch.json"):
        schema = pyhf.schema.load_schema(f"{pyhf.schema.version}/{name}")
        registry = registry.with_resource(name, Resource.from_contents(schema, default_specification=DRAFT6))
    return jsonschema.Draft6Validator({"$ref": f"{schema_name}#{pointer}"}, registry=registry)


def _first_error(validator, instance):
    return next(iter(sorted(validator.iter_errors(instance), key=lambda e: list(e.absolute_path))), None)


def _numbers(value: Any) -> bool:
    """A non-empty list of JSON numbers (not booleans), as pyhf's schema asks for bin contents."""
    return isinstance(value, list) and bool(value) and all(type(x) in (int, float) for x in value)


def _plain_modifier(modifier: Any) -> bool:
    if not isinstance(modifier, dict) or modifier.keys() != {"name", "type", "data"} or not isinstance(modifier["name"], str):
        return False
    kind, data = modifier["type"], modifier["data"]
    if kind in ("normfactor", "shapefactor"):
        return data is None
    if kind == "lumi":
        return data is None and modifier["name"] == "lumi"
    if kind in ("shapesys", "staterror"):
        return _numbers(data)
    if kind == "normsys":
        return isinstance(data, dict) and data.keys() == {"hi", "lo"} and all(type(data[k]) in (int, float) for k in ("hi", "lo"))
    if kind == "histosys":
        return isinstance(data, dict) and data.keys() == {"hi_data", "lo_data"} and _numbers(data["hi_data"]) and _numbers(data["lo_data"])
    return False


def _plainly_valid(ops: Any) -> bool:
    """True only for a patch that pyhf's jsonpatch and sample schemas certainly accept.

    Stricter than the schemas (no extra keys, only add, replace and remove,
    every modifier exactly as defs.json describes it): anything else, valid
    or not, goes through jsonschema, which then names what is wrong.
    """
    if not isinstance(ops, list):
        return False
    for op in ops:
        if not isinstance(op, dict) or not isinstance(op.get("path"), str):
            return False
        kind = op.get("op")
        if kind == "remove":
            if op.keys() != {"op", "path"}:
                return False
        elif kind in ("add", "replace"):
            if op.keys() != {"op", "path", "value"}:
                return False
            if _SAMPLE_PATH.match(op["path"]):
                sample = op["value"]
                if not (isinstance(sample, dict) and sample.keys() == {"name", "data", "modifiers"} and isinstance(sample["name"], str)
                        and _numbers(sample["data"]) and isinstance(sample["modifiers"], list)
                        and all(_plain_modifier(m) for m in sample["modifiers"])):
                    return False
        else:
            return False
    return True


def validate_patch(ops: Any, where: str) -> None:
    """Check a JSON Patch against pyhf's jsonpatch schema and each added sample against pyhf's sample schema.

    This is much cheaper than validating every patched workspace (9 s for a
    4 MB workspace) and catches what a published signal patch gets wrong.
    A patch of the plain form signal patches have (:func:`_plainly_valid`,
    stricter than the schemas) skips jsonschema, which took 10 ms of a
    sbottom point's 80.
    """
    if _plainly_valid(ops):
        return
    error = _first_error(_validator("jsonpatch.json"), ops)
    if error is not None:
        field_path = "/".join(str(p) for p in error.absolute_path) or "(top level)"
        raise PatchError(f"{where}: field {field_path}: {_short(error.message)} (expected a JSON Patch, pyhf's jsonpatch.json schema)")
    validator = _validator("defs.json", "/definitions/sample")
    for index, op in enumerate(ops):
        if op.get("op") in ("add", "replace") and _SAMPLE_PATH.match(op.get("path", "")):
            error = _first_error(validator, op["value"])
            if error is not None:
                field_path = "/".join(str(p) for p in error.absolute_path)
                raise PatchError(
                    f"{where}: operation {index} ({op['op']} {op['path']}): sample field '{field_path}': "
                    f"{_short(error.message)} (expected a sample of pyhf's defs.json schema)"
                )


def _copy_parents(doc: Any, pointer: str) -> None:
    """Shallow-copy every container on the way to ``pointer``'s parent, so an in-place patch leaves the original alone."""
    import jsonpointer

    node = doc
    for token in jsonpointer.JsonPointer(pointer).parts[:-1]:
        try:
            key = int(token) if isinstance(node, list) else token
            child = copy.copy(node[key])
        except (KeyError, IndexError, ValueError, TypeError):
            return  # the patch itself reports the bad path
        node[key] = child
        node = child


def _apply_shared(doc: Any, op: dict) -> bool:
    """An ``add``, ``replace`` or ``remove`` of ``op`` applied in place with its value shared, not copied.

    jsonpatch deep-copies every added value (45 ms of a 1Lbb point, whose
    signal samples are large). False, with nothing changed, for anything but
    the plain cases (a key of an object, an index of a list, or ``-``); the
    caller then applies the operation with jsonpatch, which also words its errors.
    """
    import jsonpointer

    kind = op.get("op")
    if kind not in ("add", "replace", "remove") or (kind != "remove" and "value" not in op):
        return False
    try:
        parts = jsonpointer.JsonPointer(op["path"]).parts
    except (jsonpointer.JsonPointerException, TypeError):
        return False
    if not parts:
        return False
    parent = doc
    for token in parts[:-1]:
        if isinstance(parent, dict) and token in parent:
            parent = parent[token]
        elif isinstance(parent, list) and token.isdigit() and (token == "0" or token[0] != "0") and int(token) < len(parent):
            parent = parent[int(token)]
        else:
            return False
    last = parts[-1]
    if isinstance(parent, dict):
        if kind != "add" and last not in parent:
            return False
        if kind == "remove":
            del parent[last]
        else:
            parent[last] = op["value"]
        return True
    if not isinstance(parent, list):
        return False
    if kind == "add" and last == "-":
        parent.append(op["value"])
        return True
    if not last.isdigit() or (last != "0" and last[0] == "0"):
        return False
    index = int(last)
    if index > len(parent) or (kind != "add" and index == len(parent)):
        return False
    if kind == "add":
        parent.insert(index, op["value"])
    elif kind == "replace":
        parent[index] = op["value"]
    else:
        del parent[index]
    return True


def apply_patch(spec: dict, point: SignalPoint, where: str, share_values: bool = False) -> dict:
    """``spec`` with the point's patch applied, one operation at a time so an error names it.

    Containers on the patched paths are copied, the rest is shared with
    ``spec`` (a deep copy of a 4 MB workspace per point costs more than the fit).
    With ``share_values``, added values are the patch's own objects (not
    copied): only for a result that is read, never written (a model's spec).
    """
    import jsonpatch
    import jsonpointer

    patched = copy.copy(spec)
    for index, op in enumerate(point.patch):
        for key in ("path", "from"):
            if isinstance(op.get(key), str):
                _copy_parents(patched, op[key])
        if share_values and isinstance(op, dict) and _apply_shared(patched, op):
            continue
        try:
            patched = jsonpatch.apply_patch(patched, [op], in_place=True)
        except (jsonpatch.JsonPatchException, jsonpointer.JsonPointerException, KeyError, IndexError, TypeError) as err:
            raise PatchError(
                f"{point.describe()}: operation {index} ({op.get('op')} {op.get('path')}) does not apply to {where}: {err}"
            ) from None
    return patched


# one token of a point name that is a number: 400, 60.5, or 350p0 (HEPData names write the decimal point as p)
_NUMBER_TOKEN = re.compile(r"^(?P<int>\d+)(?:[.p](?P<frac>\d+))?$")


def point_values_from_name(name: str) -> list[float]:
    """The numbers in a point name, wherever they are, in order.

    ``sbottom_1300_205_60`` -> [1300, 205, 60]; ``DS_400_40_Staus`` -> [400, 40];
    ``ERJR_350p0_150p0`` -> [350, 150]; ``C1N2_Wh_hbb_900_250`` -> [900, 250]
    (``C1N2`` is a word, not a number: only whole ``_``-separated tokens count).
    """
    values: list[float] = []
    for token in name.split("_"):
        match = _NUMBER_TOKEN.match(token)
        if match:
            values.append(float(f"{match['int']}.{match['frac'] or 0}"))
    return values


def labelled_values(name: str, numbers: Sequence[float], labels: Sequence[str] | None, where: str) -> dict[str, float]:
    """``{label: number}`` for a point; labels that do not match the numbers found are an error, not ``{}``."""
    if not labels:
        return {f"p{i + 1}": v for i, v in enumerate(numbers)}
    labels = list(labels)
    if len(labels) != len(numbers):
        found = ", ".join(f"{v:g}" for v in numbers) or "none"
        raise PatchError(
            f"{where}: {len(labels)} parameter names ({', '.join(labels)}) but the point name {name!r} has "
            f"{len(numbers)} numbers ({found}); give as many names as numbers (--labels)"
        )
    return dict(zip(labels, numbers))


def relabel(points: Sequence[SignalPoint], labels: Sequence[str], where: str) -> list[SignalPoint]:
    """The points with their values renamed to ``labels`` (values from a patchset, else from the names)."""
    renamed = []
    for point in points:
        numbers = list(point.values.values()) if point.values else point_values_from_name(point.name)
        values = labelled_values(point.name, numbers, labels, f"{where} (point {point.name})")
        renamed.append(SignalPoint(point.name, point.patch, point.source, values))
    return renamed


def load_patch_file(path: str | Path, labels: Sequence[str] | None = None, validate: bool = True) -> SignalPoint:
    """One ``patch.<name>.json`` file as a signal point; parameter values come from the name."""
    path = Path(path)
    ops = read_json(path, PatchError, "a JSON Patch (a list of operations)")
    match = _PATCH_FILE.match(path.name)
    name = match.group("name") if match else path.stem
    if validate:
        validate_patch(ops, f"{path} (point {name})")
    values = labelled_values(name, point_values_from_name(name), labels, f"{path} (point {name})")
    return SignalPoint(name=name, patch=ops, source=str(path), values=values)


@dataclass(frozen=True)
class PatchSetInfo:
    """What a pyhf patchset says about itself."""

    path: str
    labels: list[str]
    description: str
    references: dict[str, str]
    digests: dict[str, str]
    points: list[SignalPoint] = field(repr=False)


def load_patchset(path: str | Path, workspace_spec: dict | None = None, workspace_path: str = "") -> PatchSetInfo:
    """A pyhf patchset file, validated by :class:`pyhf.patchset.PatchSet`.

    With ``workspace_spec``, the patchset's digest is checked against it
    (:meth:`pyhf.patchset.PatchSet.verify`).
    """
    import pyhf

    path = Path(path)
    spec = read_json(path, PatchError, "a pyhf patchset")
    try:
        patchset = pyhf.PatchSet(spec)
    except pyhf.exceptions.InvalidSpecification as err:
        raise PatchError(f"{path}: {_schema_message(err)} (expected pyhf's patchset.json schema)") from None
    except pyhf.exceptions.InvalidPatchSet as err:
        raise PatchError(f"{path}: not a valid patchset: {err}") from None
    if workspace_spec is not None:
        try:
            patchset.verify(pyhf.Workspace(workspace_spec, validate=False))
        except pyhf.exceptions.PatchSetVerificationError:
            found = pyhf.utils.digest(workspace_spec, algorithm="sha256")
            raise PatchError(
                f"{path}: metadata.digests.sha256 is {patchset.digests.get('sha256')} but the background-only "
                f"workspace {workspace_path or '(given)'} has sha256 {found}: the patchset belongs to another workspace"
            ) from None
    labels = list(patchset.labels)
    points = [
        SignalPoint(
            name=patch.name,
            patch=patch.patch,
            source=f"{path}",
            values={label: float(v) for label, v in zip(labels, patch.values)},
        )
        for patch in patchset.patches
    ]
    return PatchSetInfo(
        path=str(path),
        labels=labels,
        description=patchset.description,
        references=dict(patchset.references),
        digests=dict(patchset.digests),
        points=points,
    )


def modifier_settings(normsys: str = "code4", histosys: str = "code4p") -> dict:
    """pyhf's ``modifier_settings`` for the interpolation codes (pyhf 0.7 defaults: code4, code4p)."""
    return {"normsys": {"interpcode": normsys}, "histosys": {"interpcode": histosys}}


class Likelihood:
    """A background-only workspace with the signal points that may be applied to it."""

    def __init__(self, path: Path, spec: dict, points: list[SignalPoint], labels: list[str] | None = None):
        self.path = Path(path)
        self.spec = spec
        self.points = points
        self.labels = list(labels or [])

    def __repr__(self) -> str:
        return f"Likelihood({str(self.path)!r}, {len(self.points)} signal points)"

    @cached_property
    def workspace(self):
        """The background-only :class:`pyhf.Workspace` (validated when loaded)."""
        import pyhf

        return pyhf.Workspace(self.spec, validate=False)

    @cached_property
    def measurement(self) -> dict:
        """The workspace's measurement: pyhf's first, as ``get_measurement()`` picks it.

        pyhf validates it with jsonschema on every call (which also imports
        requests to resolve the schema's references: 50 ms a process); a
        measurement of the plain form (:func:`_plain_measurement`, stricter
        than the schema) is taken as it is, anything else from pyhf.
        """
        measurements = self.spec.get("measurements") if isinstance(self.spec, dict) else None
        if isinstance(measurements, list) and len(measurements) == 1 and _plain_measurement(measurements[0]):
            return measurements[0]
        return self.workspace.get_measurement()

    @cached_property
    def _channels_as_arrays(self) -> list:
        """The channels with every list of numbers as a numpy array.

        ``pyhf.Model`` deep-copies its spec: half the time of building a
        sbottom model goes to copying lists of floats one by one; arrays copy
        in one step. The model built is the same (its log-likelihood agrees
        bit for bit).
        """
        return _numbers_as_arrays(self.spec["channels"])

    @cached_property
    def _build_cache(self):
        """What pyhf's model builders collected for the background samples, reused by every point
        (:mod:`recast.likelihood.building`)."""
        from recast.likelihood.building import BuildCache

        return BuildCache()

    def point(self, name: str) -> SignalPoint:
        for point in self.points:
            if point.name == name:
                return point
        known = ", ".join(p.name for p in self.points[:5]) + (", ..." if len(self.points) > 5 else "")
        raise PatchError(f"{self.path}: no signal point named {name!r} (known: {known or 'none'})")

    def select(self, names: Iterable[str] | None = None, where: dict[str, float] | None = None) -> list[SignalPoint]:
        """Points by name (exact names or shell patterns) and/or by parameter values (``{"m1": 900}``)."""
        import fnmatch

        chosen = list(self.points)
        if names:
            patterns = list(names)
            for pattern in patterns:
                if not any(fnmatch.fnmatchcase(p.name, pattern) for p in chosen):
                    raise PatchError(f"{self.path}: no signal point matches {pattern!r}")
            chosen = [p for p in chosen if any(fnmatch.fnmatchcase(p.name, pat) for pat in patterns)]
        for label, value in (where or {}).items():
            if self.points and not any(label in p.values for p in self.points):
                raise PatchError(f"{self.path}: no parameter named {label!r} (known: {', '.join(self.labels) or 'none'})")
            chosen = [p for p in chosen if abs(p.values.get(label, float("nan")) - float(value)) < 1e-9]
        return chosen

    def patched_workspace(self, point: SignalPoint | None, validate: bool = True):
        """A :class:`pyhf.Workspace` with the point's signal added (``None``: background only)."""
        import pyhf

        if point is None:
            return self.workspace
        spec = apply_patch(self.spec, point, str(self.path))
        if validate:
            validate_workspace_spec(spec, f"{self.path} patched with {point.describe()}")
        return pyhf.Workspace(spec, validate=False)

    def model_and_data(self, point: SignalPoint | None, settings: dict | None = None, validate: bool = False):
        """The pyhf model and observed data (main + auxiliary) of one signal point.

        With ``validate``, the whole patched workspace is checked against
        pyhf's schema, as ``pyhf cls`` does. Without it, the patch alone has
        been checked when it was loaded and only the channels are patched and
        copied: pyhf builds the same model from the same numbers.
        """
        import pyhf

        from recast.likelihood.building import cached_model_building

        settings = settings or modifier_settings()
        where = point.describe() if point else str(self.path)
        only_channels = point is None or all(str(op.get("path", "")).startswith("/channels/") for op in point.patch)
        try:
            if validate or not only_channels:
                workspace = self.patched_workspace(point, validate=validate)
                model = workspace.model(modifier_settings=settings, validate=False)
                data = workspace.data(model)
            else:
                measurement = self.measurement
                shared = _array_safe(point)
                channels = self._channels_as_arrays if shared else self.spec["channels"]
                patched = {"channels": channels} if point is None else apply_patch({"channels": channels}, point, str(self.path), share_values=shared)
                modelspec = (_SharedChannels if shared else dict)(channels=patched["channels"], parameters=measurement["config"]["parameters"])
                with cached_model_building(self._build_cache):
                    model = pyhf.Model(
                        modelspec, poi_name=measurement["config"]["poi"], modifier_settings=settings, validate=False
                    )
                observations = self.workspace.observations
                data = [x for channel in model.config.channels for x in observations[channel]] + model.config.auxdata
        except pyhf.exceptions.InvalidModel as err:
            raise PatchError(f"{where}: the patched workspace is not a valid model: {err}") from None
        except KeyError as err:
            raise PatchError(f"{where}: the patched workspace has no observations for channel {err}") from None
        if model.config.poi_index is None:
            raise PatchError(f"{where}: the measurement has no parameter of interest (measurements[].config.poi)")
        return model, data


def _numbers_as_arrays(node: Any) -> Any:
    import numpy as np

    if isinstance(node, dict):
        return {key: _numbers_as_arrays(value) for key, value in node.items()}
    if isinstance(node, list):
        if node and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in node):
            array = np.asarray(node, dtype=float)
            array.flags.writeable = False  # shared by every point's model (_SharedChannels): never written
            return array
        return [_numbers_as_arrays(x) for x in node]
    return node


class _SharedChannels(dict):
    """A model spec whose channels pyhf's ``Model`` does not deep-copy.

    ``pyhf.Model`` deep-copies its spec "as it may be modified by config";
    pyhf 0.7's model building reads the channels (its builders collect and
    then concatenate the numbers into new arrays) and only the parameters'
    settings are handed on. Copying a sbottom spec's ~700 modifier dicts was a
    quarter of building a point's model. The channels here are the point's
    patched copy (:func:`apply_patch` copies what the patch touches) over the
    likelihood's read-only arrays, so a write would raise, not leak into
    another point; the signal's samples are the patch's own objects, not
    copies (a test checks that building a model leaves a patch as it was);
    the parameters are copied as before.
    """

    def __deepcopy__(self, memo):
        return {key: value if key == "channels" else copy.deepcopy(value, memo) for key, value in self.items()}


def _array_safe(point: SignalPoint | None) -> bool:
    """A JSON Patch ``test`` or ``copy``/``move`` of numbers must see lists, not arrays."""
    return point is None or all(op.get("op") in ("add", "replace", "remove") for op in point.patch)


def load_workspace(
    path: str | Path,
    patches: Sequence[str | Path] = (),
    *,
    patchset: str | Path | None = None,
    points: Sequence[str] | None = None,
    labels: Sequence[str] | None = None,
    validate: bool = True,
) -> Likelihood:
    """Load a background-only workspace and its signal points.

    ``patches`` are ``patch.<name>.json`` JSON Patch files; ``patchset`` is a
    pyhf patchset whose digest is verified against the workspace, of which
    ``points`` selects patches by name (all when omitted).
    """
    path = Path(path)
    spec = read_json(path, WorkspaceError, "a pyhf workspace")
    if validate:
        validate_workspace_spec(spec, str(path))
    found: list[SignalPoint] = [load_patch_file(p, labels=labels, validate=validate) for p in patches]
    found_labels = list(labels or [])
    if patchset is not None:
        info = load_patchset(patchset, workspace_spec=spec, workspace_path=str(path))
        patchset_points = info.points
        if labels and list(labels) != info.labels:
            patchset_points = relabel(info.points, labels, str(patchset))
        found_labels = found_labels or info.labels
        by_name = {p.name: p for p in patchset_points}
        if points:
            missing = [name for name in points if name not in by_name]
            if missing:
                known = ", ".join(list(by_name)[:5])
                raise PatchError(f"{patchset}: no patch named {missing[0]!r} in the patchset (known: {known}, ...)")
            found.extend(by_name[name] for name in points)
        else:
            found.extend(patchset_points)
    elif points:
        raise PatchError(f"{path}: points {list(points)} were asked for but no patchset was given")
    if not found_labels and found:
        found_labels = list(found[0].values)
    return Likelihood(path, spec, found, found_labels)
