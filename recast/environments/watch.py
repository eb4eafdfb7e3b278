"""Watch a running job's output folder and stop the job when it grows past its limit.

Docker has no per-container size limit for a bind mount (that needs a quota
file system the operator may not have), and the host has none at all, so the
folder is measured while the job runs: every ``interval`` seconds its files
are summed (without following links; a sparse file counts at its apparent
size, since whatever reads it later reads that much). The overshoot is bounded
by what a job can write in one interval; the job is then stopped and reported
as over its limit. The number of files and folders is bounded too
(:data:`MAX_ENTRIES`): a million empty files fill no bytes but exhaust the
file system's inodes, and would make every measurement slow.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Callable

INTERVAL_S = 0.5
MAX_ENTRIES = 100_000


def folder_usage(folder: Path, stop_after: int | None = None) -> tuple[int, int]:
    """(bytes, entries) below ``folder``; counting stops once ``stop_after`` entries were seen."""
    total = entries = 0
    for root, dirs, names in os.walk(folder, followlinks=False):
        for name in dirs + names:
            entries += 1
            try:
                st = os.lstat(os.path.join(root, name))
            except FileNotFoundError:
                continue  # removed while we looked
            total += max(st.st_size, st.st_blocks * 512)
        if stop_after is not None and entries > stop_after:
            break
    return total, entries


class OutputWatch:
    """A daemon thread that calls ``stop()`` once ``folder`` holds more than ``limit`` bytes
    or more than :data:`MAX_ENTRIES` files and folders; ``reason`` then says which ("bytes", "entries")."""

    def __init__(self, folder: Path, limit: int, stop: Callable[[], None], interval: float = INTERVAL_S):
        self.folder, self.limit, self._stop_job, self.interval = folder, limit, stop, interval
        self.exceeded = threading.Event()
        self.reason = ""
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True, name=f"output-watch {folder.name}")

    def _watch(self) -> None:
        while not self._done.wait(self.interval):
            size, entries = folder_usage(self.folder, stop_after=MAX_ENTRIES)
            if size > self.limit:
                self.reason = "bytes"
            elif entries > MAX_ENTRIES:
                self.reason = "entries"
            else:
                continue
            self.exceeded.set()
            self._stop_job()
            return

    def __enter__(self) -> OutputWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._done.set()
        self._thread.join()
