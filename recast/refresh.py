"""Refresh stored results when an analysis changes, and show what changed between two runs.

Every run folder records the analysis version, spec digest and image IDs that
produced it (``results.json``, ``provenance.json``). :func:`stale` compares
them with the catalog now; :func:`rerun` re-runs a stale run's own request
(from its ``request.json`` and ``inputs/``) into a new folder beside it, so
both are kept; :func:`diff` says what differs between two runs in inputs,
software and results.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from recast import checks, request as request_mod
from recast.errors import RecastError
from recast.model import Analysis


@dataclass
class StoredRun:
    run_dir: Path
    results: dict
    provenance: dict
    reasons: list[str] = field(default_factory=list)

    @property
    def analysis_id(self) -> str:
        return self.results["analysis"]["id"]


def _read(run_dir: Path, name: str) -> dict:
    path = run_dir / name
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise RecastError(f"{run_dir} has no {name}: not a finished recast run folder") from None
    except ValueError as exc:
        raise RecastError(f"{path}: malformed JSON ({exc})") from None


def load_run(run_dir: str | Path) -> StoredRun:
    run_dir = Path(run_dir)
    return StoredRun(run_dir, _read(run_dir, "results.json"), _read(run_dir, "provenance.json"))


def stored_runs(root: str | Path) -> list[StoredRun]:
    """Every finished run folder below ``root``."""
    root = Path(root)
    return [load_run(p.parent) for p in sorted(root.rglob("results.json"))
            if (p.parent / "provenance.json").is_file() and ".recast" not in p.parts]


def stale(run: StoredRun, analysis: Analysis) -> list[str]:
    """Why ``run`` no longer reflects ``analysis`` as the catalog has it now (empty: up to date)."""
    from recast import execution
    from recast.digest import digest

    reasons = []
    made = run.results["analysis"]
    if made["version"] != analysis.version:
        reasons.append(f"analysis version {made['version']} -> {analysis.version}")
    elif made["spec_digest"] != digest(analysis.document):
        reasons.append("analysis spec changed (same version)")
    if run.provenance.get("environment") == "docker":
        now = execution.image_lock(analysis)
        for step, image in sorted(run.provenance.get("images", {}).items()):
            current = now.get(image.get("name"), {}).get("id")
            if current and current != image.get("id"):
                reasons.append(f"image {image['name']} rebuilt ({str(image.get('id'))[:19]} -> {current[:19]})")
                break
    return list(dict.fromkeys(reasons))


def refreshed_dir(run: StoredRun, analysis: Analysis) -> Path:
    from recast.digest import digest

    return run.run_dir.with_name(f"{run.run_dir.name}.v{analysis.version}-{digest(analysis.document)[7:15]}")


def rerun(run: StoredRun, analysis: Analysis, environment: str | None = None, cores: int = 1, executor="local"):
    """Re-run a stored run's request with the analysis as it is now, into a new folder beside it.

    ``executor``: a name or a configured executor (:func:`recast.executors.configure`).
    """
    from recast import execution

    stored = _read(run.run_dir, "request.json")
    document = {"analysis": analysis.id, "parameters": stored["parameters"]}
    request = request_mod.check(analysis, document, run.run_dir / "request.json", run.run_dir / "inputs")
    return execution.run(analysis, request, refreshed_dir(run, analysis),
                         environment=environment or run.provenance["environment"], cores=cores,
                         executor=executor)


def diff(a: StoredRun, b: StoredRun) -> dict:
    """What differs between two runs: inputs, software (analysis, images, versions), results."""

    def changes(old: dict, new: dict) -> list[dict]:
        return [{"name": k, "a": old.get(k), "b": new.get(k)}
                for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]

    pa, pb = a.provenance, b.provenance
    software_a = {f"analysis {k}": v for k, v in a.results["analysis"].items()}
    software_b = {f"analysis {k}": v for k, v in b.results["analysis"].items()}
    software_a.update({f"version {k}": v for k, v in pa.get("software", {}).items()})
    software_b.update({f"version {k}": v for k, v in pb.get("software", {}).items()})
    software_a.update({"environment": pa.get("environment"), "executor": pa.get("executor")})
    software_b.update({"environment": pb.get("environment"), "executor": pb.get("executor")})
    software_a.update({f"image {s}": i.get("id") for s, i in pa.get("images", {}).items()})
    software_b.update({f"image {s}": i.get("id") for s, i in pb.get("images", {}).items()})
    inputs_a = {"request digest": a.results["request"]["digest"], **pa.get("inputs", {})}
    inputs_b = {"request digest": b.results["request"]["digest"], **pb.get("inputs", {})}
    values_a = dict(checks.flatten(a.results["values"]))
    values_b = dict(checks.flatten(b.results["values"]))
    results = []
    for change in changes(values_a, values_b):
        old, new = change["a"], change["b"]
        if isinstance(old, (int, float)) and isinstance(new, (int, float)) and not isinstance(old, bool):
            change["delta"] = new - old
            change["relative"] = (new - old) / abs(old) if old else None
        results.append(change)
    return {"a": str(a.run_dir), "b": str(b.run_dir), "inputs": changes(inputs_a, inputs_b),
            "software": changes(software_a, software_b), "results": results}
