"""Check a catalog entry beyond its schemas, and build the validated model.

The schema says a document has the right shape; this module checks that its
parts fit together: referenced templates, files and images exist, every
placeholder is a declared parameter and every declared parameter is used,
bindings refer to things that exist, the workflow is acyclic, scatters run
over lists. Every problem is collected (file, field, what was expected) and
reported together, as ``recast validate`` shows them.
"""

from __future__ import annotations

import re
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

from recast import references, spec
from recast.errors import SpecError
from recast.model import Analysis, Example, ImageSpec, Parameter, Resources, Stage, Template

SPEC_FILE = "analysis.yaml"

_UNITS = {"B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
          "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}
_SECONDS = {"s": 1, "m": 60, "h": 3600}


def parse_memory(text: str) -> int:
    number, unit = re.fullmatch(r"([0-9.]+)\s*([A-Za-z]+)", text).groups()
    return int(float(number) * _UNITS[unit.upper()])


def parse_duration(text: str) -> float:
    number, unit = re.fullmatch(r"([0-9.]+)\s*([smh])", text).groups()
    return float(number) * _SECONDS[unit]


def parameter(name: str, doc: dict) -> Parameter:
    extra = {k: v for k, v in doc.items() if k not in ("type", "description", "default", "items", "properties", "required")}
    return Parameter(
        name=name,
        type=doc["type"],
        description=doc.get("description", ""),
        default=doc.get("default"),
        has_default="default" in doc,
        items=parameter(f"{name}[]", doc["items"]) if "items" in doc else None,
        properties={k: parameter(k, v) for k, v in doc.get("properties", {}).items()},
        required=tuple(doc.get("required", ())),
        schema=extra,
    )


def inside(root: Path, relative: str) -> Path | None:
    """``root/relative`` if it stays inside ``root`` (after resolving links), else None."""
    if Path(relative).is_absolute():
        return None
    candidate = (root / relative).resolve()
    return candidate if candidate.is_relative_to(root.resolve()) else None


class _Checker:
    def __init__(self, spec_path: Path):
        self.spec_path = spec_path
        self.root = spec_path.parent
        self.found: list[tuple[str, str, str]] = []

    def problem(self, where: str, message: str, file: Path | None = None):
        self.found.append((str(file or self.spec_path), where, message))

    # -- templates --------------------------------------------------------------

    def part(self, where: str, relative: str, kind: str) -> tuple[Path, dict] | None:
        """A document the spec refers to (a template, the checks): inside the entry, readable, schema-valid."""
        path = inside(self.root, relative)
        if path is None or not path.is_file():
            self.problem(where, f"{kind} file {relative!r} not found inside {self.root}")
            return None
        try:
            doc = spec.load_document(path)
        except SpecError as exc:
            self.found.extend(exc.problems)
            return None
        schema_problems = spec.problems(doc, kind, path)
        if schema_problems:
            self.found.extend(schema_problems)
            return None
        return path, doc

    def template(self, name: str, relative: str, images: dict) -> Template | None:
        loaded = self.part(f"templates.{name}", relative, "template")
        if loaded is None:
            return None
        path, doc = loaded
        if doc["name"] != name:
            self.problem("name", f"expected {name!r} (the name the analysis spec gives it), found {doc['name']!r}", path)
        parameters = {k: parameter(k, v) for k, v in doc["parameters"].items()}
        used: set[str] = set()
        for i, element in enumerate(doc["process"]["argv"]):
            try:
                names = references.placeholders(element)
            except references.PlaceholderError as exc:
                self.problem(f"process.argv[{i}]", str(exc), path)
                continue
            for placeholder in names:
                used.add(placeholder)
                if placeholder not in parameters and placeholder not in references.BUILTIN_PLACEHOLDERS:
                    self.problem(
                        f"process.argv[{i}]",
                        f"placeholder {{{placeholder}}} is not a declared parameter "
                        f"(declared: {', '.join(sorted(parameters)) or 'none'}; built-in: outdir)",
                        path,
                    )
            whole = references.whole_placeholder(element)
            for placeholder in names:
                p = parameters.get(placeholder)
                if p is not None and p.type in ("list", "object") and whole != placeholder:
                    self.problem(
                        f"process.argv[{i}]",
                        f"list/object parameter {placeholder!r} must stand alone in its argument to expand",
                        path,
                    )
        for unused in sorted(set(parameters) - used):
            self.problem(f"parameters.{unused}", "declared but not used in process.argv", path)
        environment = doc["environment"]
        if environment["image"] not in images:
            self.problem(
                "environment.image",
                f"image {environment['image']!r} is not among the analysis's images ({', '.join(sorted(images)) or 'none'})",
                path,
            )
        outputs = doc["outputs"]
        files = outputs.get("files", {})
        values = {}
        for vname, value in outputs.get("values", {}).items():
            if value["file"] not in files:
                self.problem(f"outputs.values.{vname}.file", f"{value['file']!r} is not a declared output file", path)
            if vname in files:
                self.problem(f"outputs.values.{vname}", "a value and a file may not share a name", path)
            values[vname] = (value["file"], value["pointer"])
        res = environment.get("resources", {})
        return Template(
            name=name,
            path=path,
            description=doc.get("description", ""),
            parameters=parameters,
            argv=tuple(doc["process"]["argv"]),
            image=environment["image"],
            env=dict(environment.get("env", {})),
            resources=Resources(
                cores=float(res.get("cores", 1)),
                memory_bytes=parse_memory(res.get("memory", "2GiB")),
                time_limit_s=parse_duration(res.get("time_limit", "1h")),
            ),
            network=bool(environment.get("network", False)),
            output_files=dict(files),
            output_values=values,
        ), doc

    # -- workflow ---------------------------------------------------------------

    def stages(self, doc: dict, templates: dict[str, Template], request: dict[str, Parameter]) -> tuple[Stage, ...]:
        stages = []
        by_name: dict[str, Stage] = {}
        for i, sdoc in enumerate(doc["workflow"]["stages"]):
            stage = Stage(
                name=sdoc["name"],
                template=sdoc["template"],
                bind=dict(sdoc.get("bind", {})),
                scatter=sdoc["scatter"]["over"].removeprefix("$request.") if "scatter" in sdoc else None,
                after=tuple(sdoc.get("after", ())),
            )
            if stage.name in by_name:
                self.problem(f"workflow.stages[{i}].name", f"stage {stage.name!r} is defined twice")
            by_name[stage.name] = stage
            stages.append(stage)

        graph: dict[str, set[str]] = {}
        for i, stage in enumerate(stages):
            where = f"workflow.stages[{i}]"
            graph[stage.name] = {dep for dep in stage.upstream if dep in by_name}
            for dep in stage.after:
                if dep not in by_name:
                    self.problem(f"{where}.after", f"unknown stage {dep!r}")
            if stage.scatter is not None:
                p = request.get(stage.scatter)
                if p is None:
                    self.problem(f"{where}.scatter.over", f"request parameter {stage.scatter!r} is not declared")
                elif p.type != "list":
                    self.problem(f"{where}.scatter.over", f"scatter needs a list, but request parameter {stage.scatter!r} is a {p.type}")
            template = templates.get(stage.template)
            if template is None:
                self.problem(f"{where}.template", f"unknown template {stage.template!r} (known: {', '.join(sorted(templates))})")
                continue
            for pname in stage.bind:
                if pname not in template.parameters:
                    self.problem(f"{where}.bind.{pname}", f"template {template.name!r} has no parameter {pname!r}")
            for pname, p in template.parameters.items():
                if pname not in stage.bind and not p.has_default:
                    self.problem(f"{where}.bind", f"template parameter {pname!r} is not bound and has no default")
            for pname, value in stage.bind.items():
                self.binding(f"{where}.bind.{pname}", stage, template.parameters.get(pname), value, by_name, templates, request)
        try:
            tuple(TopologicalSorter(graph).static_order())
        except CycleError as exc:
            self.problem("workflow.stages", f"the workflow has a cycle: {' -> '.join(exc.args[1])}")
        return tuple(stages)

    def binding(self, where, stage, param, value, by_name, templates, request):
        try:
            ref = references.parse(value)
        except ValueError as exc:
            self.problem(where, str(exc))
            return
        if ref is None:
            return
        if ref.kind == "request":
            if ref.name not in request:
                self.problem(where, f"request parameter {ref.name!r} is not declared")
        elif ref.kind == "item":
            if stage.scatter is None:
                self.problem(where, "$item is only defined in a stage with a scatter")
            elif ref.name is not None and stage.scatter in request:
                item = request[stage.scatter].items
                if item is None or item.type != "object" or ref.name not in item.properties:
                    self.problem(where, f"the items of {stage.scatter!r} have no field {ref.name!r}")
        elif ref.kind == "entry":
            target = inside(self.root, ref.name)
            if target is None:
                self.problem(where, f"{ref.name!r} leaves the catalog entry's folder")
            elif not target.exists():
                self.problem(where, f"file {ref.name!r} not found in {self.root}")
        elif ref.kind == "steps":
            other = by_name.get(ref.stage)
            if other is None:
                self.problem(where, f"unknown stage {ref.stage!r}")
                return
            if other is stage:
                self.problem(where, "a stage cannot use its own outputs")
                return
            t = templates.get(other.template)
            if t is not None and ref.output not in t.output_files and ref.output not in t.output_values:
                self.problem(where, f"stage {ref.stage!r} has no output {ref.output!r} "
                             f"(files: {', '.join(sorted(t.output_files)) or 'none'}; values: {', '.join(sorted(t.output_values)) or 'none'})")
            if other.scatter is not None and other.scatter != stage.scatter:
                if param is not None and param.type != "list":
                    self.problem(where, f"{value} gathers one value per branch of {ref.stage!r}, so parameter {param.name!r} must be a list, not {param.type}")

    def examples(self, doc: dict) -> dict[str, Example]:
        examples = {}
        for name, e in doc.get("examples", {}).items():
            request = inside(self.root, e["request"])
            if request is None or not request.is_file():
                self.problem(f"examples.{name}.request", f"request file {e['request']!r} not found inside {self.root}")
                continue
            reference = None
            if "reference" in e:
                reference = inside(self.root, e["reference"])
                if reference is None or not reference.is_file():
                    self.problem(f"examples.{name}.reference", f"reference file {e['reference']!r} not found inside {self.root}")
            examples[name] = Example(name=name, request=request, description=e.get("description", ""),
                                     reference=reference, tolerances=dict(e.get("tolerances", {})))
        return examples

    def checks(self, doc: dict, templates: dict[str, Template], examples: dict[str, Example]) -> dict | None:
        if "checks" not in doc:
            return None
        loaded = self.part("checks", doc["checks"], "checks")
        if loaded is None:
            return None
        path, checks = loaded
        for name in checks.get("runs", {}):
            if name not in examples:
                self.problem(f"runs.{name}", f"no example request named {name!r} in the analysis spec", path)
        for name, step in checks.get("steps", {}).items():
            where = f"steps.{name}"
            template = templates.get(step["template"])
            if template is None:
                self.problem(f"{where}.template", f"unknown template {step['template']!r}", path)
                continue
            fixtures = inside(self.root, step.get("fixtures", "."))
            if fixtures is None or not fixtures.is_dir():
                self.problem(f"{where}.fixtures", f"fixtures folder {step.get('fixtures')!r} not found inside {self.root}", path)
                continue
            for pname, value in step["parameters"].items():
                param = template.parameters.get(pname)
                if param is None:
                    self.problem(f"{where}.parameters.{pname}", f"template {template.name!r} has no parameter {pname!r}", path)
                    continue
                files = value if param.type == "list" and isinstance(value, list) else [value]
                if param.type == "file" or (param.items is not None and param.items.type == "file"):
                    for f in files:
                        target = inside(fixtures, str(f))
                        if target is None or not target.is_file():
                            self.problem(f"{where}.parameters.{pname}", f"fixture file {f!r} not found inside {fixtures}", path)
            for pname, param in template.parameters.items():
                if pname not in step["parameters"] and not param.has_default:
                    self.problem(f"{where}.parameters", f"template parameter {pname!r} is not given and has no default", path)
        return {**checks, "path": str(path)}

    def images(self, doc: dict) -> dict[str, ImageSpec]:
        images = {}
        for name, img in doc.get("images", {}).items():
            context = (self.root / img["build"]["context"]).resolve()
            dockerfile = (self.root / img["build"]["dockerfile"]).resolve()
            if not context.is_dir():
                self.problem(f"images.{name}.build.context", f"build context {img['build']['context']!r} is not a folder")
            if not dockerfile.is_file():
                self.problem(f"images.{name}.build.dockerfile", f"Dockerfile {img['build']['dockerfile']!r} not found")
            images[name] = ImageSpec(name=name, tag=img["tag"], context=context, dockerfile=dockerfile,
                                     build_args=dict(img["build"].get("args", {})))
        return images

    def results(self, doc: dict, stages: tuple[Stage, ...], templates: dict[str, Template]):
        by_name = {s.name: s for s in stages}
        for section in ("values", "files"):
            for name, value in doc.get("results", {}).get(section, {}).items():
                where = f"results.{section}.{name}"
                try:
                    ref = references.parse(value)
                except ValueError as exc:
                    self.problem(where, str(exc))
                    continue
                stage = by_name.get(ref.stage)
                if stage is None:
                    self.problem(where, f"unknown stage {ref.stage!r}")
                    continue
                t = templates.get(stage.template)
                if t is None:
                    continue
                declared = t.output_values if section == "values" else t.output_files
                if ref.output not in declared:
                    self.problem(where, f"stage {ref.stage!r} declares no output {section[:-1]} {ref.output!r}")


def spec_path(path: str | Path) -> Path:
    path = Path(path)
    return path / SPEC_FILE if path.is_dir() else path


def check(path: str | Path) -> tuple[Analysis | None, list[tuple[str, str, str]]]:
    """Validate one entry (its folder or its analysis.yaml); return the model if it is sound."""
    path = spec_path(path).resolve()
    checker = _Checker(path)
    try:
        doc = spec.load_document(path)
    except SpecError as exc:
        return None, exc.problems
    schema_problems = spec.problems(doc, "analysis", path)
    if schema_problems:
        return None, schema_problems
    if path.parent.name != doc["id"]:
        checker.problem("id", f"expected {path.parent.name!r} (the entry's folder name), found {doc['id']!r}")
    images = checker.images(doc)
    templates, template_docs = {}, {}
    for name, relative in doc.get("templates", {}).items():
        built = checker.template(name, relative, images)
        if built is not None:
            templates[name], template_docs[name] = built
    request = {k: parameter(k, v) for k, v in doc.get("request", {}).get("parameters", {}).items()}
    stages = checker.stages(doc, templates, request) if "workflow" in doc else ()
    if stages:
        used = {s.scatter for s in stages} | {
            ref.name for s in stages for v in s.bind.values() if (ref := references.parse_or_none(v)) is not None and ref.kind == "request"
        }
        for unused in sorted(set(request) - used):
            checker.problem(f"request.parameters.{unused}", "declared but never used by the workflow")
    checker.results(doc, stages, templates)
    examples = checker.examples(doc)
    checks = checker.checks(doc, templates, examples)
    if checker.found:
        return None, checker.found
    document = {**doc, "templates": template_docs}
    return Analysis(
        id=doc["id"], version=doc["version"], title=doc["title"], description=doc["description"],
        root=path.parent, spec_path=path, document=document, metadata=doc["metadata"],
        images=images, templates=templates, stages=stages, request_parameters=request,
        results=doc.get("results", {}), examples=examples, likelihood=doc.get("likelihood"),
        checks=checks,
    ), []


def load_analysis(path: str | Path) -> Analysis:
    analysis, found = check(path)
    if found:
        raise SpecError(found)
    return analysis
