"""``recast test``: re-run an entry's example requests and steps, and judge them against its data.

For each example request with reference results: run it (in a separate test
run folder, so no user's run and no reference is ever overwritten), compare
the new values with the reference value by value within the declared
tolerances, and apply the entry's acceptance checks for that example. For a
single step (``--step``): run its template once on the fixture inputs stored
with the entry, and apply the step's checks. Each case is reported for
people and as JUnit XML for CI systems.
"""

from __future__ import annotations

import json
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

from recast import checks as checks_mod
from recast import files
from recast import request as request_mod
from recast.errors import RecastError, SpecError
from recast.model import Analysis


@dataclass
class Case:
    """One test case: an example run or a single step of one analysis."""

    analysis: str
    name: str
    outcomes: list[checks_mod.Outcome] = field(default_factory=list)
    error: str | None = None
    seconds: float = 0.0
    run_dir: str = ""

    @property
    def passed(self) -> bool:
        return self.error is None and all(o.passed for o in self.outcomes)

    def to_json(self) -> dict:
        return {"analysis": self.analysis, "case": self.name, "passed": self.passed, "error": self.error,
                "seconds": round(self.seconds, 2), "run_dir": self.run_dir,
                "checks": [o.__dict__ for o in self.outcomes]}


def test_example(analysis: Analysis, example: str, workdir: Path, environment: str, cores: int = 1,
                 allow_stale_images: bool = False, executor="local") -> Case:
    from recast import execution

    case = Case(analysis.id, f"example:{example}")
    started = time.monotonic()
    try:
        ex = analysis.examples[example]
        if ex.reference is None:
            from recast.catalog import command

            raise RecastError(f"example {example!r} of {analysis.id} has no reference results to compare with: "
                              f"make them with `{command(analysis, 'test', '--update-reference')}`")
        reference = _load_reference(ex.reference)
        relative, absolute = checks_mod.tolerances(ex.tolerances, str(analysis.spec_path))
        run_dir = workdir / analysis.id / example
        case.run_dir = str(run_dir)
        request = request_mod.load(analysis, ex.request)
        execution.run(analysis, request, run_dir, environment=environment, cores=cores,
                      allow_stale_images=allow_stale_images, executor=executor)
        found = json.loads((run_dir / "results.json").read_text())
        case.outcomes += [checks_mod.Outcome(f"value {o.name}", o.passed, o.expected, o.found, o.message)
                          for o in checks_mod.compare(found["values"], reference["values"], relative, absolute)]
        expect = (analysis.checks or {}).get("runs", {}).get(example)
        if expect:
            r, a = checks_mod.tolerances(expect.get("tolerances"), analysis.checks["path"])
            case.outcomes += checks_mod.acceptance(run_dir, expect, found["values"], r, a)
    except (RecastError, KeyError) as exc:
        case.error = str(exc)
    case.seconds = time.monotonic() - started
    return case


@dataclass
class ReferenceUpdate:
    """``recast test --update-reference``: one example's reference results, written from a fresh run."""

    analysis: str
    example: str
    path: Path
    run_dir: Path
    previous: bool  # whether there was a reference before
    changes: list[checks_mod.Outcome]  # values that differ from the previous reference (within its tolerances)

    def to_json(self) -> dict:
        return {"analysis": self.analysis, "example": self.example, "reference": str(self.path),
                "run_dir": str(self.run_dir), "previous": self.previous,
                "changes": [o.__dict__ for o in self.changes]}


def update_reference(analysis: Analysis, example: str, workdir: Path, environment: str, cores: int = 1,
                     allow_stale_images: bool = False, executor="local") -> ReferenceUpdate:
    """Run ``example`` afresh and write its ``results.json`` as the reference the spec declares.

    The reference file need not exist yet (``examples.NAME.reference`` in
    analysis.yaml names where it goes); the run goes into a new test run
    folder, never reusing an earlier test run's outputs. Returns what changed
    against the previous reference.
    """
    import shutil

    from recast import execution
    from recast.catalog import command

    if example not in analysis.examples:
        raise RecastError(f"analysis {analysis.id} has no example {example!r} "
                          f"(examples: {', '.join(sorted(analysis.examples)) or 'none'})")
    ex = analysis.examples[example]
    declared = (analysis.document.get("examples", {}).get(example) or {}).get("reference")
    if not declared:
        raise RecastError(f"{analysis.spec_path}: examples.{example} has no `reference:`: add "
                          f"`reference: examples/{example}.results.json` (the file need not exist yet), "
                          f"then run `{command(analysis, 'test', '--update-reference')}` again")
    path = files.confined(analysis.root, declared, f"examples.{example}.reference")
    previous = _load_reference(path) if path.is_file() else None
    run_dir = workdir / analysis.id / example
    if run_dir.exists():
        shutil.rmtree(run_dir)  # recast test's own folder, never a user's run: a fresh run
    request = request_mod.load(analysis, ex.request)
    execution.run(analysis, request, run_dir, environment=environment, cores=cores,
                  allow_stale_images=allow_stale_images, executor=executor)
    found = json.loads((run_dir / "results.json").read_text())
    changes = []
    if previous is not None:
        relative, absolute = checks_mod.tolerances(ex.tolerances, str(analysis.spec_path))
        changes = [o for o in checks_mod.compare(found["values"], previous["values"], relative, absolute)
                   if not o.passed]
    source = Path(found.get("request", {}).get("source") or "")
    if source.is_absolute() and source.is_relative_to(analysis.root):  # no machine's path in a committed file
        found["request"]["source"] = str(source.relative_to(analysis.root))
    files.atomic_write(path, json.dumps(found, indent=1, sort_keys=True) + "\n")
    return ReferenceUpdate(analysis.id, example, path, run_dir, previous is not None, changes)


