"""Watch a running job's output folder and stop the job when it grows past its limit.

Docker has no per-container size limit for a bind mount (that needs a quota
file system the operator may not have), and the host has none at all, so the
folder is measured while the job runs: every ``interval`` seconds its files
are summed (without following links; a sparse file counts at its apparent
size, since whatever reads it later reads that much). The overshoot is bounded
by what a job can write in one interval; the job is then stopped and reported
as over its limit.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Callable

INTERVAL_S = 0.5


def folder_bytes(folder: Path) -> int:
    total = 0
    for root, dirs, names in os.walk(folder, followlinks=False):
        for name in dirs + names:
            try:
                st = os.lstat(os.path.join(root, name))
            except FileNotFoundError:
                continue  # removed while we looked
            total += max(st.st_size, st.st_blocks * 512)
    return total


class OutputWatch:
    """A daemon thread that calls ``stop()`` once ``folder`` holds more than ``limit`` bytes."""

    def __init__(self, folder: Path, limit: int, stop: Callable[[], None], interval: float = INTERVAL_S):
        self.folder, self.limit, self._stop_job, self.interval = folder, limit, stop, interval
        self.exceeded = threading.Event()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True, name=f"output-watch {folder.name}")

    def _watch(self) -> None:
        while not self._done.wait(self.interval):
            if folder_bytes(self.folder) > self.limit:
                self.exceeded.set()
                self._stop_job()
                return

    def __enter__(self) -> OutputWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._done.set()
        self._thread.join()
