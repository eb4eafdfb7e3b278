"""Check a catalog entry beyond its schemas, and build the validated model.

The schema says a document has the right shape; this module checks that its
parts fit together: referenced templates, files and images exist, every
placeholder is a declared parameter and every declared parameter is used,
bindings refer to things that exist, the workflow is acyclic, scatters run
over lists. Every problem is collected (file, field, what was expected) and
reported together, as ``recast validate`` shows them.

It is also the gate for what a job may reach and use, since a catalog entry
may come from anyone: a parameter that holds files gets them only through
references (a literal path would name a file on the host running recast, and
the job would get it mounted), ``$entry/PATH`` and check fixtures are regular
files inside the entry reached through no link, and resources lie within
:mod:`recast.limits` (``memory: 0B`` means *unlimited* to Docker).
"""

from __future__ import annotations

import os
import re
import stat
from graphlib import CycleError, TopologicalSorter
from pathlib import Path, PurePosixPath
from typing import Any, Iterator

# As safe_files: template() has a local `files` (the declared outputs).
from recast import files as safe_files
from recast import host_resources, limits, processes, references, spec, subworkflows
from recast.errors import RecastError, SpecError
from recast.limits import parse_duration, parse_size
from recast.model import Analysis, Example, ImageSpec, Parameter, Resources, Stage, Template

SPEC_FILE = "analysis.yaml"

# The old name of limits.parse_size, kept so that code written against it still imports.
parse_memory = parse_size

# What a process environment can hold as a name: no '=' (it ends the name) and
# no NUL (it ends the string); the schema asks for upper case, this is the floor.
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

_LITERAL_FILE = "a literal file path is not allowed; use $entry/PATH for a file archived in the entry"


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


def holds_files(param: Parameter | None) -> bool:
    """Whether a value of ``param`` is, or contains, a file (a file, a list of them, an object with one)."""
    if param is None:
        return False
    if param.type == "file":
        return True
    if param.type == "list":
        return holds_files(param.items)
    return param.type == "object" and any(holds_files(p) for p in param.properties.values())


def file_shape(param: Parameter | None):
    """Where files sit in a value of ``param``, for comparing a binding's source with its target."""
    if not holds_files(param):
        return None
    if param.type == "file":
        return "file"
    if param.type == "list":
        return ("list", file_shape(param.items))
    return ("object", tuple(sorted((k, file_shape(p)) for k, p in param.properties.items() if holds_files(p))))


def describe_shape(shape) -> str:
    if shape is None:
        return "no file"
    if shape == "file":
        return "a file"
    if shape[0] == "list":
        return "a list of files" if shape[1] == "file" else "a list holding files"
    return "an object with file fields " + ", ".join(k for k, _ in shape[1])


def file_positions(param: Parameter, value: Any, where: str = "") -> Iterator[tuple[str, Any]]:
    """(sub-field, value) for every part of ``value`` that ``param`` makes a file.

    A value of the wrong kind where a list or object of files belongs counts as
    a file position too: a literal is refused rather than guessed at.
    """
    if param.type == "file":
        yield where, value
    elif param.type == "list" and holds_files(param.items):
        if isinstance(value, list):
            for i, item in enumerate(value):
                yield from file_positions(param.items, item, f"{where}[{i}]")
        else:
            yield where, value
    elif param.type == "object" and holds_files(param):
        if isinstance(value, dict):
            for k, p in param.properties.items():
                if k in value:
                    yield from file_positions(p, value[k], f"{where}.{k}")
        else:
            yield where, value


_LOOKS_LIKE_PLACEHOLDER = re.compile(r"\{[A-Za-z_][A-Za-z0-9_]*\}")


def _batched(stage: Stage, shape):
    """Where files sit in ``$item`` of a stage that runs batches: a list of what one element holds."""
    return ("list", shape) if stage.scatter_batch and shape is not None else shape