def _load_reference(path: Path) -> dict:
    from recast import spec

    try:
        document = spec.load_document(path)
    except SpecError as exc:
        raise RecastError(f"reference results unreadable: {exc}") from None
    problems = spec.problems(document, "result", path)
    if problems:
        raise RecastError("reference results malformed:\n" + str(SpecError(problems)))
    return document


def test_step(analysis: Analysis, step: str, workdir: Path, environment: str,
              allow_stale_images: bool = False) -> Case:
    """Run one template on the entry's stored fixtures and apply the step's checks.

    The job is made and run as a plan's job is (:func:`recast.plan.make_job`, :func:`recast.job.execute`):
    the same command, mounts, limits, provisions and output checks.
    """
    from recast import execution, plan
    from recast.environments import get_environment
    from recast.job import execute, tail

    case = Case(analysis.id, f"step:{step}")
    started = time.monotonic()
    try:
        steps = (analysis.checks or {}).get("steps", {})
        if step not in steps:
            raise RecastError(f"analysis {analysis.id} has no step check {step!r} "
                              f"(checks: {', '.join(sorted(steps)) or 'none'})")
        check = steps[step]
        template = analysis.templates[check["template"]]
        fixtures = analysis.root / check.get("fixtures", ".")  # validation checked it: a real folder, no link
        outdir = (workdir / analysis.id / "steps" / step).resolve()
        case.run_dir = str(outdir)
        if outdir.exists():
            import shutil

            shutil.rmtree(outdir)
        outdir.mkdir(parents=True)
        values = {}
        for name, param in template.parameters.items():
            value = check["parameters"].get(name, param.default)
            if param.type == "file":
                value = str(files.confined(fixtures, value, f"fixture of step {step}"))
            elif param.items is not None and param.items.type == "file":
                value = [str(files.confined(fixtures, v, f"fixture of step {step}")) for v in value]
            values[name] = value
        uses_images = get_environment(environment).uses_images
        image = execution.image_lock(analysis).get(template.image, {}) if uses_images else {}
        if uses_images and not image.get("id"):
            from recast.catalog import command

            raise RecastError(f"image {template.image!r} of {analysis.id} is not built: "
                              f"run `{command(analysis, 'images build')}`{execution.host_alternative(analysis)}")
        if uses_images:
            from recast import images

            images.require_current(analysis, allow_stale_images)
        job = plan.make_job(analysis, template, values, job_id=step, stage=step, branch=None, outdir=outdir,
                            logs=outdir.parent, environment=environment, image=image)
        log = Path(job.log)
        log.unlink(missing_ok=True)
        Path(job.record).unlink(missing_ok=True)  # a step test is always a first attempt
        try:
            values = execute(job, run_id=f"{analysis.id}-test", analysis_id=analysis.id,
                             environment_name=environment)
        except RecastError as exc:
            raise RecastError(f"{exc}\n{tail(log)}" if log.exists() else str(exc)) from None
        expect = dict(check["expect"])
        # A step's command output is its log, named "log" in checks.yaml.
        logs = expect.pop("logs", {})
        r, a = checks_mod.tolerances(expect.get("tolerances"), analysis.checks["path"])
        case.outcomes += checks_mod.acceptance(outdir, expect, values, r, a)
        if logs:
            case.outcomes += checks_mod.acceptance(log.parent, {"logs": {log.name if k == "log" else k: v
                                                                          for k, v in logs.items()}})
    except RecastError as exc:
        case.error = str(exc)
    case.seconds = time.monotonic() - started
    return case


def junit(cases: list[Case], path: Path) -> None:
    """Write a JUnit XML report: one testsuite per analysis, one testcase per example or step."""
    suites = ET.Element("testsuites", name="recast")
    by_analysis: dict[str, list[Case]] = {}
    for case in cases:
        by_analysis.setdefault(case.analysis, []).append(case)
    for analysis, group in by_analysis.items():
        suite = ET.SubElement(suites, "testsuite", name=analysis, tests=str(len(group)),
                              failures=str(sum(1 for c in group if c.error is None and not c.passed)),
                              errors=str(sum(1 for c in group if c.error is not None)),
                              time=f"{sum(c.seconds for c in group):.2f}")
        for case in group:
            element = ET.SubElement(suite, "testcase", classname=analysis, name=case.name, time=f"{case.seconds:.2f}")
            if case.error is not None:
                ET.SubElement(element, "error", message=case.error.splitlines()[0]).text = case.error
            elif not case.passed:
                failed = [o for o in case.outcomes if not o.passed]
                text = "\n".join(f"{o.name}: expected {o.expected!r}, found {o.found!r} {o.message}".rstrip() for o in failed)
                ET.SubElement(element, "failure", message=f"{len(failed)} check(s) failed").text = text
    path.parent.mkdir(parents=True, exist_ok=True)
    ET.ElementTree(suites).write(path, encoding="utf-8", xml_declaration=True)
