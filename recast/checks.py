"""Is a preserved analysis still reproducing? Comparisons and acceptance checks, as data.

Two kinds of checks, both plain data beside the workflow:

- **Reference results**: an example request's archived ``results.json``;
  :func:`compare` matches a new run's values against it, value by value, with
  the tolerances the spec declares (``|new - ref| <= absolute + relative * |ref|``;
  strings, booleans and structure must match exactly).
- **Acceptance checks** (``checks.yaml`` in the entry, as REANA does): files that
  must exist in the run folder, their sha256, values, and log lines that must
  appear, for whole runs and for single steps run on stored fixtures.
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from recast import files
from recast.errors import RecastError, SpecError

DEFAULT_RELATIVE = 1e-6
DEFAULT_ABSOLUTE = 0.0


@dataclass(frozen=True)
class Outcome:
    """One checked thing: a value, a file, a log line."""

    name: str
    passed: bool
    expected: Any = None
    found: Any = None
    message: str = ""


def flatten(value: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """``{"points": [{"mu": 1.2}]}`` -> ``("points[0].mu", 1.2)``: one path per leaf."""
    if isinstance(value, dict):
        if not value:
            yield prefix, {}
        for key in sorted(value):
            yield from flatten(value[key], f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(value, list):
        if not value:
            yield prefix, []
        for i, item in enumerate(value):
            yield from flatten(item, f"{prefix}[{i}]")
    else:
        yield prefix, value


def close(found: Any, expected: Any, relative: float, absolute: float) -> bool:
    if isinstance(expected, bool) or isinstance(found, bool) or not isinstance(expected, (int, float)):
        return found == expected
    if not isinstance(found, (int, float)):
        return False
    if math.isnan(expected):
        return math.isnan(found)
    return abs(found - expected) <= absolute + relative * abs(expected)


def compare(found: dict, reference: dict, relative: float = DEFAULT_RELATIVE,
            absolute: float = DEFAULT_ABSOLUTE) -> list[Outcome]:
    """Value-by-value comparison of two results' ``values``; every reference leaf is checked,
    and a value the new run has but the reference lacks is reported too."""
    new = dict(flatten(found))
    ref = dict(flatten(reference))
    outcomes = []
    for path, expected in ref.items():
        if path not in new:
            outcomes.append(Outcome(path, False, expected, None, "missing from the new results"))
            continue
        ok = close(new[path], expected, relative, absolute)
        message = "" if ok else _drift(new[path], expected)
        outcomes.append(Outcome(path, ok, expected, new[path], message))
    for path in sorted(set(new) - set(ref)):
        outcomes.append(Outcome(path, False, None, new[path], "not in the reference results"))
    return outcomes


def _drift(found, expected) -> str:
    if isinstance(found, (int, float)) and isinstance(expected, (int, float)) and not isinstance(found, bool):
        if expected:
            return f"drifted by {found - expected:+.3g} (relative {(found - expected) / abs(expected):+.2e})"
        return f"drifted by {found - expected:+.3g}"
    return "differs"


def tolerances(declared: dict | None, source: str) -> tuple[float, float]:
    """(relative, absolute) from a spec's ``tolerances`` block, checked to be numbers."""
    declared = declared or {}
    values = []
    for key, default in (("relative", DEFAULT_RELATIVE), ("absolute", DEFAULT_ABSOLUTE)):
        value = declared.get(key, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0 or math.isnan(value):
            raise SpecError([(source, f"tolerances.{key}", f"expected a non-negative number, found {value!r}")])
        values.append(float(value))
    return values[0], values[1]


def acceptance(run_dir: Path, checks: dict, values: dict | None = None, relative: float = DEFAULT_RELATIVE,
               absolute: float = DEFAULT_ABSOLUTE) -> list[Outcome]:
    """Apply acceptance checks (``files``, ``sha256``, ``values``, ``logs``) to a run or step folder.

    ``logs`` maps a log file (relative to ``run_dir``) to regular expressions
    that must each match some line of it; ``values`` are compared with
    :func:`compare` against ``values`` (the run's or the step's named values).
    """
    outcomes = []
    for relative_path in checks.get("files", []):
        present = _read(run_dir, relative_path) is not None
        outcomes.append(Outcome(f"file {relative_path}", present, message="" if present else "missing"))
    for relative_path, digest in checks.get("sha256", {}).items():
        data = _read(run_dir, relative_path)
        found = hashlib.sha256(data).hexdigest() if data is not None else None
        outcomes.append(Outcome(f"sha256 {relative_path}", found == digest, digest, found,
                                "" if found == digest else ("missing" if found is None else "checksum differs")))
    if "values" in checks:
        for outcome in compare(_pick(values or {}, checks["values"]), checks["values"], relative, absolute):
            outcomes.append(Outcome(f"value {outcome.name}", outcome.passed, outcome.expected, outcome.found,
                                    outcome.message))
    for relative_path, patterns in checks.get("logs", {}).items():
        data = _read(run_dir, relative_path)
        text = data.decode(errors="replace") if data is not None else None
        for pattern in patterns:
            ok = text is not None and re.search(pattern, text, re.MULTILINE) is not None
            outcomes.append(Outcome(f"log {relative_path} ~ {pattern}", ok,
                                    message="" if ok else ("log missing" if text is None else "no matching line")))
    return outcomes


def _pick(values: dict, wanted: dict) -> dict:
    """Only the values a check names, so that extra values are not counted as failures."""
    return {k: values[k] for k in wanted if k in values}


def _read(run_dir: Path, relative: str) -> bytes | None:
    """A file a run left, read without following links (jobs write there); None: missing, a link, or outside."""
    try:
        return files.read_bytes(run_dir, "/".join(files.relative_parts(relative)))
    except (OSError, RecastError):
        return None
