"""Scans: CLs (and optionally upper limits) for many signal points of one likelihood.

Worker processes (forked before jax is imported, as jax does not survive
``fork``; else spawned, each loading the background-only workspace once)
keep their compiled likelihoods across points, so a scan compiles once per
model structure and worker, not once per point; with ``warm_start`` each
point starts from the background fit of the previous point of the same
structure. A point that fails is recorded with its error and the scan goes
on.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Iterable, Sequence

from recast.likelihood.infer import PointEngine, Settings, _settings, point_cls, point_limit
from recast.likelihood.quality import is_doubtful
from recast.likelihood.workspace import Likelihood, SignalPoint, load_workspace

# state of a worker process (or of the calling process when the scan runs in it)
_STATE: dict[str, Any] = {}


def _init_worker(workspace_path: str, labels: list[str], settings: dict, warm_start: bool) -> None:
    _STATE["likelihood"] = load_workspace(workspace_path, labels=labels, validate=False)
    _STATE["settings"] = Settings(**settings)
    _STATE["starts"] = {} if warm_start else None


def _run_point(point: SignalPoint, mu: float, limits: bool, grid: Sequence[float] | None) -> dict[str, Any]:
    likelihood: Likelihood = _STATE["likelihood"]
    settings: Settings = _STATE["settings"]
    started = time.perf_counter()
    try:
        engine = PointEngine(likelihood, point, settings)
        _share_first_compilation(engine)
        structure = tuple(engine.model.config.par_names)
        starts = _STATE["starts"]
        if starts is not None:
            engine.warm_start(starts.get(structure))
        record = point_cls(engine, mu)
        if limits:
            limit = point_limit(engine, grid=grid)
            record.update({k: limit[k] for k in ("mu_up_obs", "mu_up_exp", "fit_quality", "warnings")})
        if starts is not None and engine.background_fit is not None:
            starts[structure] = engine.background_fit
    # a scan records the failure of one point, whatever pyhf, scipy or jax raised, and goes on
    except Exception as err:  # noqa: BLE001
        record = {
            "point": point.name,
            "patch": point.source,
            "values": dict(point.values),
            "error": f"{point.describe()}: {err}",
            "error_type": type(err).__name__,
        }
    finally:
        if _STATE.get("first_done") is not None and os.getpid() == _STATE.get("parent"):
            _STATE["first_done"].set()  # the calling process's first point is done: its compilations are on disk
    record["seconds"] = round(time.perf_counter() - started, 3)
    record.pop("settings", None)
    record.pop("workspace", None)
    return record


# loading the probe's compilation of a sbottom or 1Lbb model from disk takes 0.01 to 0.05 s,
# compiling it 0.2 to 0.3 s
COMPILED_ON_DISK_SECONDS = 0.1


def _share_first_compilation(engine: PointEngine) -> None:
    """In a forked worker on its first point: compile the probe's function only, then wait (at most a
    minute) until the calling process has finished its first point, whose likelihood gradient it
    compiled meanwhile; both take the other's compilation from the persistent cache. Two processes
    compiling both functions at once on two cores took 2.0 s each before their first point, against
    1.5 s for one (sbottom, cold cache). When the probe's compilation was on disk already, the
    gradient's is too, and the worker does not wait."""
    event = _STATE.get("first_done")
    if event is None or os.getpid() == _STATE.get("parent") or event.is_set():
        return
    settings: Settings = _STATE["settings"]
    if settings.backend == "jax" and settings.method == "fast":
        from recast.likelihood.fits import compilation_cache_dir, precompile_probe

        if compilation_cache_dir() is not None:
            # found on disk (a warm cache), the gradient will be found there too
            if precompile_probe(engine.model) > COMPILED_ON_DISK_SECONDS:
                event.wait(60)


# A spawned worker costs 3 to 8 s before its first point (imports, loading, compiling), the
# time of 30 to 80 sbottom points (0.1 s each) or 5 to 10 1Lbb points (0.7 s each) in the
# calling process. Measured on 40 sbottom points: one process 13.0 s, two 16.6 s on a busy
# 2-core machine; on all 125 1Lbb points two processes pay.
MIN_POINTS_FOR_WORKERS = 48
# A forked worker (see can_fork) starts with the workspace loaded and pyhf imported; it then
# pays what the calling process pays too (importing jax, binding the first model), in
# parallel with it: worth it from a few points on.
MIN_POINTS_FOR_FORKED_WORKERS = 8


def can_fork() -> bool:
    """Whether a scan's workers can be forked from this process: jax not imported yet (jax does not
    survive ``fork``), no other thread running, and Linux (macOS's system libraries do not survive
    ``fork`` either; Python spawns there by default)."""
    import multiprocessing
    import sys
    import threading

    return (sys.platform.startswith("linux") and "fork" in multiprocessing.get_all_start_methods()
            and sys.modules.get("jax") is None and threading.active_count() == 1)


