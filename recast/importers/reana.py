"""``recast import reana REANA.yaml``: a REANA analysis whose workflow is yadage.

``inputs.parameters`` become the example request ``default`` and
``inputs.files`` the files it names (copied beside it); the workflow is
imported as yadage (:mod:`recast.importers.yadage`). Other workflow types
(serial, CWL, Snakemake) are named in the report.

REANA's Gherkin tests (``tests.files``) become ``checks.yaml`` for the
example where they map: "the workspace should contain/include PATH" (a
stage's file, or an input file) and "the job logs for the STEP step should
contain TEXT" (one line, or a docstring block). Every other step (engine
logs, durations, sizes, checksums of one build's bytes) is listed in a note.
"""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

from recast import spec
from recast.errors import RecastError
from recast.importers import Report
from recast.importers.yadage import default_id, identifier, import_workflow


_TEXT = {"type": "string"}
_TEXTS = {"type": ["array", "null"], "items": _TEXT}
# What the importer reads of a reana.yaml; other keys are ignored.
STRUCTURE = {
    "type": "object", "required": ["workflow"], "properties": {
        "workflow": {"type": "object", "required": ["type", "file"], "properties": {"type": _TEXT, "file": _TEXT}},
        "inputs": {"type": ["object", "null"], "properties": {"parameters": {"type": ["object", "null"]},
                                                               "files": _TEXTS, "directories": _TEXTS}},
        "outputs": {"type": ["object", "null"], "properties": {"files": _TEXTS}},
        "tests": {"type": ["object", "null"], "properties": {"files": _TEXTS}},
    },
}


def _file_of(root: Path, relative: str, field: str, source: Path) -> Path:
    """``root/relative``: a regular file inside the analysis's folder (RecastError naming the field if not)."""
    from recast.files import UnsafePath, confined

    try:
        found = confined(root, relative, field)
        if found.is_file():
            return found
    except (UnsafePath, RecastError, OSError, ValueError):
        pass
    raise RecastError(f"{source}: {field} {spec.short(relative)} is not a file inside {root}")


def import_analysis(path: Path, catalog: Path, entry_id: str | None = None, force: bool = False) -> tuple[Path, Report]:
    from jsonschema import Draft202012Validator

    document = spec.load_document(path)
    if not isinstance(document, dict) or not isinstance(document.get("workflow"), dict):
        raise RecastError(f"{path}: not a reana.yaml (expected inputs, workflow, outputs)")
    found = spec.first_errors(Draft202012Validator(STRUCTURE).iter_errors(document), path)
    if found:
        raise RecastError(f"{path}: not a reana.yaml recast can read:\n"
                          + "\n".join(f"  {where}: {message}" for _, where, message in found))
    report = Report(str(path))
    kind = document["workflow"].get("type")
    if kind == "snakemake":
        return import_snakemake(path, document, catalog, entry_id, force, report)
    if kind != "yadage":
        report.cannot(path, "workflow.type", f"a {kind} workflow (recast imports yadage and snakemake ones)")
        report.raise_if_unsupported()
    root = path.parent
    workflow = _file_of(root, document["workflow"]["file"], "workflow.file", path)
    features = [_file_of(root, f, f"tests.files[{i}]", path)
                for i, f in enumerate((document.get("tests") or {}).get("files") or [])]
    parameters = dict((document.get("inputs") or {}).get("parameters") or {})
    return import_workflow(workflow, catalog, entry_id or default_id(path),
                           toplevel=root, inputs={"default": parameters} if parameters else {},
                           files_root=root, description=f"Imported by `recast import reana` from {path.name}.",
                           force=force, report=report,
                           checks=lambda translation, request, inputs: gherkin_checks(
                               features, translation.stages, inputs, report,
                               lambda p, files: _run_path(p, {s["name"]: s for s in translation.stages}, files)))


_STEP = re.compile(r"^\s*(?:Then|And|But)\s+(.*)$")
_WORKSPACE = re.compile(r'the workspace should (?:contain|include) "([^"]+)"$')
_JOB_LOG = re.compile(r'the job logs for the "([^"]+)" step should contain(?: "(.*)")?$')


