"""Reading LHE events with pylhe, across its API change (0.x readers, 1.x+ LHEFile)."""

from __future__ import annotations

import gzip
import warnings
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pylhe

from .cli import InputError

INVISIBLE_PDG_IDS = frozenset({12, 14, 16, 1000022, 1000039})


def _pylhe_events(path: Path):
    if hasattr(pylhe, "LHEFile") and hasattr(pylhe.LHEFile, "fromfile"):
        return pylhe.LHEFile.fromfile(str(path)).events
    return pylhe.read_lhe_with_attributes(str(path))


def read_events(path: str | Path) -> Iterator[tuple[float, list]]:
    """Yield (weight, final-state particles) per event; errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: LHE file not found")
    try:
        with warnings.catch_warnings():
            # pylhe warns before raising on broken XML; the error below says it once, naming the file.
            warnings.filterwarnings("ignore", message="Parse Error", category=RuntimeWarning)
            for event in _pylhe_events(path):
                final_state = [p for p in event.particles if int(p.status) == 1]
                yield float(event.eventinfo.weight), final_state
    except (ET.ParseError, gzip.BadGzipFile, EOFError, ValueError, TypeError, AttributeError) as error:
        raise InputError(f"{path}: not a readable LHE file ({type(error).__name__}: {error})") from None
