"""``recast import recast-atlas RECAST.yml``: an entry of the ATLAS ``recast`` command's catalogue.

Its workflow is imported as yadage (:mod:`recast.importers.yadage`); beside
it: ``metadata`` (``short_description`` as the title, ``author`` as the
contact), ``example_inputs`` (their ``initdata``) as example requests, and
``results`` (``relpath`` = stage folder / published path) as declared result
files. A ``toplevel`` in a remote repository (``github:…``, ``gitlab-cern:…``)
cannot be fetched here: give a local copy with ``--toplevel``.
"""

from __future__ import annotations

from pathlib import Path

from recast import spec
from recast.errors import RecastError
from recast.importers import Report
from recast.importers.yadage import identifier, import_workflow


_TEXT = {"type": "string"}
# What the importer reads of an entry; other keys are ignored.
STRUCTURE = {
    "type": "object", "required": ["spec"], "properties": {
        "name": _TEXT,
        "metadata": {"type": ["object", "null"], "properties": {"short_description": _TEXT, "author": _TEXT}},
        "spec": {"type": "object", "properties": {"toplevel": _TEXT, "workflow": _TEXT}},
        "example_inputs": {"type": ["object", "null"], "additionalProperties": {
            "type": ["object", "null"], "properties": {"initdata": {"type": ["object", "null"]}}}},
        "results": {"type": ["array", "null"], "items": {
            "type": "object", "required": ["relpath"], "properties": {"name": _TEXT, "relpath": _TEXT}}},
    },
}


def import_entry(path: Path, catalog: Path, entry_id: str | None = None, toplevel: Path | None = None,
                 force: bool = False) -> tuple[Path, Report]:
    from jsonschema import Draft202012Validator

    document = spec.load_document(path)
    if not isinstance(document, dict) or "spec" not in document:
        raise RecastError(f"{path}: not a recast-atlas entry (expected name, metadata, spec, example_inputs)")
    found = spec.first_errors(Draft202012Validator(STRUCTURE).iter_errors(document), path)
    if found:
        raise RecastError(f"{path}: not a recast-atlas entry recast can read:\n"
                          + "\n".join(f"  {where}: {message}" for _, where, message in found))
    report = Report(str(path))
    where = document["spec"] or {}
    remote = str(where.get("toplevel", ""))
    if toplevel is None:
        if ":" in remote:
            raise RecastError(f"{path}: spec.toplevel {remote!r} is a remote repository, which cannot be fetched "
                              "here: give a local copy of it with --toplevel DIR")
        base = path.parent / remote if remote else path.parent
        toplevel = base if (base / where.get("workflow", "")).is_file() else base / "specs"
    workflow = toplevel / str(where.get("workflow", "workflow.yml"))
    if not workflow.resolve().is_relative_to(toplevel.resolve()):
        raise RecastError(f"{path}: spec.workflow {where.get('workflow')!r} is outside its toplevel {toplevel}")
    if not workflow.is_file():
        raise RecastError(f"{path}: the workflow {where.get('workflow')!r} is not in {toplevel}")
    inputs = {}
    for name, example in (document.get("example_inputs") or {}).items():
        if (example or {}).get("dataopts"):
            report.note(path, f"example_inputs.{name}.dataopts", "input archives are not downloaded: the example's "
                                                                 "files must be given beside its request")
        inputs[identifier(name, lower=True)] = dict((example or {}).get("initdata") or {})
    metadata = document.get("metadata") or {}
    name = str(document.get("name", ""))
    entry_id = entry_id or identifier(name.replace("/", "-"), lower=True).replace("_", "-")
    if "$" in name:
        entry_id = identifier(path.parent.name, lower=True).replace("_", "-")
    return import_workflow(
        workflow, catalog, entry_id, toplevel=toplevel, inputs=inputs, files_root=toplevel,
        title=str(metadata.get("short_description") or name), report=report,
        description=f"Imported by `recast import recast-atlas` from {path.name} ({name}).",
        metadata={k: v for k, v in {"contact": metadata.get("author")}.items() if v and "$" not in str(v)},
        results=list(document.get("results") or []), force=force)
