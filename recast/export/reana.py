"""``recast export reana ID --request FILE --out DIR``: a REANA workflow (type ``snakemake``) of one request.

DIR gets:

- ``reana.yaml``: inputs (the request's files under ``inputs/``, the entry's
  files the workflow reads under ``entry/``, the workflow's own files),
  ``workflow: {type: snakemake, file: Snakefile}``, outputs ``results.json``
  and ``provenance.json``;
- ``Snakefile``: one rule per stage, a scattered stage's branches as the
  wildcard ``branch``; each rule runs its template's command in
  ``container: docker://REPOSITORY@sha256:DIGEST`` (the image pushed with
  ``recast images push``: REANA pulls from a registry, never a tag); the
  template's cores, memory and time limit as ``threads``, ``mem_mb`` and
  ``runtime`` (and its ``retries`` as Snakemake's) and as REANA's ``kubernetes_memory_limit`` and
  ``kubernetes_job_timeout``; a last rule ``results`` writes ``results.json``
  (the values the analysis declares, read from the jobs' outputs exactly as
  ``recast run`` reads them) and ``provenance.json``;
- ``recast-export.json`` (the jobs: commands, inputs, how values are read) and
  ``recast_results.py`` (the last rule's script: Python's standard library only).

Everything is relative to DIR, so the folder runs where it is uploaded. The
commands are the plan ``recast run`` builds for the same request, with its
paths made relative.
"""

from __future__ import annotations

import json
import shlex
import shutil
from pathlib import Path

import yaml

from recast.references import parse_or_none
from recast.spec import schema_name
from recast.errors import RecastError
from recast.model import Analysis
from recast.request import Request

SPEC_FILE = "recast-export.json"
SCRIPT_FILE = "recast_results.py"