def gherkin_checks(features: list[Path], stages: list[dict], inputs: dict[str, dict], report: Report,
                   locate) -> dict | None:
    """checks.yaml (runs.default) from REANA's Gherkin feature files, where their steps map; ``locate(path,
    example_files)`` is a workspace path's place in a recast run folder, or None."""
    if not features or "default" not in inputs:
        return None
    stages = {s["name"]: s for s in stages}
    example_files = {v for v in inputs["default"].values() if isinstance(v, str)}
    expect: dict = {"files": [], "logs": {}}
    for feature in features:
        try:
            lines = feature.read_text().splitlines()
        except OSError as exc:
            report.note(feature, "", f"not read: {exc.strerror}")
            continue
        i = 0
        while i < len(lines):
            match = _STEP.match(lines[i])
            i += 1
            if not match:
                continue
            step = match.group(1).strip()
            if workspace := _WORKSPACE.match(step):
                mapped = locate(workspace.group(1), example_files)
                if mapped:
                    expect["files"].append(mapped)
                else:
                    report.note(feature, step, "not translated: no stage or input file has this path")
            elif log := _JOB_LOG.match(step):
                text = log.group(2)
                if text is None and i < len(lines) and lines[i].strip() == '"""':
                    end = next((j for j in range(i + 1, len(lines)) if lines[j].strip() == '"""'), None)
                    if end is not None:
                        block = textwrap.dedent("\n".join(lines[i + 1:end]))
                        text, i = block, end + 1
                name = identifier(log.group(1), lower=True)
                if text is None or name not in stages or "scatter" in stages[name]:
                    report.note(feature, step, "not translated: a log check of an unknown or scattered step")
                    continue
                expect["logs"].setdefault(f"logs/{name}.log", []).append(re.escape(text))
            else:
                report.note(feature, step, "not translated (recast's checks compare files, values and job logs)")
    expect = {k: v for k, v in expect.items() if v}
    return {"schema": spec.schema_name("checks"), "runs": {"default": expect}} if expect else None


def _run_path(workspace_path: str, stages: dict[str, dict], example_files: set[str]) -> str | None:
    """A yadage workspace path as a run folder path: a stage's file, or an input file of the example."""
    first, _, rest = workspace_path.partition("/")
    name = identifier(first, lower=True)
    if name in stages and "scatter" not in stages[name] and rest:
        return f"steps/{name}/{rest}"
    if workspace_path in example_files:
        return f"inputs/{workspace_path}"
    return None


def import_snakemake(path: Path, document: dict, catalog: Path, entry_id: str | None, force: bool,
                     report: Report) -> tuple[Path, Report]:
    """A REANA analysis whose workflow is a Snakefile (rules without wildcards): see recast/importers/snakemake.py."""
    from recast.importers import install
    from recast.importers import snakemake
    from recast.importers.yadage import _dump, analysis_document, write_entry

    root = path.parent
    snakefile = _file_of(root, document["workflow"]["file"], "workflow.file", path)
    parameters = dict((document.get("inputs") or {}).get("parameters") or {})
    config = parameters
    if isinstance(parameters.get("input"), str) and "\0" not in parameters["input"]:
        try:  # REANA's configfile convention
            configfile = _file_of(root, parameters["input"], "inputs.parameters.input", path)
        except RecastError:
            configfile = None
        if configfile is not None:
            config = spec.load_document(configfile)
            if not isinstance(config, dict):
                raise RecastError(f"{configfile}: the configfile (inputs.parameters.input) is not a mapping")
    translation = snakemake.translate(snakefile, root, config, report)
    made = {p: stage for stage, outputs in translation.outputs.items() for p in outputs.values()}
    named = {p: (stage, name) for stage, outputs in translation.outputs.items() for name, p in outputs.items()}
    results = {}
    for i, wanted in enumerate((document.get("outputs") or {}).get("files") or []):
        if wanted in named:
            results[identifier(Path(wanted).stem, lower=True)] = f"$steps.{named[wanted][0]}.{named[wanted][1]}"
        else:
            report.note(path, f"outputs.files[{i}]", f"{wanted!r} is no rule's output: not a declared result")
    report.raise_if_unsupported()
    entry_id = entry_id or default_id(path)
    inputs = {"default": {k: v for k, v in config.items() if k in translation.request}}
    document_out = analysis_document(entry_id, f"{root.name} (imported from REANA, snakemake)",
                                     f"Imported by `recast import reana` from {path.name} ({snakefile.name}).",
                                     translation, translation.request, {"default": "examples/default.yaml"},
                                     None, results)
    features = [_file_of(root, f, f"tests.files[{i}]", path)
                for i, f in enumerate((document.get("tests") or {}).get("files") or [])]
    checks = gherkin_checks(features, translation.stages, inputs, report,
                            lambda p, files: f"steps/{made[p]}/{p}" if p in made
                            else f"inputs/{p}" if p in files else None)
    if checks:
        document_out["checks"] = "checks.yaml"

    def write(folder: Path) -> None:
        write_entry(folder, document_out, translation, inputs, root, translation.request)
        snakemake.copy_entry_files(folder, translation)
        if checks:
            _dump(folder / "checks.yaml", checks)

    return install(catalog, entry_id, write, force), report
