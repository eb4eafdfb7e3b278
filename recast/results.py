"""results.json: the values and files an analysis declares as its results.

The analysis spec names them as references to stage outputs
(``$steps.gather.summary``); a scattered stage gives one value per branch.
The document is checked against ``specs/<version>/result.schema.json``.
Job folders are read without following links (:mod:`recast.files`), and
:func:`verify` re-checks a finished run against what its jobs certified.
"""

from __future__ import annotations

import json
from pathlib import Path

from recast import files, references, spec
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
                found.append(_job_values(job)[ref.output])
            except (OSError, ValueError, KeyError, RecastError) as exc:
                raise RecastError(f"result {name!r}: cannot read {ref.output!r} from {job.values_file}: {exc}") from None
        values[name] = found if scattered[ref.stage] else found[0]
    found_files = {}
    for name, value in analysis.results.get("files", {}).items():
        ref = references.parse(value)
        for job in _jobs_of(plan, ref.stage):
            path = Path(job.output_files[ref.output])
            key = name if not scattered[ref.stage] else f"{name}[{job.branch}]"
            folder = str(path) in job.output_directories
            try:
                digest = (files.tree_sha256 if folder else files.sha256)(job.outdir, path)
            except (OSError, RecastError) as exc:
                raise RecastError(f"result file {name!r}: cannot read {path}: {exc}") from None
            found_files[key] = {"path": str(path.relative_to(run_dir)), "sha256": digest,
                                **({"directory": True} if folder else {})}
    document = {
        "schema": spec.schema_name("result"),
        "analysis": dict(plan.analysis),
        "request": {"digest": request.digest, "source": str(request.source) if request.source else ""},
        "run": {"id": plan.run_id, "environment": plan.environment, "executor": executor, "status": "success"},
        "values": values,
        "files": found_files,
    }
    spec.validate_document(document, "result", run_dir / RESULTS_FILE)
    return document


def _job_values(job) -> dict:
    return json.loads(files.read_bytes(job.outdir, job.values_file, 256 * 2**20))


def write(analysis: Analysis, request: Request, plan: Plan, executor: str) -> Path:
    document = collect(analysis, request, plan, executor)
    return files.atomic_write(Path(plan.run_dir) / RESULTS_FILE, json.dumps(document, indent=1, sort_keys=True))


def verify(run_dir: str | Path) -> list[str]:
    """Re-check a finished run: one line per problem, none when everything is as its jobs left it.

    Every job's outputs must match the sha256 its record certified, every
    result value must be what its job's ``values.json`` says, every result
    file must match the digest in ``results.json``.
    """
    from recast import plan as plan_mod
    from recast.execution import records

    run_dir = Path(run_dir).resolve()
    document = load(run_dir)
    plan = plan_mod.load(run_dir / plan_mod.PLAN_FILE)
    problems = []
    certified = dict((job.id, record) for job, record in records(plan))
    for job in plan.jobs:
        expected = certified.get(job.id, {}).get("outputs")
        if not expected:
            problems.append(f"step {job.id}: no record of its outputs (it did not finish)")
            continue
        folders = {str(Path(p).relative_to(job.outdir)) for p in job.output_directories}
        for name, digest in expected.items():
            try:
                actual = (files.tree_sha256 if name in folders else files.sha256)(job.outdir, name)
            except (OSError, RecastError) as exc:
                actual = f"unreadable ({exc})"
            if actual != digest:
                problems.append(f"step {job.id}: {name} changed since the job ran")
    scattered = {}
    for job in plan.jobs:
        scattered.setdefault(job.stage, []).append(job)
    for name, value in document["values"].items():
        stage, output = _value_source(run_dir, plan, name)
        if stage is None:
            continue
        try:
            found = [_job_values(job)[output] for job in scattered[stage]]
        except (OSError, ValueError, KeyError, RecastError) as exc:
            problems.append(f"value {name!r}: cannot read it from its jobs ({exc})")
            continue
        if value != (found if scattered[stage][0].branch is not None else found[0]):
            problems.append(f"value {name!r} in {RESULTS_FILE} differs from what its jobs produced")
    for name, entry in document["files"].items():
        try:
            actual = (files.tree_sha256 if entry.get("directory") else files.sha256)(run_dir, entry["path"])
        except (OSError, RecastError) as exc:
            actual = f"unreadable ({exc})"
        if actual != entry["sha256"]:
            problems.append(f"file {name!r} ({entry['path']}) does not match its sha256 in {RESULTS_FILE}")
    return problems


def _value_source(run_dir: Path, plan, name: str) -> tuple[str | None, str | None]:
    """Which stage and output a result value comes from, from the analysis spec the run recorded."""
    from recast.provenance import PROVENANCE_FILE

    try:
        provenance = json.loads(files.read_bytes(run_dir, PROVENANCE_FILE, 64 * 2**20))
        reference = provenance["results"]["values"][name]
    except (OSError, ValueError, KeyError, TypeError, RecastError):
        return None, None
    ref = references.parse_or_none(reference)
    return (ref.stage, ref.output) if ref is not None and ref.kind == "steps" else (None, None)


def load(run_dir: str | Path) -> dict:
    path = Path(run_dir) / RESULTS_FILE
    if not path.is_file():
        raise RecastError(f"{run_dir} has no {RESULTS_FILE}: not a finished recast run folder")
    document = spec.load_document(path)
    spec.validate_document(document, "result", path)
    return document