def default_workers(points: int) -> int:
    """Processes for a scan of ``points`` points: one per idle core (at most 2); 1 for short scans."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    if points < (MIN_POINTS_FOR_FORKED_WORKERS if can_fork() else MIN_POINTS_FOR_WORKERS):
        return 1
    idle = cores - os.getloadavg()[0] if hasattr(os, "getloadavg") else cores
    return max(1, min(2, cores, round(idle) + 1))


def scan(
    workspace: str | Path | Likelihood,
    points: Iterable[str | SignalPoint] | None = None,
    *,
    where: dict[str, float] | None = None,
    mu: float = 1.0,
    limits: bool = False,
    grid: Sequence[float] | None = None,
    workers: int | None = None,
    progress: bool = True,
    warm_start: bool = False,
    settings: Settings | None = None,
    **options: str,
) -> dict[str, Any]:
    """CLs at ``mu`` (and with ``limits`` the upper limits) for every selected signal point.

    ``points``: names or shell patterns of points of ``workspace`` (or
    :class:`SignalPoint` objects); ``where``: parameter values that select
    points (``{"m1": 900}``); both omitted: every point.

    Returns ``{"workspace", "settings", "mu", "labels", "points": [...],
    "failed", "workers", "seconds"}``; each point is a :func:`cls` record
    (plus ``mu_up_obs``/``mu_up_exp``) or ``{"point", "values", "error",
    "error_type"}``. ``options``: as for :func:`~recast.likelihood.infer.cls`;
    ``warm_start``: see the module's documentation.
    """
    settings = _settings(settings, **options)
    likelihood = workspace if isinstance(workspace, Likelihood) else load_workspace(workspace)
    given = list(points or [])
    objects = [p for p in given if isinstance(p, SignalPoint)]
    names = [p for p in given if not isinstance(p, SignalPoint)]
    selected = objects + (likelihood.select(names, where) if names or where or not objects else [])
    workers = default_workers(len(selected)) if workers is None else max(1, int(workers))
    workers = min(workers, max(1, len(selected)))
    started = time.perf_counter()
    records = _run(likelihood, selected, settings, mu, limits, grid, workers, progress, warm_start)
    order = {p.name: i for i, p in enumerate(selected)}
    records.sort(key=lambda r: order.get(r["point"], 0))
    return {
        "workspace": str(likelihood.path),
        "settings": settings.record(),
        "mu": float(mu),
        "labels": list(likelihood.labels),
        "points": records,
        "failed": sum(1 for r in records if "error" in r),
        "doubtful": sum(1 for r in records if is_doubtful(r)),
        "workers": workers,
        "seconds": round(time.perf_counter() - started, 3),
    }


def _run(likelihood, selected, settings, mu, limits, grid, workers, progress, warm_start) -> list[dict[str, Any]]:
    """Compute the points here and in ``workers - 1`` worker processes, sharing one queue.

    The calling process has pyhf imported and the workspace loaded already, so
    it starts at once. Where it can (:func:`can_fork`: jax not imported yet)
    the workers are forked and start as early, with the workspace loaded;
    else a spawned worker needs a few seconds (imports, loading, compiling)
    and takes points from the queue when it is ready. Two points wait for
    each worker so that it never idles.
    """
    import multiprocessing
    from collections import deque
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool
    from contextlib import nullcontext

    from recast.likelihood.threads import single_threaded_blas, single_threaded_children

    records: list[dict[str, Any]] = []
    _STATE.clear()
    _STATE.update(likelihood=likelihood, settings=settings, starts={} if warm_start else None)
    pending = deque(selected)
    in_flight: dict[Any, SignalPoint] = {}
    pool = None
    with single_threaded_blas(), single_threaded_children(), _collector_spared():
        if workers > 1:
            if can_fork():
                # forked before jax is imported here, and before the progress bar's thread: the
                # workers inherit the loaded likelihood and settings (_STATE) and start at once
                context = multiprocessing.get_context("fork")
                _STATE.update(parent=os.getpid(), first_done=context.Event())
                pool = ProcessPoolExecutor(max_workers=workers - 1, mp_context=context)
            else:
                init_args = (str(likelihood.path), list(likelihood.labels), asdict(settings), warm_start)
                pool = ProcessPoolExecutor(max_workers=workers - 1, mp_context=multiprocessing.get_context("spawn"),
                                           initializer=_init_worker, initargs=init_args)

        def submit() -> None:
            while pending and len(in_flight) < 2 * (workers - 1):
                point = pending.popleft()
                in_flight[pool.submit(_run_point, point, mu, limits, grid)] = point

        if pool is not None:
            submit()  # the workers start here
        bar = progress_display(len(selected), progress)
        with bar, pool if pool is not None else nullcontext():
            task = bar.add_task("scan", total=len(selected), last="")

            def done(record: dict[str, Any]) -> None:
                records.append(record)
                bar.update(task, advance=1, last=record["point"], record=record)

            if pool is None:
                while pending:
                    done(_run_point(pending.popleft(), mu, limits, grid))
                return records

            def collect(futures) -> None:
                for future in futures:
                    point = in_flight.pop(future)
                    try:
                        done(future.result())
                    except BrokenProcessPool as err:
                        done({
                            "point": point.name, "patch": point.source, "values": dict(point.values),
                            "error": f"{point.describe()}: the worker process died ({err}); out of memory?",
                            "error_type": "BrokenProcessPool",
                        })

            while pending or in_flight:
                submit()
                if pending:
                    done(_run_point(pending.popleft(), mu, limits, grid))
                    collect([f for f in list(in_flight) if f.done()])
                else:
                    if _STATE.get("first_done") is not None:
                        _STATE["first_done"].set()  # nothing left for this process: the worker waits no more
                    finished, _ = wait(list(in_flight), return_when=FIRST_COMPLETED)
                    collect(finished)
    return records


@contextlib.contextmanager
def _collector_spared():
    """Python's cycle collector, spared the objects that exist when a scan starts (the loaded workspace:
    ``gc.freeze``) and run less often (each point's pyhf model allocates many): a sbottom point
    took 12% less. Restored after the scan; objects are freed by reference counting as before."""
    import gc

    threshold = gc.get_threshold()
    # a caller's own frozen objects stay frozen: only a freeze made here is undone
    freezing = gc.get_freeze_count() == 0
    if freezing:
        gc.freeze()
    gc.set_threshold(max(threshold[0], 20000), *threshold[1:])
    try:
        yield
    finally:
        gc.set_threshold(*threshold)
        if freezing:
            gc.unfreeze()


class LineProgress:
    """Progress as plain lines on stderr (a log file, CI): every ``every`` points or ``seconds``, whichever first."""

    def __init__(self, total: int, every: int | None = None, seconds: float = 30.0, stream=None):
        import sys

        self.total = total
        self.every = every or max(1, min(25, total // 10 or 1))
        self.seconds = seconds
        self.stream = stream or sys.stderr
        self.done = self.failed = self.doubtful = 0
        self.started = self.last = time.monotonic()

    def __enter__(self):
        print(f"scan: {self.total} points", file=self.stream, flush=True)
        return self

    def __exit__(self, *exc):
        return False

    def add_task(self, *args, **kwargs):
        return 0

    def update(self, task, advance: int = 1, last: str = "", record: dict | None = None) -> None:
        self.done += advance
        if record is not None:
            self.failed += "error" in record
            self.doubtful += is_doubtful(record)
        now = time.monotonic()
        if self.done == self.total or self.done % self.every == 0 or now - self.last >= self.seconds:
            self.last = now
            elapsed = now - self.started
            eta = elapsed / self.done * (self.total - self.done) if self.done else float("nan")
            print(
                f"scan: {self.done}/{self.total} points ({self.failed} failed, {self.doubtful} doubtful), "
                f"{elapsed:.0f} s elapsed, about {eta:.0f} s left; last {last}",
                file=self.stream, flush=True,
            )


class _RichProgress:
    """rich's progress bar (a terminal), with the same ``update`` as :class:`LineProgress`."""

    def __init__(self, total: int, enabled: bool):
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        columns = [TextColumn("[bold]scan"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[last]}")]
        self.bar = Progress(*columns, console=Console(stderr=True), disable=not enabled)
        self.total = total

    def __enter__(self):
        self.bar.__enter__()
        return self

    def __exit__(self, *exc):
        return self.bar.__exit__(*exc)

    def add_task(self, *args, **kwargs):
        return self.bar.add_task(*args, **kwargs)

    def update(self, task, advance: int = 1, last: str = "", record: dict | None = None) -> None:
        self.bar.update(task, advance=advance, last=last)


def progress_display(total: int, progress: bool):
    """A bar on a terminal; plain lines when stderr is a file or a pipe (nothing for 13 minutes is no progress)."""
    import sys

    if progress and not sys.stderr.isatty():
        return LineProgress(total)
    return _RichProgress(total, progress)


def write_scan(result: dict[str, Any], json_path: str | Path | None = None, csv_path: str | Path | None = None) -> None:
    """The scan as JSON (everything) and CSV (one row per point: parameters, CLs, limits, error)."""
    if json_path:
        Path(json_path).write_text(json.dumps(result, indent=2) + "\n")
    if csv_path:
        labels = list(result.get("labels") or [])
        with open(csv_path, "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["point", *labels, "mu", "cls_obs", "cls_exp_-2", "cls_exp_-1", "cls_exp_0", "cls_exp_+1", "cls_exp_+2", "mu_up_obs", "mu_up_exp_0", "error", "fit_quality"])
            for row in result["points"]:
                exp = row.get("cls_exp") or [""] * 5
                limit_exp = row.get("mu_up_exp") or [""] * 5
                writer.writerow([
                    row["point"], *[row.get("values", {}).get(label, "") for label in labels],
                    row.get("mu", ""), row.get("cls_obs", ""), *exp, row.get("mu_up_obs", ""), limit_exp[2], row.get("error", ""),
                    (row.get("fit_quality") or {}).get("status", ""),
                ])
