"""provenance.json: everything that produced a run's results, to trust, compare and refresh them.

Canonical digests of the analysis spec (templates included) and of the
request; sha256 of every input file; the image pinned for each step; the
versions of recast, Snakemake, pyhf and Python; the environment and executor;
the images run although out of date (``--allow-stale-images``), with why;
and, per job, its start and end times and exit status (from the job records
written by :mod:`recast.job`, which survive incremental re-runs).
"""

from __future__ import annotations

import json
import platform
from importlib import metadata
from pathlib import Path

import recast
from recast import files, spec
from recast.environments import get_environment
from recast.digest import sha256_file
from recast.model import Analysis
from recast.plan import Plan
from recast.request import Request

PROVENANCE_FILE = "provenance.json"


def software_versions() -> dict[str, str]:
    versions = {"recast": recast.__version__, "python": platform.python_version()}
    for package in ("snakemake", "pyhf", "docker"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "not installed"
    return versions


def collect(analysis: Analysis, request: Request, plan: Plan, executor: str, outcome) -> dict:
    from recast.execution import records

    run_dir = Path(plan.run_dir)
    inputs = {}
    for job in plan.jobs:
        for path in job.inputs:
            p = Path(path)
            if p.is_file() and not p.is_relative_to(run_dir / "steps"):
                inputs[str(p.relative_to(run_dir)) if p.is_relative_to(run_dir) else str(p)] = sha256_file(p)
    jobs = {}
    for job, record in records(plan):
        jobs[job.id] = {
            "stage": job.stage,
            "digest": record.get("digest"),
            "image_id": (record.get("image") or {}).get("id"),
            "started": record.get("started") or "",
            "ended": record.get("ended") or "",
            "exit_code": record.get("exit_code") if record.get("exit_code") is not None else -1,
            "timed_out": bool(record.get("timed_out")),
            "ran_in_this_invocation": job.id in outcome.jobs_run,
            "outputs": record.get("outputs") or {},
        }
    document = {
        "schema": spec.schema_name("provenance"),
        "analysis": {**plan.analysis, "title": analysis.title, "spec_file": str(analysis.spec_path)},
        "request": {"digest": request.digest, "source": str(request.source) if request.source else None},
        "inputs": dict(sorted(inputs.items())),
        "software": software_versions(),
        "environment": plan.environment,
        "executor": executor,
        "images": {job.id: job.image for job in plan.jobs} if get_environment(plan.environment).uses_images else {},
        # Images run although out of date (`recast run --allow-stale-images`), with what changed since their build.
        "images_out_of_date": dict(getattr(outcome, "stale_images", {}) or {}),
        "run": {"id": plan.run_id, "status": outcome.status, "started": outcome.started, "ended": outcome.ended,
                "jobs_run": outcome.jobs_run, "outputs_discarded": outcome.discarded},
        "results": analysis.results,
        "jobs": jobs,
    }
    spec.validate_document(document, "provenance", run_dir / PROVENANCE_FILE)
    return document


def write(analysis: Analysis, request: Request, plan: Plan, executor: str, outcome) -> Path:
    document = collect(analysis, request, plan, executor, outcome)
    return files.atomic_write(Path(plan.run_dir) / PROVENANCE_FILE, json.dumps(document, indent=1, sort_keys=True))