def export(analysis: Analysis, request: Request, out: Path) -> Path:
    from recast import execution
    from recast import plan as plan_mod
    from recast import request as request_mod
    from recast.digest import digest

    if not analysis.runnable:
        raise RecastError(f"analysis {analysis.id!r} has no workflow to export")
    out = Path(out).resolve()
    root = analysis.root.resolve()
    if out == root or out.is_relative_to(root):
        raise RecastError(f"--out {out} lies inside the entry {root}: choose a folder outside it")
    by_stage = {stage.name: analysis.templates[stage.template] for stage in analysis.stages}
    later = [f"{stage.name}.bind.{name}" for stage in analysis.stages for name, value in stage.bind.items()
             if (ref := parse_or_none(value)) is not None and ref.kind == "steps"
             and ref.output in by_stage[ref.stage].output_values]
    later += [f"{stage.name}.scatter" for stage in analysis.stages if stage.scatter_from]
    if later:
        raise RecastError(f"{', '.join(later)} take another stage's output values, which are known only when it has "
                          "run: the REANA export writes every command in advance, so it cannot export them yet")
    pinned = execution.image_lock(analysis)
    used = sorted({t.image for t in analysis.templates.values()})
    unpushed = [name for name in used if not pinned.get(name, {}).get("registry")]
    if unpushed:
        from recast.catalog import command

        raise RecastError(f"image(s) {', '.join(unpushed)} of {analysis.id} have no registry digest, and REANA pulls "
                          f"images from a registry: run `{command(analysis, 'images push', '--registry HOST/PREFIX')}` "
                          "first")
    out.mkdir(parents=True, exist_ok=True)
    staged = request_mod.stage_inputs(request, out)
    parameters = request_mod.resolved_parameters(request, staged, analysis)
    plan = plan_mod.build(analysis, parameters, out, "docker", pinned, request.digest,
                          run_id=f"{analysis.id}-reana-{request.digest[7:19]}")

    here, entry = f"{out}/", f"{root}/"

    def relative(text: str) -> str:
        return text.replace(here, "").replace(entry, "entry/")

    entry_files = sorted({p for job in plan.jobs for p in job.inputs if p.startswith(entry)})
    for path in entry_files:
        target = out / relative(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
    producers = {job.values_file: job for job in plan.jobs}

    stages: dict[str, dict] = {}
    for job in plan.jobs:
        template = analysis.templates[job.template]
        stage = stages.setdefault(job.stage, {
            "scattered": job.branch is not None, "template": job.template,
            "image": pinned[template.image]["registry"], "jobs": {},
            "outputs": sorted(str(Path(p).relative_to(job.outdir)) for p in job.output_files.values()),
            "threads": plan_mod.snakemake_resources(job)["threads"],
            "mem_mb": plan_mod.snakemake_resources(job)["mem_mb"],
            "runtime": plan_mod.snakemake_resources(job)["runtime"],
            "timeout_s": int(job.time_limit_s), "retries": job.retries})
        inputs = []
        for path in job.inputs:  # an ordering input (another job's values.json) becomes that job's files
            inputs += sorted(producers[path].output_files.values()) if path in producers else [path]
        env = {"OMP_NUM_THREADS": str(max(1, int(job.cores))), **job.env}
        stage["jobs"]["" if job.branch is None else str(job.branch)] = {
            "id": job.id, "inputs": sorted({relative(p) for p in inputs}),
            "command": shlex.join(["env", *(f"{k}={v}" for k, v in env.items()), *(relative(a) for a in job.argv)]),
            "values": {name: [relative(path), pointer] for name, (path, pointer) in job.output_values.items()},
            "files": {name: relative(path) for name, path in job.output_files.items()}}

    results = {"values": {}, "files": {}}
    from recast import references

    for kind in ("values", "files"):
        for name, value in analysis.results.get(kind, {}).items():
            ref = references.parse(value)
            results[kind][name] = {"stage": ref.stage, "output": ref.output,
                                   "scattered": stages[ref.stage]["scattered"]}
    spec = {"analysis": dict(plan.analysis), "run_id": plan.run_id, "result_schema": schema_name("result"),
            "request": {"digest": request.digest, "source": str(request.source) if request.source else ""},
            "inputs": sorted({relative(p) for job in plan.jobs for p in job.inputs if p.startswith(f"{here}inputs/")}
                             | {relative(p) for p in entry_files}),
            "stages": stages, "results": results}
    (out / SPEC_FILE).write_text(json.dumps(spec, indent=1, sort_keys=True) + "\n")
    (out / SCRIPT_FILE).write_text(_SCRIPT)
    (out / "Snakefile").write_text(_snakefile(stages, spec))
    reana = {
        "version": "0.9.0",
        "inputs": {"files": sorted([SPEC_FILE, SCRIPT_FILE, *spec["inputs"]])},
        "workflow": {"type": "snakemake", "file": "Snakefile"},
        "outputs": {"files": ["results.json", "provenance.json"]},
    }
    (out / "reana.yaml").write_text(f"# recast export reana {analysis.id}, request digest {request.digest}; "
                                    f"analysis spec {digest(analysis.document)}\n"
                                    + yaml.safe_dump(reana, sort_keys=False))
    return out


def _snakefile(stages: dict, spec: dict) -> str:
    lines = [
        f"# {spec['analysis']['id']} {spec['analysis']['version']}, exported by recast: one rule per stage.",
        "# The commands, inputs and values are in recast-export.json; paths are relative to this folder.",
        "import json",
        "",
        f'SPEC = json.load(open("{SPEC_FILE}"))',
        'STAGES = SPEC["stages"]',
        "",
        'wildcard_constraints:\n    branch="[0-9]+"',
        "",
        "",
        "rule all:",
        '    input: "results.json", "provenance.json"',
        "",
    ]
    last_image = None
    for name, stage in stages.items():
        folder = f"steps/{name}__{{branch}}" if stage["scattered"] else f"steps/{name}"
        key = "wc.branch" if stage["scattered"] else '""'
        log = f"logs/{name}__{{branch}}.log" if stage["scattered"] else f"logs/{name}.log"
        outputs = ", ".join(json.dumps(f"{folder}/{o}") for o in stage["outputs"])
        last_image = stage["image"]
        memory = f'{stage["mem_mb"]}Mi'
        lines += [
            "",
            f"rule {name}:",
            f'    input: lambda wc: STAGES["{name}"]["jobs"][{key}]["inputs"]',
            f"    output: {outputs}",
            f'    log: "{log}"',
            f'    container: "docker://{stage["image"]}"',
            f'    threads: {stage["threads"]}',
            *([f'    retries: {stage["retries"]}'] if stage["retries"] else []),
            f'    resources: mem_mb={stage["mem_mb"]}, runtime={stage["runtime"]}, '
            f'kubernetes_memory_limit="{memory}", kubernetes_job_timeout={stage["timeout_s"]}',
            f'    params: command=lambda wc: STAGES["{name}"]["jobs"][{key}]["command"]',
            '    shell: "{params.command} > {log} 2>&1"',
        ]
    outputs = [path for stage in stages.values() for job in stage["jobs"].values() for path in job["files"].values()]
    lines += [
        "",
        "",
        "# results.json and provenance.json, read from the jobs' outputs as `recast run` reads them.",
        "rule results:",
        f"    input: {json.dumps(sorted(outputs))}",
        '    output: "results.json", "provenance.json"',
        f'    container: "docker://{last_image}"',
        f'    shell: "python3 {SCRIPT_FILE}"',
        "",
    ]
    return "\n".join(lines)


_SCRIPT = r'''"""Write results.json and provenance.json of an exported recast workflow (standard library only)."""

import hashlib
import json
import platform
from datetime import datetime, timezone

spec = json.load(open("recast-export.json"))


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def pointer_get(document, pointer):
    for token in pointer.split("/")[1:]:
        token = token.replace("~1", "/").replace("~0", "~")
        document = document[int(token)] if isinstance(document, list) else document[token]
    return document


def jobs(stage):
    found = spec["stages"][stage]["jobs"]
    return [found[k] for k in sorted(found, key=lambda k: int(k) if k else 0)]


values = {}
for name, ref in spec["results"]["values"].items():
    found = []
    for job in jobs(ref["stage"]):
        path, pointer = job["values"][ref["output"]]
        found.append(pointer_get(json.load(open(path)), pointer))
    values[name] = found if ref["scattered"] else found[0]
files = {}
for name, ref in spec["results"]["files"].items():
    for branch, job in sorted(spec["stages"][ref["stage"]]["jobs"].items()):
        path = job["files"][ref["output"]]
        files[name if not ref["scattered"] else f"{name}[{branch}]"] = {"path": path, "sha256": sha256(path)}
run = {"id": spec["run_id"], "environment": "docker", "executor": "reana", "status": "success"}
results = {"schema": spec["result_schema"], "analysis": spec["analysis"], "request": spec["request"], "run": run,
           "values": values, "files": files}
json.dump(results, open("results.json", "w"), indent=1, sort_keys=True)
provenance = {
    "schema": "recast/provenance/export/1.0.0", "analysis": spec["analysis"], "request": spec["request"], "run": run,
    "inputs": {path: sha256(path) for path in spec["inputs"]},
    "images": {job["id"]: stage["image"] for stage in spec["stages"].values() for job in stage["jobs"].values()},
    "commands": {job["id"]: job["command"] for stage in spec["stages"].values() for job in stage["jobs"].values()},
    "software": {"python": platform.python_version()},
    "written": datetime.now(timezone.utc).isoformat(timespec="seconds"),
}
json.dump(provenance, open("provenance.json", "w"), indent=1, sort_keys=True)
'''
