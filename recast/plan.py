"""From a validated analysis and request to concrete jobs: the DAG Snakemake runs.

Each stage becomes one job, or one job per element when it scatters over a
list of the request (``STAGE__0``, ``STAGE__1``, ...; branches keep their
index, so changing one element re-runs only its branch). A job has an
argument list with every placeholder filled, the files it reads, the files it
must produce, its image and resources, and a digest of all of that: Snakemake
re-runs a job when its digest changes (``params``) or an input is newer.

The plan is written to ``RUN/.recast/plan.json``; the top-level Snakefile
turns it into rules, so ``snakemake -s Snakefile --configfile
RUN/.recast/config.yaml`` runs it without recast's command line.
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from recast import files, processes, references
from recast.environments import get_environment
from recast.digest import digest
from recast.errors import RecastError
from recast.limits import DEFAULT_OUTPUT_BYTES
from recast.model import Analysis, Parameter, Stage, Template

PLAN_FILE = ".recast/plan.json"
CONFIG_FILE = ".recast/config.yaml"
VALUES_FILE = "values.json"


@dataclass
class PlannedJob:
    id: str
    stage: str
    branch: int | None
    template: str
    argv: list[str]
    outdir: str
    inputs: list[str]
    outputs: list[str]
    output_files: dict[str, str]
    output_values: dict[str, list[str]]  # name -> [file path, JSON pointer]
    image: dict[str, Any]  # name, tag, id
    env: dict[str, str]
    cores: float
    memory_bytes: int
    time_limit_s: float
    network: bool
    log: str
    record: str
    digest: str = ""
    output_bytes: int = DEFAULT_OUTPUT_BYTES  # the output folder's size limit
    retries: int = 0  # how often Snakemake starts the job again after a failure
    output_directories: list[str] = field(default_factory=list)  # outputs that are whole folders
    output_globs: dict[str, str] = field(default_factory=dict)  # name -> pattern in outdir: files known at its end
    # Parameters bound to other jobs' output values, known only once those ran: parameter -> [values.json,
    # name] ([values.json, name, "files"] for the files a glob matched), or a list of them, gathered; `recast.job` reads them and renders the command from process and
    # values then. `argv` shows them as <NAME of JOB> until then.
    deferred: dict[str, list] = field(default_factory=dict)
    process: dict[str, Any] | None = None
    values: dict[str, Any] | None = None
    workdir: str | None = None  # where the command starts, inside the image (None: its output folder)
    host_resources: list[str] = field(default_factory=list)  # names, provided by the machine at run time
    credentials: list[str] = field(default_factory=list)  # names, supplied by the machine at run time

    @property
    def values_file(self) -> str:
        return str(Path(self.outdir) / VALUES_FILE)


@dataclass
class Plan:
    run_id: str
    run_dir: str
    analysis: dict[str, str]
    request_digest: str
    environment: str
    python: str
    jobs: list[PlannedJob] = field(default_factory=list)
    # Stages not planned yet: they scatter over a list another stage leaves (or wait for one that does);
    # `recast run` plans them once the lists are known (recast.execution.run).
    pending: list[str] = field(default_factory=list)

    @property
    def targets(self) -> list[str]:
        return [path for job in self.jobs for path in job.outputs]

    def job(self, job_id: str) -> PlannedJob:
        for job in self.jobs:
            if job.id == job_id:
                return job
        raise KeyError(job_id)

    def to_json(self) -> dict:
        return {**asdict(self), "targets": self.targets}

    @classmethod
    def from_json(cls, doc: dict) -> Plan:
        doc = dict(doc)
        doc.pop("targets", None)
        jobs = [PlannedJob(**j) for j in doc.pop("jobs")]
        return cls(**doc, jobs=jobs)


def load(path: str | Path) -> Plan:
    return Plan.from_json(json.loads(Path(path).read_text()))


def command_line(template: Template, values: dict[str, Any]) -> list[str]:
    """The template's process with placeholders filled (see recast/processes.py)."""
    try:
        return processes.argv(template.process, values)
    except ValueError as exc:  # a value that cannot stand where the script puts it
        raise RecastError(f"template {template.name!r}: {exc}") from None


