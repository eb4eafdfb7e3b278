"""results.json: the values and files an analysis declares as its results.

The analysis spec names them as references to stage outputs
(``$steps.gather.summary``); a scattered stage gives one value per branch.
The document is checked against ``specs/<version>/result.schema.json``.
"""

from __future__ import annotations

import json
from pathlib import Path

from recast import references, spec
from recast.digest import sha256_file
from recast.errors import RecastError
from recast.model import Analysis
from recast.plan import Plan
from recast.request import Request

RESULTS_FILE = "results.json"


def _jobs_of(plan: Plan, stage: str):
    return [job for job in plan.jobs if job.stage == stage]


def collect(analysis: Analysis, request: Request, plan: Plan, executor: str) -> dict:
    run_dir = Path(plan.run_dir)
    scattered = {s.name: s.scatter is not None for s in analysis.stages}
    values = {}
    for name, value in analysis.results.get("values", {}).items():
        ref = references.parse(value)
        found = []
        for job in _jobs_of(plan, ref.stage):
            try:
                found.append(json.loads(Path(job.values_file).read_text())[ref.output])
            except (OSError, ValueError, KeyError) as exc:
                raise RecastError(f"result {name!r}: cannot read {ref.output!r} from {job.values_file}: {exc}") from None
        values[name] = found if scattered[ref.stage] else found[0]
    files = {}
    for name, value in analysis.results.get("files", {}).items():
        ref = references.parse(value)
        for job in _jobs_of(plan, ref.stage):
            path = Path(job.output_files[ref.output])
            key = name if not scattered[ref.stage] else f"{name}[{job.branch}]"
            files[key] = {"path": str(path.relative_to(run_dir)), "sha256": sha256_file(path)}
    document = {
        "schema": "recast/result/1.0.0",
        "analysis": dict(plan.analysis),
        "request": {"digest": request.digest, "source": str(request.source) if request.source else ""},
        "run": {"id": plan.run_id, "environment": plan.environment, "executor": executor, "status": "success"},
        "values": values,
        "files": files,
    }
    spec.validate_document(document, "result", run_dir / RESULTS_FILE)
    return document


def write(analysis: Analysis, request: Request, plan: Plan, executor: str) -> Path:
    document = collect(analysis, request, plan, executor)
    path = Path(plan.run_dir) / RESULTS_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(document, indent=1, sort_keys=True))
    tmp.replace(path)
    return path


def load(run_dir: str | Path) -> dict:
    path = Path(run_dir) / RESULTS_FILE
    if not path.is_file():
        raise RecastError(f"{run_dir} has no {RESULTS_FILE}: not a finished recast run folder")
    document = spec.load_document(path)
    spec.validate_document(document, "result", path)
    return document
