"""Live progress of a run: jobs done / total, the steps running now, elapsed time.

Fed by Snakemake's own log events (job started, finished, progress, error),
so it shows the same thing on every executor. On a terminal it is a live rich
display; elsewhere (CI logs, pipes) one line per finished job.
"""

from __future__ import annotations

import logging
import time

from rich.console import Console
from rich.live import Live
from rich.text import Text


class RunProgress(logging.Handler):
    def __init__(self, console: Console | None = None, title: str = "run"):
        super().__init__(level=logging.DEBUG)
        self.console = console or Console(stderr=True)
        self.title = title
        self.started = time.monotonic()
        self.done = 0
        self.total = None
        self.running: dict[int, str] = {}
        self.finished: list[str] = []
        self.failed: list[str] = []
        self._live: Live | None = None

    # logging.Handler
    def emit(self, record: logging.LogRecord) -> None:
        event = str(getattr(record, "event", "") or "")
        if event == "job_info":
            if record.rule_name != "all":
                self.running[record.jobid] = record.rule_name
        elif event == "job_finished":
            name = self.running.pop(record.job_id, None)
            if name is not None:
                self.finished.append(name)
                if self._live is None:
                    self.console.print(f"[{len(self.finished)}/{self._jobs_total()}] {name} done "
                                       f"({self.elapsed():.1f} s)", highlight=False)
        elif event == "progress":
            self.done, self.total = record.done, record.total
        elif event == "job_error":
            name = getattr(record, "rule_name", None)
            if name:
                self.failed.append(name)
                self.running = {k: v for k, v in self.running.items() if v != name}
        if self._live is not None:
            self._live.refresh()

    def _jobs_total(self):
        # Snakemake counts the final 'all' target as a step; people count jobs.
        return "?" if self.total is None else max(self.total - 1, 0)

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def render(self) -> Text:
        text = Text()
        text.append(f"{self.title}: ", style="bold")
        text.append(f"{len(self.finished)}/{self._jobs_total()} jobs done", style="green")
        text.append(f"  {self.elapsed():.0f} s")
        if self.running:
            text.append("  running: " + ", ".join(sorted(self.running.values())[:6]), style="cyan")
            if len(self.running) > 6:
                text.append(f" (+{len(self.running) - 6})", style="cyan")
        if self.failed:
            text.append("  failed: " + ", ".join(self.failed), style="red")
        return text

    def __enter__(self) -> RunProgress:
        if self.console.is_terminal:
            self._live = Live(console=self.console, refresh_per_second=4, transient=False,
                              get_renderable=self.render)  # re-rendered each tick: the clock runs
            self._live.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self._live is not None:
            self._live.refresh()
            self._live.__exit__(*exc)
            self._live = None