def _files_of(param: Parameter, value: Any) -> list[str]:
    """The paths in ``value`` that ``param`` declares as files: the job's inputs (bind-mounted under Docker).

    Only the declared type decides: a list of labels, or of host paths given as
    strings, is data and never becomes an input or a mount.
    """
    if param.type == "file":
        return [value] if isinstance(value, str) else []
    if param.type == "list" and param.items is not None and isinstance(value, list):
        return [path for element in value for path in _files_of(param.items, element)]
    if param.type == "object" and isinstance(value, dict):
        return [path for key, prop in param.properties.items() if key in value for path in _files_of(prop, value[key])]
    return []


def new_run_id(analysis_id: str) -> str:
    """A run's identity: unique per run folder (two folders running the same request never share it)."""
    import secrets

    return f"{analysis_id}-{secrets.token_hex(6)}"


def build(analysis: Analysis, parameters: dict[str, Any], run_dir: Path, environment: str,
          images: dict[str, Any] | None = None, request_digest: str | None = None,
          run_id: str | None = None, runtime: dict[str, list] | None = None) -> Plan:
    """Expand the workflow for resolved request ``parameters`` (files already in the run folder).

    ``images`` maps image names to ``{"tag", "id"}`` as recorded when they were built.
    ``run_id`` names the run (container labels, provenance); a new one when not given.
    ``runtime`` holds the lists other stages left, by scatter (``steps.STAGE.OUTPUT``): a stage that
    scatters over one not known yet, and every stage after it, is left ``pending``.
    """
    runtime = runtime or {}
    run_dir = run_dir.resolve()
    images = images or {}
    request_digest = request_digest or digest(parameters)
    plan = Plan(
        run_id=run_id or new_run_id(analysis.id),
        run_dir=str(run_dir),
        analysis={"id": analysis.id, "version": analysis.version, "spec_digest": digest(analysis.document)},
        request_digest=request_digest,
        environment=environment,
        python=sys.executable,
    )
    jobs_by_stage: dict[str, list[PlannedJob]] = {}
    for stage in _ordered(analysis.stages):
        if (stage.scatter_from and stage.scatter not in runtime) or stage.upstream & set(plan.pending):
            plan.pending.append(stage.name)
            continue
        template = analysis.templates[stage.template]
        items = stage.scatter_items({**parameters, **runtime})
        jobs_by_stage[stage.name] = []
        for branch, item in enumerate(items):
            job = _job(analysis, stage, template, branch if stage.scatter else None, item,
                       parameters, jobs_by_stage, run_dir, environment, images)
            jobs_by_stage[stage.name].append(job)
            plan.jobs.append(job)
    return plan


def _ordered(stages: tuple[Stage, ...]) -> list[Stage]:
    from graphlib import TopologicalSorter

    deps = {s.name: s.upstream for s in stages}
    by_name = {s.name: s for s in stages}
    return [by_name[name] for name in TopologicalSorter(deps).static_order()]


def _job(analysis, stage, template, branch, item, parameters, jobs_by_stage, run_dir, environment, images):
    job_id = stage.name if branch is None else f"{stage.name}__{branch}"
    values = {name: _resolve(stage.bind[name], stage, branch, item, parameters, jobs_by_stage, analysis)
              if name in stage.bind else param.default for name, param in template.parameters.items()}
    return make_job(analysis, template, values, job_id=job_id, stage=stage.name, branch=branch,
                    outdir=run_dir / "steps" / job_id, logs=run_dir / "logs", environment=environment,
                    image=images.get(template.image, {}),
                    after=[j.values_file for dep in stage.after for j in jobs_by_stage[dep]])