def scattered_lists(stage: Stage) -> list[tuple[str | None, str]]:
    """(``$item`` field or None, request list parameter) of each list a stage scatters over."""
    if stage.scatter is None or stage.scatter_from is not None:
        return []
    return list(stage.scatter_lists) if stage.scatter_method != "over" else [(None, stage.scatter)]


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

    # -- files of the entry -------------------------------------------------------

    def entry_file(self, where: str, relative: str, kind: str, folder: tuple[str, ...] = (),
                   file: Path | None = None) -> bool:
        """Whether ``relative`` (below ``folder``) is a regular file of the entry, reached through no link.

        Jobs get such files mounted or copied by path; a link would let an
        entry (or whoever can write into it) hand a job any file of the host.
        """
        try:
            parts = safe_files.relative_parts(relative, kind)
        except safe_files.UnsafePath as exc:
            reason = str(exc).removeprefix(f"{kind} {relative!r}: ")
            self.problem(where, f"{kind} {relative!r} leaves the catalog entry's folder {self.root}: {reason}", file)
            return False
        try:
            safe_files.check_regular(self.root, "/".join(folder + parts))
        except FileNotFoundError:
            self.problem(where, f"{kind} {relative!r} not found in {self.root.joinpath(*folder)}", file)
            return False
        except safe_files.UnsafePath as exc:
            self.problem(where, f"{kind} {relative!r} must be a regular file inside the catalog entry, reached "
                                f"through no symbolic link: {exc}", file)
            return False
        return True

    def entry_folder(self, where: str, relative: str, kind: str, file: Path | None = None) -> tuple[str, ...] | None:
        """The parts of a folder of the entry (``.`` is the entry itself), if every one is a real folder."""
        if not [part for part in PurePosixPath(relative).parts if part != "."]:
            return ()
        try:
            parts = safe_files.relative_parts(relative, kind)
        except safe_files.UnsafePath as exc:
            reason = str(exc).removeprefix(f"{kind} {relative!r}: ")
            self.problem(where, f"{kind} {relative!r} leaves the catalog entry's folder {self.root}: {reason}", file)
            return None
        for i in range(len(parts)):
            try:
                mode = os.lstat(self.root.joinpath(*parts[: i + 1])).st_mode
            except OSError:
                mode = None
            if mode is None or not stat.S_ISDIR(mode):
                self.problem(where, f"{kind} {relative!r}: {'/'.join(parts[: i + 1])} is not a folder inside "
                                    f"{self.root} (missing, a file, or a symbolic link, which is not followed)", file)
                return None
        return parts

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
        kind = processes.get(doc["process"]["kind"])
        used: set[str] = set()
        for where, text in kind.texts(doc["process"]):
            try:
                names = references.placeholders(text)
            except references.PlaceholderError as exc:
                self.problem(where, str(exc), path)
                continue
            for placeholder in names:
                used.add(placeholder)
                if placeholder not in parameters and placeholder not in references.BUILTIN_PLACEHOLDERS:
                    self.problem(
                        where,
                        f"placeholder {{{placeholder}}} is not a declared parameter "
                        f"(declared: {', '.join(sorted(parameters)) or 'none'}; built-in: outdir)",
                        path,
                    )
            whole = references.whole_placeholder(text)
            for placeholder in names:
                p = parameters.get(placeholder)
                if kind.standalone_lists() and p is not None and p.type in ("list", "object") and whole != placeholder:
                    self.problem(where, f"list/object parameter {placeholder!r} must stand alone in its argument "
                                        "to expand", path)
        if doc["process"]["kind"] == "script" and doc["process"]["interpreter"] == "python3":
            try:
                processes.python_contexts(doc["process"]["script"], references.placeholders(doc["process"]["script"]))
            except (ValueError, references.PlaceholderError) as exc:
                self.problem("process.script", str(exc), path)
        for unused in sorted(set(parameters) - used):
            self.problem(f"parameters.{unused}", f"declared but not used in {kind.field}", path)
        for pname, p in parameters.items():
            # A default is used as given, never resolved as a reference, so a
            # path there would name a file on the host running recast.
            if p.has_default:
                for sub, _ in file_positions(p, p.default):
                    self.problem(f"parameters.{pname}.default{sub}",
                                 "a file parameter cannot have a default path (it would name a file on the host "
                                 "running recast); leave the default out and bind the parameter in the workflow, "
                                 "to $entry/PATH for a file archived in the entry", path)
        environment = doc["environment"]
        if environment["image"] not in images:
            self.problem(
                "environment.image",
                f"image {environment['image']!r} is not among the analysis's images ({', '.join(sorted(images)) or 'none'})",
                path,
            )
        outputs = doc["outputs"]
        globs = {n: v["glob"] for n, v in outputs.get("files", {}).items() if isinstance(v, dict) and "glob" in v}
        files = {n: v if isinstance(v, str) else v["path"] for n, v in outputs.get("files", {}).items()
                 if n not in globs}
        directories = frozenset(n for n, v in outputs.get("files", {}).items()
                                if isinstance(v, dict) and v.get("directory"))
        for a, b in ((a, b) for a in files for b in files if a < b):
            if files[a] == files[b] or files[b].startswith(files[a] + "/") or files[a].startswith(files[b] + "/"):
                self.problem(f"outputs.files.{b}", f"{files[b]!r} overlaps output {a!r} ({files[a]!r})", path)
        values = {}
        for vname, value in outputs.get("values", {}).items():
            if value["file"] in globs:
                self.problem(f"outputs.values.{vname}.file", f"{value['file']!r} is a glob (a list of files): values "
                                                             "are read from one JSON file", path)
            elif value["file"] not in files:
                self.problem(f"outputs.values.{vname}.file", f"{value['file']!r} is not a declared output file", path)
            elif value["file"] in directories:
                self.problem(f"outputs.values.{vname}.file", f"{value['file']!r} is a folder: values are read from "
                                                             "a JSON file", path)
            if vname in files or vname in globs:
                self.problem(f"outputs.values.{vname}", "a value and a file may not share a name", path)
            values[vname] = (value["file"], value["pointer"])
        env = environment.get("env", {})
        for key, value in env.items():
            # The schema's propertyNames pattern skips keys that YAML made numbers or null.
            if not isinstance(key, str) or not _ENV_NAME.fullmatch(key):
                self.problem(f"environment.env.{key}", f"{key!r} is not an environment variable name: expected a "
                                                       "string of letters, digits and _, not starting with a digit "
                                                       "(quote it in YAML)", path)
            if isinstance(value, str) and "\0" in value:
                self.problem(f"environment.env.{key}", "the value contains a NUL character, "
                                                       "which no process environment can hold", path)
        resources = self.resources(environment.get("resources", {}), path)
        try:
            for where, message in host_resources.missing(environment.get("host_resources", []),
                                                         environment.get("credentials", [])):
                self.problem(where, message, path)
        except RecastError as exc:
            self.problem("environment", str(exc), path)
        return Template(
            name=name,
            path=path,
            description=doc.get("description", ""),
            parameters=parameters,
            process=dict(doc["process"]),
            image=environment["image"],
            env={str(k): v for k, v in env.items()},
            resources=resources,
            network=bool(environment.get("network", False)),
            output_files=dict(files),
            output_values=values,
            output_directories=directories,
            output_globs=globs,
            workdir=environment.get("workdir"),
            host_resources=tuple(environment.get("host_resources", ())),
            credentials=tuple(environment.get("credentials", ())),
        ), doc

    def resources(self, doc: dict, path: Path) -> Resources:
        """The template's resources, each within recast's minimums and the operator's maximums."""
        defaults = Resources()
        parsed = {"cores": float(doc.get("cores", defaults.cores)), "memory": defaults.memory_bytes,
                  "time_limit": defaults.time_limit_s, "output": defaults.output_bytes}
        for key, parse in (("memory", parse_size), ("time_limit", parse_duration), ("output", parse_size)):
            if key in doc:
                try:
                    parsed[key] = parse(doc[key])
                except ValueError as exc:
                    self.problem(f"environment.resources.{key}", str(exc), path)
        for key, message in limits.current().check_resources(parsed["cores"], parsed["memory"],
                                                             parsed["time_limit"], parsed["output"]):
            self.problem(f"environment.resources.{key}", message, path)
        return Resources(cores=parsed["cores"], memory_bytes=int(parsed["memory"]),
                         time_limit_s=parsed["time_limit"], output_bytes=int(parsed["output"]),
                         retries=int(doc.get("retries", defaults.retries)))

    # -- workflow ---------------------------------------------------------------

    def stages(self, doc: dict, templates: dict[str, Template], request: dict[str, Parameter]) -> tuple[Stage, ...]:
        stages = []
        by_name: dict[str, Stage] = {}
        flat, problems = subworkflows.flatten(doc["workflow"]["stages"])
        for where, message in problems:
            self.problem(where, message)
        origins = {}
        for i, (origin, sdoc) in enumerate(flat):
            scatter = sdoc.get("scatter", {})
            method = next((m for m in ("over", "zip", "cartesian") if m in scatter), "over")
            lists = tuple((field, ref.removeprefix("$request.")) for field, ref in scatter.get(method, {}).items()) \
                if method != "over" else ()
            over = scatter.get("over", "") if method == "over" else ""
            scatter_from = tuple(over.split(".")[1:3]) if over.startswith("$steps.") else None
            stage = Stage(
                name=sdoc["name"],
                template=sdoc["template"],
                bind=dict(sdoc.get("bind", {})),
                scatter=(None if not scatter else over[1:] if scatter_from else over.removeprefix("$request.")
                         if method == "over" else f"{method}({', '.join(f'{f}={n}' for f, n in lists)})"),
                scatter_from=scatter_from,
                after=tuple(sdoc.get("after", ())),
                scatter_method=method,
                scatter_lists=lists,
                scatter_batch=int(scatter.get("batch", 0)),
            )
            if stage.name in by_name:
                self.problem(f"{origin}.name", f"stage {stage.name!r} is defined twice"
                                               + (" (a sub-workflow's stages are named OUTER_INNER)" if ".workflow." in origin else ""))
            by_name[stage.name] = stage
            origins[stage.name] = origin
            stages.append(stage)

        graph: dict[str, set[str]] = {}
        for stage in stages:
            where = origins[stage.name]
            graph[stage.name] = {dep for dep in stage.upstream if dep in by_name}
            for dep in stage.after:
                if dep not in by_name:
                    self.problem(f"{where}.after", f"unknown stage {dep!r}")
            if stage.scatter_from is not None:
                self.runtime_scatter(where, stage, by_name, templates)
            for field, name in scattered_lists(stage):
                at = f"{where}.scatter.{stage.scatter_method}" + (f".{field}" if field else "")
                p = request.get(name)
                if p is None:
                    self.problem(at, f"request parameter {name!r} is not declared")
                elif p.type != "list":
                    self.problem(at, f"scatter needs a list, but request parameter {name!r} is a {p.type}")
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

    def runtime_scatter(self, where: str, stage: Stage, by_name: dict[str, Stage], templates) -> None:
        """A scatter over another stage's list: an unscattered stage, and an output value or a glob of it."""
        producer_name, output = stage.scatter_from
        producer = by_name.get(producer_name)
        if producer is None or producer is stage:
            self.problem(f"{where}.scatter.over", f"unknown stage {producer_name!r}" if producer is None
                         else "a stage cannot scatter over its own outputs")
            return
        if producer.scatter is not None:
            self.problem(f"{where}.scatter.over", f"stage {producer_name!r} is itself scattered: a scatter over "
                                                  "the lists of every branch is not supported yet")
        t = templates.get(producer.template)
        if t is not None and output not in t.output_values and output not in t.output_globs:
            self.problem(f"{where}.scatter.over", f"stage {producer_name!r} has no output value or glob {output!r} "
                                                  "to scatter over (a file is one file, not a list)")

    def binding(self, where, stage, param, value, by_name, templates, request):
        try:
            ref = references.parse(value)
        except ValueError as exc:
            self.problem(where, str(exc))
            return
        if ref is None:
            # Literals are used as given (references inside a list or object
            # are not resolved either), so any path in a file position would be
            # a file of the host, mounted into the job.
            literal = references.literal(value)
            if isinstance(literal, str) and (looks := _LOOKS_LIKE_PLACEHOLDER.search(literal)):
                self.problem(where, f"{spec.short(literal)} holds {looks.group(0)}, but a binding is not filled in: "
                                    "placeholders ({outdir}, {PARAMETER}) belong in a template's process (for a "
                                    "path in the job's own folder write {outdir}/... there); here bind a literal or "
                                    "$request.NAME, $item, $steps.STAGE.OUTPUT, $entry/PATH")
            if param is not None and holds_files(param):
                for sub, _ in file_positions(param, literal):
                    hint = "" if not sub else " (references inside a literal list or object are not resolved)"
                    self.problem(f"{where}{sub}", _LITERAL_FILE + hint)
            return
        target = file_shape(param)  # a parameter that holds files may only take files
        if ref.kind == "request":
            if ref.name not in request:
                self.problem(where, f"request parameter {ref.name!r} is not declared")
            else:
                self.same_files(where, param, target, file_shape(request[ref.name]), f"request parameter {ref.name!r}")
        elif ref.kind == "item" and stage.scatter_batch and param is not None and param.type != "list":
            self.problem(where, f"stage {stage.name!r} runs batches of {stage.scatter_batch} elements, so {value} "
                                f"is a list there: parameter {param.name!r} must be a list, not {param.type}")
        elif ref.kind == "item":
            if stage.scatter is None:
                self.problem(where, "$item is only defined in a stage with a scatter")
            elif stage.scatter_from is not None:
                producer = by_name.get(stage.scatter_from[0])
                t = templates.get(producer.template) if producer is not None else None
                globbed = t is not None and stage.scatter_from[1] in t.output_globs
                if ref.name is not None and globbed:
                    self.problem(where, f"$item is one file of {stage.scatter}: it has no field {ref.name!r}")
                else:  # a glob's element is a file; a value's is data, whatever it holds
                    self.same_files(where, param, target, _batched(stage, "file" if globbed else None), str(ref))
            elif stage.scatter_method != "over":
                fields = dict(stage.scatter_lists)
                if ref.name is None:
                    self.same_files(where, param, target, None, "$item (an object of the lists' elements)")
                elif ref.name not in fields:
                    self.problem(where, f"$item has the fields {', '.join(sorted(fields))} here (one per list the "
                                        f"stage scatters over), not {ref.name!r}")
                elif fields[ref.name] in request:
                    self.same_files(where, param, target, _batched(stage, file_shape(request[fields[ref.name]].items)),
                                    str(ref))
            elif stage.scatter in request:
                item = request[stage.scatter].items
                if ref.name is not None and (item is None or item.type != "object" or ref.name not in item.properties):
                    self.problem(where, f"the items of {stage.scatter!r} have no field {ref.name!r}")
                else:
                    source = item if ref.name is None else item.properties[ref.name]
                    self.same_files(where, param, target, _batched(stage, file_shape(source)), str(ref))
        elif ref.kind == "entry":
            if self.entry_file(where, ref.name, "file"):
                self.same_files(where, param, target, "file", str(ref))
        elif ref.kind == "steps":
            other = by_name.get(ref.stage)
            if other is None:
                self.problem(where, f"unknown stage {ref.stage!r}")
                return
            if other is stage:
                self.problem(where, "a stage cannot use its own outputs")
                return
            t = templates.get(other.template)
            if t is not None and ref.output in t.output_globs:
                if other.scatter is not None and other.branches != stage.branches:
                    self.problem(where, f"{value} is a list of files per branch of {ref.stage!r}: gathering them "
                                        "is not supported yet (bind it in a stage with the same scatter)")
                elif param is not None and target != ("list", "file"):
                    self.problem(where, f"{value} is the list of files its glob matched: parameter {param.name!r} "
                                        "must be a list of files (type: list, items: {type: file})")
                return
            if t is not None and ref.output not in t.output_files and ref.output not in t.output_values:
                self.problem(where, f"stage {ref.stage!r} has no output {ref.output!r} "
                             f"(files: {', '.join(sorted(t.output_files)) or 'none'}; values: {', '.join(sorted(t.output_values)) or 'none'})")
            gathered = other.scatter is not None and other.branches != stage.branches
            if gathered:
                if param is not None and param.type != "list":
                    self.problem(where, f"{value} gathers one value per branch of {ref.stage!r}, so parameter {param.name!r} must be a list, not {param.type}")
            if t is not None and target is not None and ref.output in t.output_values:
                # An output value is whatever the job wrote into its JSON: used as a path, it could name any file.
                self.problem(where, f"parameter {param.name!r} holds files, but {value} is an output value, "
                                    f"which is data, not a file: bind an output file of {ref.stage!r} "
                                    f"({', '.join(sorted(t.output_files)) or 'none'})")
            elif t is not None and ref.output in t.output_files:
                self.same_files(where, param, target, ("list", "file") if gathered else "file", str(ref))

    def same_files(self, where: str, param: Parameter | None, target, source, what: str) -> None:
        """A parameter that holds files is bound to a source holding files in the same places."""
        if target is not None and target != source:
            self.problem(where, f"parameter {param.name!r} takes {describe_shape(target)}, but {what} gives "
                                f"{describe_shape(source)}: a file can only come from the request, the entry "
                                "($entry/PATH) or another stage's output files")

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
                if reference is None or (os.path.lexists(reference) and not reference.is_file()):
                    self.problem(f"examples.{name}.reference", f"reference file {e['reference']!r} not found inside {self.root}")
                elif not reference.is_file():
                    # Not made yet: `recast test ID --update-reference` makes it from a run, which needs a valid entry.
                    reference = None
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
            folder = self.entry_folder(f"{where}.fixtures", step.get("fixtures", "."), "fixtures folder", path)
            if folder is None:
                continue
            for pname, value in step["parameters"].items():
                param = template.parameters.get(pname)
                if param is None:
                    self.problem(f"{where}.parameters.{pname}", f"template {template.name!r} has no parameter {pname!r}", path)
                    continue
                for sub, f in file_positions(param, value):
                    fwhere = f"{where}.parameters.{pname}{sub}"
                    if not isinstance(f, str):
                        self.problem(fwhere, f"expected the path of a fixture file, found {type(f).__name__} {f!r}", path)
                    else:
                        self.entry_file(fwhere, f, "fixture file", folder, path)
            for pname, param in template.parameters.items():
                if pname not in step["parameters"] and not param.has_default:
                    self.problem(f"{where}.parameters", f"template parameter {pname!r} is not given and has no default", path)
        return {**checks, "path": str(path)}

    def images(self, doc: dict) -> dict[str, ImageSpec]:
        images = {}
        for name, img in doc.get("images", {}).items():
            if "pull" in img:
                images[name] = ImageSpec(name=name, tag=img["pull"], context=None, dockerfile=None, pulled=True)
                continue
            context = (self.root / img["build"]["context"]).resolve()
            dockerfile = (self.root / img["build"]["dockerfile"]).resolve()
            if not context.is_dir():
                self.problem(f"images.{name}.build.context", f"build context {img['build']['context']!r} is not a folder")
            if not dockerfile.is_file():
                self.problem(f"images.{name}.build.dockerfile", f"Dockerfile {img['build']['dockerfile']!r} not found")
            images[name] = ImageSpec(name=name, tag=img["tag"], context=context, dockerfile=dockerfile,
                                     build_args=dict(img["build"].get("args", {})))
        return images

    def results(self, doc: dict, stages: tuple[Stage, ...], templates: dict[str, Template]) -> dict:
        """The results section, its references made to name flattened stages (recast/subworkflows.py)."""
        results, problems = subworkflows.rename_results(doc.get("results", {}), doc.get("workflow", {}).get("stages", []))
        for where, message in problems:
            self.problem(where, message)
        by_name = {s.name: s for s in stages}
        for section in ("values", "files"):
            for name, value in results.get(section, {}).items():
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
                if ref.output in t.output_globs:
                    self.problem(where, f"{value}: the files a glob matched cannot be a result yet: declare a "
                                        "folder output ({path: DIR, directory: true}) for them")
                    continue
                if ref.output not in declared:
                    self.problem(where, f"stage {ref.stage!r} declares no output {section[:-1]} {ref.output!r}")
        return results


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
        used = {name for s in stages for _, name in scattered_lists(s)} | {
            ref.name for s in stages for v in s.bind.values() if (ref := references.parse_or_none(v)) is not None and ref.kind == "request"
        }
        for unused in sorted(set(request) - used):
            checker.problem(f"request.parameters.{unused}", "declared but never used by the workflow")
    results = checker.results(doc, stages, templates)
    examples = checker.examples(doc)
    checks = checker.checks(doc, templates, examples)
    if checker.found:
        return None, checker.found
    document = {**doc, "templates": template_docs}
    return Analysis(
        id=doc["id"], version=doc["version"], title=doc["title"], description=doc["description"],
        root=path.parent, spec_path=path, document=document, metadata=doc["metadata"],
        images=images, templates=templates, stages=stages, request_parameters=request,
        results=results, examples=examples, likelihood=doc.get("likelihood"),
        checks=checks,
    ), []


def load_analysis(path: str | Path) -> Analysis:
    analysis, found = check(path)
    if found:
        raise SpecError(found)
    return analysis
