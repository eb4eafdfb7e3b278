"""One run of a claimed request, in a child process of its worker: ``python -m recast.service.runner``.

It checks the request again (:func:`recast.request.check`, on the files the
worker materialised from the store), runs it with
:func:`recast.execution.run`, and writes its outcome as JSON for the worker.
It dies with its worker: the kernel sends it SIGTERM when the worker dies
(``PR_SET_PDEATHSIG``), and on SIGTERM it kills its whole process group (the
jobs it started included), so that a worker killed with ``kill -9`` leaves no
run going on behind the next worker's back.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import signal
import sys
from pathlib import Path

PR_SET_PDEATHSIG = 1


def _die_with(parent: int) -> None:
    def _kill_group(*_):
        os.killpg(os.getpgrp(), signal.SIGKILL)

    signal.signal(signal.SIGTERM, _kill_group)
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):  # not Linux: the worker's lease still protects the request
        pass
    if os.getppid() != parent:  # the worker died before we asked to die with it
        _kill_group()


def _write(path: Path, outcome: dict) -> None:
    from recast.files import atomic_write

    atomic_write(path, json.dumps(outcome, indent=1))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m recast.service.runner")
    parser.add_argument("--catalog", required=True)
    parser.add_argument("--analysis", required=True)
    parser.add_argument("--request", required=True, help="the request document (JSON)")
    parser.add_argument("--files", required=True, help="the folder its files are relative to")
    parser.add_argument("--run-dir", required=True)
    parser.add_argument("--environment", default="docker")
    parser.add_argument("--cores", type=int, default=1)
    parser.add_argument("--executor", default="local")
    parser.add_argument("--executor-settings", default="{}", help="the executor's settings (JSON)")
    parser.add_argument("--parent", type=int, required=True)
    parser.add_argument("--outcome", required=True)
    args = parser.parse_args(argv)
    _die_with(args.parent)

    from recast import catalog, execution
    from recast import request as request_mod
    from recast.errors import RecastError
    from recast.executors import configure

    outcome_path = Path(args.outcome)
    try:
        analysis = catalog.load(args.catalog, args.analysis)
        document = json.loads(Path(args.request).read_text())
        request = request_mod.check(analysis, document, Path(args.request), Path(args.files))
        executor = configure(args.executor, json.loads(args.executor_settings))
        outcome = execution.run(analysis, request, Path(args.run_dir), environment=args.environment,
                                cores=args.cores, executor=executor)
    except RecastError as exc:
        print(f"error: {exc}", file=sys.stderr)
        _write(outcome_path, {"status": "failed", "error": str(exc)})
        return 1
    _write(outcome_path, {"status": "succeeded", "jobs_run": outcome.jobs_run,
                          "jobs_total": len(outcome.plan.jobs)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