def make_job(analysis: Analysis, template: Template, values: dict[str, Any], *, job_id: str, stage: str,
             branch: int | None, outdir: Path, logs: Path, environment: str, image: dict[str, Any],
             after: list[str] = ()) -> PlannedJob:
    """The one way a job is made from a template and its parameter values: a stage's branch in a plan, and
    a step run on its fixtures by ``recast test --step``. ``values`` holds every parameter (files as paths;
    another job's output value as a reference known once it ran); ``after``: values files of jobs it waits
    for. :func:`recast.job.execute` runs what this returns."""
    values = {**values, "outdir": str(outdir)}
    inputs = [path for name, param in template.parameters.items() for path in _files_of(param, values[name])]
    inputs += after
    deferred = {name: _deferred(value) for name, value in values.items() if _is_later(value)}
    for later in (v for value in values.values() if _is_later(value) for v in _as_list(value)):
        inputs.append(later.values_file)  # it runs after them, and again when their values change
    shown = {name: _shown(value) if name in deferred else value for name, value in values.items()}
    output_files = {name: str(outdir / filename) for name, filename in template.output_files.items()}
    job = PlannedJob(
        id=job_id,
        stage=stage,
        branch=branch,
        template=template.name,
        argv=command_line(template, shown),
        outdir=str(outdir),
        inputs=sorted(set(inputs)),
        outputs=sorted(output_files.values()) + [str(outdir / VALUES_FILE)],
        output_files=output_files,
        output_values={n: [output_files[f], pointer] for n, (f, pointer) in template.output_values.items()},
        image={"name": template.image, "tag": image.get("tag"), "id": image.get("id"),
               **({"registry": image["registry"]} if image.get("registry") else {})},
        env=dict(template.env),
        cores=template.resources.cores,
        memory_bytes=template.resources.memory_bytes,
        time_limit_s=template.resources.time_limit_s,
        network=template.network,
        log=str(logs / f"{job_id}.log"),
        record=str(logs / f"{job_id}.json"),
        output_bytes=getattr(template.resources, "output_bytes", DEFAULT_OUTPUT_BYTES),
        retries=template.resources.retries,
        output_directories=sorted(output_files[n] for n in template.output_directories),
        output_globs=dict(template.output_globs),
        host_resources=list(template.host_resources),
        credentials=list(template.credentials),
        workdir=template.workdir,
        deferred=deferred,
        process=dict(template.process) if deferred else None,
        values={k: v for k, v in values.items() if k not in deferred} if deferred else None,
    )
    # Retries change how often a job may be tried, not what it computes.
    identity = {k: v for k, v in asdict(job).items() if k not in ("log", "record", "digest", "retries")}
    identity["template_document"] = analysis.document["templates"].get(template.name)
    if not get_environment(environment).uses_images:
        identity["image"] = None  # e.g. the host environment: the image plays no part in what runs
    else:  # where the image can be pulled from changes nothing in what runs: its ID does
        identity["image"] = {k: v for k, v in job.image.items() if k != "registry"}
    identity["environment"] = environment
    job.digest = digest(identity)
    return job


def _resolve(value, stage, branch, item, parameters, jobs_by_stage, analysis):
    ref = references.parse(value)
    if ref is None:
        return references.literal(value)
    if ref.kind == "request":
        return parameters[ref.name]
    if ref.kind == "item":
        if ref.name is None:
            return item
        return [element.get(ref.name) for element in item] if stage.scatter_batch else item.get(ref.name)
    if ref.kind == "entry":
        # Not resolved: a link in the entry is refused (by validation, and at mount time), never followed.
        return str(files.confined(analysis.root, ref.name, "$entry path"))
    producers = jobs_by_stage[ref.stage]
    other = next(s for s in analysis.stages if s.name == ref.stage)

    def output(job: PlannedJob):  # a file is known now; a value, or the files a glob matched, once the job ran
        if ref.output in job.output_files:
            return job.output_files[ref.output]
        return _Later(job.values_file, ref.output, job.id, ref.output in job.output_globs)

    if other.scatter is not None and other.branches == stage.branches:
        return output(producers[branch])
    if other.scatter is not None:
        return [output(j) for j in producers]
    return output(producers[0])


@dataclass(frozen=True)
class _Later:
    """An output value of another job, known once that job has run."""

    values_file: str
    name: str
    job: str
    files: bool = False  # the files a glob output matched (mounted read-only into the job that takes them)


def _is_later(value: Any) -> bool:
    return isinstance(value, _Later) or (isinstance(value, list) and bool(value)
                                         and all(isinstance(v, _Later) for v in value))


def _as_list(value: Any) -> list:
    return value if isinstance(value, list) else [value]


def _deferred(value: Any) -> list:
    if isinstance(value, _Later):
        return [value.values_file, value.name, *(["files"] if value.files else [])]
    return [_deferred(v) for v in value]


def _shown(value: Any):
    return f"<{value.name} of {value.job}>" if isinstance(value, _Later) else [_shown(v) for v in value]


def snakemake_resources(job: PlannedJob) -> dict[str, int]:
    return {
        "threads": max(1, math.ceil(job.cores)),
        "mem_mb": max(1, job.memory_bytes // 2**20),
        "runtime": max(1, math.ceil(job.time_limit_s / 60)),
    }
