"""What the operator allows a job and a request: the bounds recast enforces, in one place.

Templates ask for resources (cores, memory, time limit, output size); a
template outside these bounds fails validation, and nothing larger is ever
given to a container. The defaults fit a shared workstation; an operator sets
others in a YAML file named by ``RECAST_LIMITS`` (the one place they live)::

    max_cores: 8
    max_memory: 16GiB
    max_time_limit: 24h
    max_output: 20GiB

Minimums are not the operator's: below them a job cannot run at all (and
``memory: 0B`` would mean *unlimited* to Docker), so they are fixed here.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path

from recast.errors import RecastError

MEMORY_UNITS = {"B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
                "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}
SECONDS = {"s": 1, "m": 60, "h": 3600}

MIN_CORES = 0.01
MIN_MEMORY_BYTES = 32 * 2**20  # a Python process with numpy needs about this much
MIN_TIME_LIMIT_S = 1.0
MIN_OUTPUT_BYTES = 1 * 2**20

DEFAULT_OUTPUT_BYTES = 2 * 2**30  # a template's output-size limit when it names none


ECHO_CHARS = 40  # how much of a bad value an error repeats: enough to recognise it, not a 5000-digit wall


def shown(value) -> str:
    """``value`` for an error message, cut to about :data:`ECHO_CHARS` characters."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        # repr() of a 5000-digit int raises in Python >= 3.11, so a huge one is described instead.
        text = f"{value:.6g}" if isinstance(value, float) or abs(value) < 10**ECHO_CHARS else "a number too large"
    else:
        text = repr(value)
    return text if len(text) <= ECHO_CHARS else f"{text[:ECHO_CHARS - 3]}... ({len(text)} characters)"


def parse_size(text: str) -> int:
    """``"2GiB"`` -> bytes; ValueError for anything else (the schema's pattern allows only this form)."""
    match = re.fullmatch(r"([0-9]{1,12}(?:\.[0-9]{1,6})?)\s*([A-Za-z]{1,3})", text.strip()) if isinstance(text, str) else None
    if not match or match.group(2).upper() not in MEMORY_UNITS:
        raise ValueError(f"{shown(text)} is not a size: expected a number and a unit such as 512MiB or 2GiB")
    return int(float(match.group(1)) * MEMORY_UNITS[match.group(2).upper()])


def parse_duration(text: str) -> float:
    """``"10m"`` -> seconds; ValueError for anything else."""
    match = re.fullmatch(r"([0-9]{1,12}(?:\.[0-9]{1,6})?)\s*([smh])", text.strip()) if isinstance(text, str) else None
    if not match:
        raise ValueError(f"{shown(text)} is not a duration: expected a number and s, m or h, such as 90s or 10m")
    return float(match.group(1)) * SECONDS[match.group(2)]


@dataclass(frozen=True)
class Limits:
    max_cores: float = 16.0
    max_memory_bytes: int = 16 * 2**30
    max_time_limit_s: float = 48 * 3600.0
    max_output_bytes: int = 64 * 2**30

    def check_resources(self, cores: float, memory_bytes: int, time_limit_s: float, output_bytes: int) -> list[tuple[str, str]]:
        """(field, problem) for every resource outside its bounds."""
        found = []

        def bound(field: str, value, low, high, show) -> None:
            if not (low <= value <= high):
                found.append((field, f"{show(value)} is outside the allowed range {show(low)} to {show(high)}"
                                     + (" (the operator's maximum, see RECAST_LIMITS)" if value > high else "")))

        bound("cores", cores, MIN_CORES, self.max_cores, lambda v: f"{v:g}")
        bound("memory", memory_bytes, MIN_MEMORY_BYTES, self.max_memory_bytes, human_size)
        bound("time_limit", time_limit_s, MIN_TIME_LIMIT_S, self.max_time_limit_s, human_duration)
        bound("output", output_bytes, MIN_OUTPUT_BYTES, self.max_output_bytes, human_size)
        return found


def human_size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.4g} {unit}"  # 4 digits: 1000 TiB, not 1e+03
        n /= 1024
    return f"{n} B"


def human_duration(seconds: float) -> str:
    """In the unit a template would write: 90 s, 10 min, 48 h."""
    for unit, size in (("h", 3600), ("min", 60)):
        if abs(seconds) >= size and seconds % size == 0:
            return f"{seconds / size:g} {unit}"
    return f"{seconds:g} s"


_KEYS = {"max_cores": ("max_cores", float), "max_memory": ("max_memory_bytes", parse_size),
         "max_time_limit": ("max_time_limit_s", parse_duration), "max_output": ("max_output_bytes", parse_size)}


@cache
def _load(path: str | None) -> Limits:
    limits = Limits()
    if not path:
        return limits
    from recast import spec

    document = spec.load_document(Path(path))
    if not isinstance(document, dict):
        raise RecastError(f"{path} (RECAST_LIMITS): expected a mapping of {', '.join(_KEYS)}")
    changes = {}
    for key, value in document.items():
        if key not in _KEYS:
            raise RecastError(f"{path} (RECAST_LIMITS): unknown limit {key!r}: expected one of {', '.join(_KEYS)}")
        attribute, convert = _KEYS[key]
        try:
            changes[attribute] = convert(value)
        except (TypeError, ValueError) as exc:
            raise RecastError(f"{path} (RECAST_LIMITS): {key}: {exc}") from None
    return replace(limits, **changes)


def current() -> Limits:
    """The limits in force: the defaults, or the operator's file named by ``RECAST_LIMITS``."""
    return _load(os.environ.get("RECAST_LIMITS") or None)

