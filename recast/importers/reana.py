"""``recast import reana REANA.yaml``: a REANA analysis whose workflow is yadage.

``inputs.parameters`` become the example request ``default`` and
``inputs.files`` the files it names (copied beside it); the workflow is
imported as yadage (:mod:`recast.importers.yadage`). Other workflow types
(serial, CWL, Snakemake) are named in the report; REANA's Gherkin tests are
not translated (a note says so).
"""

from __future__ import annotations

from pathlib import Path

from recast import spec
from recast.errors import RecastError
from recast.importers import ImportFailed, Report
from recast.importers.yadage import default_id, import_workflow


def import_analysis(path: Path, catalog: Path, entry_id: str | None = None, force: bool = False) -> tuple[Path, Report]:
    document = spec.load_document(path)
    if not isinstance(document, dict) or not isinstance(document.get("workflow"), dict):
        raise RecastError(f"{path}: not a reana.yaml (expected inputs, workflow, outputs)")
    report = Report(str(path))
    kind = document["workflow"].get("type")
    if kind != "yadage":
        report.cannot(path, "workflow.type", f"a {kind} workflow (recast imports yadage ones; export to REANA's "
                                             "snakemake with `recast export reana`)")
        report.raise_if_unsupported()
    root = path.parent
    workflow = root / str(document["workflow"].get("file", ""))
    if not workflow.is_file():
        raise RecastError(f"{path}: workflow.file {document['workflow'].get('file')!r} not found")
    if document.get("tests"):
        report.note(path, "tests", "REANA's Gherkin tests are not translated into checks.yaml")
    parameters = dict((document.get("inputs") or {}).get("parameters") or {})
    try:
        return import_workflow(workflow, catalog, entry_id or default_id(path),
                               toplevel=root, inputs={"default": parameters} if parameters else {},
                               files_root=root, description=f"Imported by `recast import reana` from {path.name}.",
                               force=force, report=report)
    except ImportFailed:
        raise
