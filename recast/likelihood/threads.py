"""One BLAS thread while fitting.

Measured on the sbottom scan (40 points, 2 cores, a busy machine): with
OpenBLAS's default threads the fits take 1.4 to 2.8 times longer than with
one thread, because SLSQP and pyhf's einsums work on matrices far too small
to share, and idle OpenBLAS threads spin. Worker processes get one thread
from their environment; the calling process is switched for the duration of
a computation through OpenBLAS's own ``set_num_threads`` and switched back.
"""

from __future__ import annotations

import ctypes
import os
from contextlib import contextmanager
from typing import Iterator

_SINGLE_THREAD_ENV = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}

# (getter, setter) pairs, by the names OpenBLAS builds export (numpy's and scipy's wheels prefix them)
_SYMBOLS = [
    ("openblas_get_num_threads", "openblas_set_num_threads"),
    ("scipy_openblas_get_num_threads64_", "scipy_openblas_set_num_threads64_"),
    ("scipy_openblas_get_num_threads", "scipy_openblas_set_num_threads"),
]


def _loaded_openblas() -> list[tuple[object, object]]:
    """(get, set) functions of every OpenBLAS library loaded in this process."""
    found = []
    try:
        with open("/proc/self/maps") as maps:
            paths = sorted({line.split()[-1] for line in maps if "openblas" in line.lower() and line.split()[-1].startswith("/")})
    except OSError:
        return found
    for path in paths:
        try:
            library = ctypes.CDLL(path)
        except OSError:
            continue
        for getter, setter in _SYMBOLS:
            if hasattr(library, getter) and hasattr(library, setter):
                found.append((getattr(library, getter), getattr(library, setter)))
                break
    return found


@contextmanager
def single_threaded_blas() -> Iterator[None]:
    """Run the block with one OpenBLAS thread in every loaded OpenBLAS, then restore their counts."""
    import numpy  # noqa: F401  (loads numpy's OpenBLAS)
    import scipy.optimize  # noqa: F401  (loads scipy's)

    libraries = _loaded_openblas()
    saved = []
    for get, set_ in libraries:
        saved.append((set_, int(get())))
        set_(1)
    try:
        yield
    finally:
        for set_, count in saved:
            set_(count)


@contextmanager
def single_threaded_children() -> Iterator[None]:
    """Processes started in the block (spawned workers) start with one BLAS/OpenMP thread."""
    saved = {key: os.environ.get(key) for key in _SINGLE_THREAD_ENV}
    os.environ.update(_SINGLE_THREAD_ENV)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
