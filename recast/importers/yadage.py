"""``recast import yadage WORKFLOW``: a yadage workflow (packtivity steps) as a catalog entry.

What is translated, feature by feature:

- ``$ref`` to other files (``steps.yml#/name``, ``steps.yml#name``), resolved
  against ``--toplevel`` (default: the workflow's folder, then up to two
  folders above it), never outside it;
- stages: ``singlestep-stage``, and ``multistep-stage`` whose ``scatter``
  (``zip`` or ``cartesian``) runs over init parameters, or over the files an
  unscattered stage's glob published (a scatter recast plans once they are
  known), ``batchsize: N`` its ``batch: N``; ``dependencies`` become ``after``;
- parameters: ``{step: init, output: X}`` becomes the request parameter X
  (typed from the example inputs: integer, number, string, a list of them, or
  a file when the value names a file beside the inputs);
  ``{step: S, output: O}`` becomes ``$steps.S.O``; a value
  ``"{workdir}/PATH"`` is a path in the job's own folder (``{outdir}/PATH``
  in the script, and the file its publisher names); other literals stay
  literals;
- processes: ``string-interpolated-cmd`` (a command line: an ``sh`` script)
  and ``interpolated-script-cmd`` (``sh``, ``bash``, ``python``) become
  script processes, whose placeholders recast quotes for where they stand;
- publishers: ``interpolated-pub`` and ``frompar-pub`` become declared
  output files (in sub-folders with the path form); globs become glob outputs;
- environments: ``docker-encapsulated`` images become pulled images
  (``image:imagetag``, pinned by ID when pulled or loaded);
  ``kubernetes_memory_limit`` becomes the template's memory.

- stage selections ``{stages: S, output: O, unwrap, flatten}`` become
  ``$steps.S.O`` (a gathered list when S scatters and the taker does not),
  and ``S[*].INNER`` a stage of S's sub-workflow (``$steps.S.INNER.O``); a
  multistep stage scattering over a scattered stage's outputs runs branch to
  branch with it; ``constant-pub`` values reach their takers as literals;
  an ``envscript`` is sourced at the top of an sh or bash script.

- resources ``CVMFS``, ``GRIDProxy``, ``KRB5Auth`` become the declared needs
  ``host_resources: [cvmfs]``, ``credentials: [grid_proxy]`` / ``[kerberos]``
  (which each machine's operator provides, see recast/host_resources.py).

``fromglob-pub`` and ``interpolated-pub`` with ``glob: true`` become glob
outputs (the list of files matched when the job ends).

- a stage whose body is a workflow (``workflow:``) becomes a recast
  sub-workflow: its init parameters are the enclosing stage's parameters,
  its templates are named OUTER_INNER.

Everything else (``fromyaml-pub``, ``par_mounts``, jq or indexed stage
selections, scatters over outputs zipped with other lists ...) is named in
the report, and the import writes nothing.
"""

from __future__ import annotations

import re
import shlex
import shutil
from pathlib import Path
from typing import Any

import yaml

from recast import references, spec
from recast.errors import RecastError
from recast.importers import Report

INTERPRETERS = {"sh": "sh", "bash": "bash", "python": "python3", "python3": "python3"}
# packtivity's resources -> recast's declared needs, which each machine's operator provides (RECAST_RESOURCES)
NEEDS = {"CVMFS": ("host_resources", "cvmfs"), "GRIDProxy": ("credentials", "grid_proxy"),
         "KRB5Auth": ("credentials", "kerberos")}
_K8S_MEMORY = re.compile(r"^([0-9]+)(Ki|Mi|Gi|Ti)$")
_WORKDIR = "{workdir}"
GLOB = "GLOB:"  # marks a published glob among a step's outputs (a list of files, known when the job ends)


def default_id(path: Path) -> str:
    """An entry id from where a workflow lives: its folder, or the one above a generic name."""
    folder = path.resolve().parent
    while folder.name.lower() in ("workflow", "workflows", "specs", "spec", "yadage") and folder.parent != folder:
        folder = folder.parent
    return identifier(folder.name, lower=True).replace("_", "-")


def identifier(text: str, lower: bool = False) -> str:
    """A name recast accepts (letters, digits, _; starting with a letter) made from any yadage name."""
    name = re.sub(r"[^A-Za-z0-9_]+", "_", text).strip("_") or "x"
    name = name if name[0].isalpha() else f"x_{name}"
    if lower:
        name = re.sub(r"_+", "_", name.lower()).strip("_")
    return name


class Resolver:
    """Loads yadage documents and resolves their ``$ref``s against the search roots, never outside them."""

    def __init__(self, workflow: Path, toplevel: Path | None, report: Report):
        self.report = report
        workflow = workflow.resolve()
        self.roots = [toplevel.resolve()] if toplevel else [workflow.parent, *list(workflow.parents)[1:3]]
        self.workflow = workflow

    def load(self, path: Path) -> Any:
        try:
            return spec.load_document(path)
        except (OSError, RecastError, ValueError) as exc:
            raise RecastError(f"{path}: cannot be read as YAML: {exc}") from None

    def resolve(self, node: Any, where: Path, depth: int = 0) -> Any:
        if depth > 20:
            raise RecastError(f"{where}: $ref nested more than 20 deep")
        if isinstance(node, dict):
            if set(node) == {"$ref"}:
                target, document = self.reference(node["$ref"], where)
                return self.resolve(document, target, depth + 1)
            return {k: self.resolve(v, where, depth) for k, v in node.items()}
        if isinstance(node, list):
            return [self.resolve(v, where, depth) for v in node]
        return node

    def reference(self, ref: Any, where: Path) -> tuple[Path, Any]:
        if not isinstance(ref, str):
            raise RecastError(f"{where}: $ref {ref!r} is not a string")
        relative, _, fragment = ref.partition("#")
        for root in self.roots:
            candidate = (root / relative).resolve() if relative else where
            if candidate.is_file() and candidate.is_relative_to(root):
                break
        else:
            raise RecastError(f"{where}: $ref {ref!r}: {relative!r} not found under "
                              f"{', '.join(map(str, self.roots))} (give the workflow's folder with --toplevel)")
        document = self.load(candidate)
        pointer = fragment if fragment.startswith("/") or not fragment else f"/{fragment}"
        try:
            for part in filter(None, pointer.split("/")):
                document = document[part.replace("~1", "/").replace("~0", "~")]
        except (KeyError, TypeError):
            raise RecastError(f"{where}: $ref {ref!r}: {candidate} has nothing at {pointer}") from None
        return candidate, document


def type_of(value: Any, files_root: Path | None) -> dict:
    """A request parameter's declaration, inferred from an example value."""
    if isinstance(value, bool):
        return {"type": "boolean"}
    if isinstance(value, int):
        return {"type": "integer"}
    if isinstance(value, float):
        return {"type": "number"}
    if isinstance(value, list):
        kinds = [type_of(v, files_root) for v in value]
        return {"type": "list", "items": kinds[0] if kinds and all(k == kinds[0] for k in kinds) else {"type": "string"}}
    if isinstance(value, str) and files_root is not None and "://" not in value and not value.startswith("/"):
        candidate = files_root / value
        try:
            if ".." not in Path(value).parts and candidate.is_file() and not candidate.is_symlink():
                return {"type": "file"}
        except OSError:  # a name too long for a path, say: not a file
            pass
    return {"type": "string"}


class Translation:
    """A yadage workflow (``$ref``s resolved) translated stage by stage into recast documents."""

    def __init__(self, workflow: dict, source: Path, report: Report, parent: Translation | None = None,
                 prefix: str = "", init: dict[str, tuple] | None = None, where: str = ""):
        """``parent``, ``prefix`` and ``init`` for a nested sub-workflow: its templates are the top
        translation's (named PREFIX + stage), and its init parameters are the enclosing stage's (``init``:
        name -> ("request", PARAM) | ("item", FIELD, PARAM) | ("steps", REFERENCE) | ("literal", VALUE))."""
        self.source, self.report = source, report
        self.top = parent.top if parent else self
        self.prefix, self.init = prefix, init
        self.templates: dict[str, dict] = {}
        self.images: dict[str, dict] = {}
        self.stages: list[dict] = []
        self.outputs: dict[str, dict[str, str]] = {}  # stage -> output name -> path in the job's folder
        self.init_uses: dict[str, list[tuple[str, str, str]]] = {}  # request param -> (template, param, via)
        self.scattered: dict[str, str | None] = {}  # stage -> its scatter key (None: one job)
        self.scatters: dict[str, dict] = {}  # stage -> its recast scatter (a stage that copies it runs branch to branch)
        self.subflows: dict[str, Translation] = {}  # sub-workflow stage -> its translation
        self.constants: dict[str, dict[str, Any]] = {}  # stage -> values a constant-pub publishes
        stages = workflow.get("stages") if isinstance(workflow, dict) else None
        if not isinstance(stages, list) or not stages:
            raise RecastError(f"{source}: {where or 'the workflow'}: not a yadage workflow (no list of stages)")
        self.names = {s.get("name"): identifier(str(s.get("name")), lower=True) for s in stages if isinstance(s, dict)}
        for i, stage in enumerate(stages):
            self.stage(stage, f"{where}stages[{i}]")

    # -- stages -------------------------------------------------------------------

    def stage(self, stage: dict, where: str) -> None:
        name = self.names.get(stage.get("name"), identifier(str(stage.get("name")), lower=True))
        scheduler = stage.get("scheduler") or {}
        kind = scheduler.get("scheduler_type")
        if kind not in ("singlestep-stage", "multistep-stage"):
            self.report.cannot(self.source, f"{where}.scheduler.scheduler_type", f"scheduler {kind!r}")
            return
        parameters = {p: self.selection(v, f"{where}.scheduler.parameters.{p}")
                      for p, v in (scheduler.get("parameters") or {}).items()}
        scatter = scheduler.get("scatter") if kind == "multistep-stage" else None
        scattered_params: list[str] = []
        stage_doc: dict[str, Any] = {"name": name, "template": name}
        if scatter is not None:
            method = scatter.get("method")
            scattered_params = list(scatter.get("parameters") or [])
            if method not in ("zip", "cartesian") or not scattered_params:
                self.report.cannot(self.source, f"{where}.scheduler.scatter", f"scatter method {method!r}")
                return
            lists = {}
            for p in scattered_params:
                value = parameters.get(p)
                if isinstance(value, dict) and value.get("step") == "init" and isinstance(value.get("output"), str):
                    lists[identifier(p)] = f"$request.{value['output']}"
                elif isinstance(value, dict) and (over := self.runtime_list(value)) and len(scattered_params) == 1:
                    lists = None
                    stage_doc["scatter"] = {"over": over}  # the files another stage's glob matched
                elif isinstance(value, dict) and len(scattered_params) == 1 and not value.get("inner") and \
                        (producer := self.names.get(value.get("step"))) in self.scatters and \
                        value.get("output") in self.outputs.get(producer, {}):
                    # a map over a map: one branch per branch of the producer, each taking that branch's output
                    lists = None
                    stage_doc["scatter"] = dict(self.scatters[producer])
                    self.scattered[name] = self.scattered[producer]
                else:
                    self.report.cannot(self.source, f"{where}.scheduler.parameters.{p}",
                                       "a scatter over a literal list, over another stage's outputs zipped with "
                                       "others, or over outputs that are not the files of an unscattered stage's "
                                       "glob")
            if lists is not None:
                stage_doc["scatter"] = {method: lists}
            batch = scheduler.get("batchsize")
            if batch is not None:  # N elements per job: each scattered parameter is then a list of N
                if isinstance(batch, bool) or not isinstance(batch, int) or not 1 <= batch <= 100_000 \
                        or "workflow" in scheduler or lists is None:
                    self.report.cannot(self.source, f"{where}.scheduler.batchsize",
                                       f"{batch!r}: recast batches a step's scatter over init lists, 1 to 100000 "
                                       "elements a job")
                    return
                stage_doc["scatter"]["batch"] = batch
        if name not in self.scattered:
            self.scattered[name] = repr(stage_doc.get("scatter", scatter)) if scatter else None
        if "scatter" in stage_doc:
            self.scatters[name] = stage_doc["scatter"]
        if "workflow" in scheduler:
            self.nested(name, scheduler, parameters, scattered_params, stage_doc, where)
            return
        step = scheduler.get("step")
        if not isinstance(step, dict):
            self.report.cannot(self.source, f"{where}.scheduler.step", "a step that is not a packtivity document")
            return
        template = self.template(name, step, parameters, scattered_params, stage_doc, f"{where}.scheduler")
        if template is None:
            return
        after = [self.names[d] for d in stage.get("dependencies") or [] if d != "init" and d in self.names]
        bound = {ref.stage for v in stage_doc.get("bind", {}).values()
                 if (ref := references.parse_or_none(v)) is not None and ref.kind == "steps"}
        if [d for d in after if d not in bound]:
            stage_doc["after"] = [d for d in after if d not in bound]
        stage_doc["template"] = self.prefix + name
        template["name"] = self.prefix + name
        self.top.templates[self.prefix + name] = template
        self.stages.append(stage_doc)

    def nested(self, name: str, scheduler: dict, parameters: dict, scattered: list[str], stage_doc: dict,
               where: str) -> None:
        """A stage whose body is a workflow: recast's sub-workflow, its init parameters this stage's."""
        init: dict[str, tuple] = {}
        for p, value in parameters.items():
            at = f"{where}.scheduler.parameters.{p}"
            if isinstance(value, dict) and value.get("step") == "init" and isinstance(value.get("output"), str):
                init[p] = ("item", identifier(p), value["output"]) if p in scattered else ("request", value["output"])
            elif isinstance(value, dict) and value.get("step") in self.names and \
                    (found := self.produced(value, name)) is not None and found[0] != "constant":
                init[p] = ("steps", found[0], found[1])
            elif isinstance(value, (str, int, float, bool)) and not (isinstance(value, str) and "{" in value):
                init[p] = ("literal", value)
            else:
                self.report.cannot(self.source, at, f"{value!r}: a sub-workflow's parameter recast cannot pass on "
                                                    "(a path in a job's folder, or a reference into another one)")
        body = scheduler["workflow"]
        if not isinstance(body, dict) or not isinstance(body.get("stages"), list) or not body["stages"]:
            self.report.cannot(self.source, f"{where}.scheduler.workflow", "a sub-workflow without stages")
            return
        inner = Translation(body, self.source, self.report, parent=self,
                            prefix=f"{self.prefix}{name}_", init=init, where=f"{where}.scheduler.workflow.")
        stage_doc.pop("template", None)
        stage_doc["workflow"] = {"stages": inner.stages}
        self.subflows[name] = inner
        self.stages.append(stage_doc)

    def selection(self, value: Any, where: str) -> Any:
        """yadage's stage selection ``{stages: SELECTION, output: O, unwrap, flatten}`` in the ``{step: S,
        output: O}`` form, with ``inner``: the stages below S when S is a sub-workflow (``S[*].INNER``,
        ``S.[*].MID[*].INNER``). A gather is a flat list of every branch's output and a single stage's output
        is one value, so ``unwrap`` and ``flatten`` ask nothing more. Other values are returned as they are."""
        if isinstance(value, dict) and ("step" in value or "stages" in value) and not (
                isinstance(value.get("output"), str) and isinstance(value.get("step", value.get("stages")), str)):
            self.report.cannot(self.source, where, f"{spec.short(value)}: a reference names a stage and an output, "
                                                   "as text")
            return None
        if not (isinstance(value, dict) and "stages" in value):
            return value
        selected = value["stages"]
        parts = re.split(r"\.?\[\*\]\.", selected) if isinstance(selected, str) else []
        if not parts or not all(re.fullmatch(r"[A-Za-z0-9_-]+", part) for part in parts):
            self.report.cannot(self.source, f"{where}.stages", f"{selected!r}: recast follows a stage's name, "
                                                               "or NAME[*].INNER into its sub-workflow")
            return None
        return {"step": parts[0], "output": value["output"], **({"inner": parts[1:]} if parts[1:] else {})}

    def produced(self, value: dict, consumer: str) -> tuple | None:
        """What a stage takes from ``{step, output[, inner]}``: ``(REFERENCE, is_a_list)`` (a list when it
        gathers a scatter's branches, or is a glob), ``("constant", VALUE)``, or None when nothing is
        published under that name."""
        producer = self.names[value["step"]]
        translation, path = self, [producer]
        scattered = self.scattered.get(producer)
        gathered = scattered is not None and scattered != self.scattered.get(consumer)
        for inner in value.get("inner", []):
            translation = translation.subflows.get(path[-1])
            if translation is None or inner not in translation.names:
                return None
            path.append(translation.names[inner])
            gathered = gathered or translation.scattered.get(path[-1]) is not None
        output = value["output"]
        if output in translation.constants.get(path[-1], {}):
            return "constant", translation.constants[path[-1]][output]
        published = translation.outputs.get(path[-1], {}).get(output)
        if published is None:
            return None
        if published.startswith(GLOB) and gathered:
            self.report.cannot(self.source, f"{'.'.join(path)}.{output}", "gathering a glob output over a scatter")
        return f"$steps.{'.'.join(path)}.{identifier(output)}", gathered or published.startswith(GLOB)

    @staticmethod
    def literal(value: Any) -> tuple[Any, dict]:
        """A literal binding (a leading $ escaped as $$) and its parameter's declaration."""
        return (f"${value}" if isinstance(value, str) and value.startswith("$") else value), type_of(value, None)

    def runtime_list(self, value: dict) -> str | None:
        """``$steps.S.O`` when ``value`` names the glob output O of an unscattered stage S (a list known when S
        has run, which recast can scatter over), else None."""
        producer = self.names.get(value.get("step"))
        path = self.outputs.get(producer, {}).get(value.get("output")) if producer else None
        if path is None or not path.startswith(GLOB) or self.scattered.get(producer) is not None:
            return None
        return f"$steps.{producer}.{identifier(value['output'])}"

    # -- one step: template and bindings -------------------------------------------

    def template(self, name: str, step: dict, parameters: dict, scattered: list[str], stage_doc: dict,
                 where: str) -> dict | None:
        workdir_paths: dict[str, str] = {}  # parameter -> path in the job's folder
        bind: dict[str, Any] = {}
        params: dict[str, dict] = {}
        for p, value in parameters.items():
            pname, at = identifier(p), f"{where}.parameters.{p}"
            if isinstance(value, str) and _WORKDIR in value:
                relative = value.replace(_WORKDIR, "", 1).lstrip("/")
                if not value.startswith(_WORKDIR) or "{" in relative or ".." in Path(relative).parts:
                    self.report.cannot(self.source, at, f"{value!r}: a path in the job's folder must be "
                                                        "\"{workdir}/PATH\"")
                    continue
                workdir_paths[p] = relative
            elif isinstance(value, dict) and p in scattered and value.get("step") != "init" and self.runtime_list(value):
                bind[pname], params[pname] = "$item", {"type": "file"}  # one file of the list per branch
            elif isinstance(value, dict) and set(value) >= {"step", "output"}:
                output = value["output"]
                if value["step"] == "init" and self.init is not None:  # the enclosing stage's parameter
                    source = self.init.get(output)
                    if source is None:
                        self.report.cannot(self.source, at, f"init parameter {output!r} is not a parameter of the "
                                                            "enclosing stage")
                    elif source[0] == "literal":
                        bind[pname], params[pname] = source[1], type_of(source[1], None)
                    elif source[0] == "steps":
                        bind[pname] = source[1]
                        params[pname] = {"type": "list", "items": {"type": "file"}} if source[2] else {"type": "file"}
                    else:
                        via, request_param = source[0], source[-1]
                        bind[pname] = f"$item.{source[1]}" if via == "item" else f"$request.{request_param}"
                        self.top.init_uses.setdefault(request_param, []).append((self.prefix + name, pname, via))
                elif value["step"] == "init":
                    bind[pname] = f"$item.{pname}" if p in scattered else f"$request.{output}"
                    via = ("batch" if "batch" in stage_doc.get("scatter", {}) else "item") if p in scattered else "request"
                    self.init_uses.setdefault(output, []).append((name, pname, via))
                elif value["step"] in self.names:
                    found = self.produced(value, name)
                    if found is None:
                        self.report.cannot(self.source, at, f"output {output!r} of stage "
                                                            f"{'.'.join([value['step'], *value.get('inner', [])])!r} "
                                                            "is not a file or constant its publisher declares")
                        continue
                    if found[0] == "constant":  # known now: the value itself
                        bind[pname], params[pname] = self.literal(found[1])
                        continue
                    reference, many = found
                    bind[pname] = reference
                    params[pname] = {"type": "list", "items": {"type": "file"}} if many else {"type": "file"}
                else:
                    self.report.cannot(self.source, at, f"a reference to {value['step']!r}, which is not a stage")
            elif isinstance(value, str) and references.PLACEHOLDER.search(value.replace("{{", "").replace("}}", "")):
                self.report.cannot(self.source, at, f"{value!r}: a placeholder in a parameter value")
            elif isinstance(value, (dict, list)) and "step" in str(value):
                self.report.cannot(self.source, at, "references inside a list or object")
            else:
                bind[pname], params[pname] = self.literal(value)
        process = self.process(step.get("process") or {}, f"{where}.step.process", workdir_paths)
        outputs = self.publisher(step.get("publisher") or {}, f"{where}.step.publisher", workdir_paths, name)
        environment = self.environment(step.get("environment") or {}, f"{where}.step.environment")
        if process is None or outputs is None or environment is None:
            return None
        envscript = (step.get("environment") or {}).get("envscript")
        if envscript:  # packtivity sources it before the command, in the same shell
            if process["interpreter"] == "python3" or not isinstance(envscript, str) or \
                    not re.fullmatch(r"(~/)?[A-Za-z0-9_./+-]{1,255}", envscript):
                self.report.cannot(self.source, f"{where}.step.environment.envscript",
                                   f"{envscript!r}: an envscript recast can source is a plain path, before an sh or "
                                   "bash script")
                return None
            home, rest = ("~/", envscript[2:]) if envscript.startswith("~/") else ("", envscript)
            quoted = home + shlex.quote(rest)  # ~/ stays unquoted: the shell expands it to the job's home
            process["script"] = f". {quoted}\n{process['script']}"
        self.outputs[name] = {k: v for k, v in outputs.items()}
        for p in list(bind):  # parameters the script never uses are not parameters (yadage passes them anyway)
            if not re.search(r"\{" + re.escape(p) + r"\}", process["script"]):
                self.report.note(self.source, f"{where}.parameters.{p}", "not used by the step's script: dropped")
                del bind[p]
                params.pop(p, None)
        stage_doc["bind"] = bind
        files = {identifier(k): {"glob": v.removeprefix(GLOB)} if v.startswith(GLOB) else v if "/" not in v
                 else {"path": v} for k, v in outputs.items()}
        return {"schema": spec.schema_name("template"), "name": name, "parameters": params, "process": process,
                "environment": environment, "outputs": {"files": files}}

    def process(self, process: dict, where: str, workdir_paths: dict[str, str]) -> dict | None:
        kind = process.get("process_type")
        if kind == "string-interpolated-cmd":
            body, interpreter = process.get("cmd"), "sh"
        elif kind == "interpolated-script-cmd":
            body, interpreter = process.get("script"), INTERPRETERS.get(process.get("interpreter", "sh"))
            if interpreter is None:
                self.report.cannot(self.source, f"{where}.interpreter", f"interpreter {process.get('interpreter')!r} "
                                                                     f"(recast runs {', '.join(sorted(INTERPRETERS))})")
                return None
        else:
            self.report.cannot(self.source, f"{where}.process_type", f"process type {kind!r}")
            return None
        if not isinstance(body, str) or not body.strip():
            self.report.cannot(self.source, where, "a process without a command or script")
            return None

        def fill(match: re.Match) -> str:  # a path in the job's folder is {outdir}/PATH in recast
            name = match.group(1)
            if name in workdir_paths:  # the job's folder itself, or a path in it
                return "/".join(filter(None, ["{outdir}", workdir_paths[name]]))
            if name == "workdir":
                return "{outdir}"
            return match.group(0) if name is None else "{" + identifier(name) + "}"

        return {"kind": "script", "interpreter": interpreter, "script": references.PLACEHOLDER.sub(fill, body)}

    def publisher(self, publisher: dict, where: str, workdir_paths: dict[str, str],
                  stage: str) -> dict[str, str] | None:
        """Output name -> path in the job's folder; a glob's pattern is marked ``GLOB:`` (a list of files).
        A constant-pub's values are kept in ``constants``: a stage that takes one gets the value itself."""
        kind = publisher.get("publisher_type")
        found: dict[str, str] = {}
        if kind == "constant-pub":
            constants = publisher.get("publish") or {}
            for name, value in constants.items():
                if "{" in str(value):
                    self.report.cannot(self.source, f"{where}.publish.{name}",
                                       f"{value!r}: a constant with a placeholder")
                    return None
            self.constants[stage] = dict(constants)
        elif kind == "interpolated-pub":
            mark = GLOB if publisher.get("glob") else ""
            for name, pattern in (publisher.get("publish") or {}).items():
                if isinstance(pattern, (int, float, bool)) or pattern is None:  # packtivity formats text only
                    self.constants.setdefault(stage, {})[name] = pattern
                    continue
                path = self.workdir_path(pattern, workdir_paths, bool(publisher.get("relative_paths")))
                if path is None:
                    self.report.cannot(self.source, f"{where}.publish.{name}",
                                       f"{pattern!r}: only paths in the job's folder can be published")
                    return None
                found[name] = mark + path
        elif kind == "frompar-pub":
            for name, parameter in (publisher.get("outputmap") or {}).items():
                if parameter not in workdir_paths:
                    self.report.cannot(self.source, f"{where}.outputmap.{name}",
                                       f"parameter {parameter!r} is not a path in the job's folder")
                    return None
                found[name] = workdir_paths[parameter]
        elif kind == "fromglob-pub":
            pattern = str(publisher.get("globexpression", ""))
            path = self.workdir_path(pattern if pattern.startswith(_WORKDIR) else f"{_WORKDIR}/{pattern}", workdir_paths)
            if path is None or not publisher.get("outputkey"):
                self.report.cannot(self.source, f"{where}.globexpression", f"{pattern!r}: a glob in the job's folder "
                                                                          "and an outputkey are needed")
                return None
            found[str(publisher["outputkey"])] = GLOB + path
        else:
            self.report.cannot(self.source, f"{where}.publisher_type", f"publisher {kind!r}")
            return None
        return found

    @staticmethod
    def workdir_path(pattern: Any, workdir_paths: dict[str, str], relative: bool = False) -> str | None:
        """The path in the job's folder a published pattern names (``relative``: interpolated-pub's
        ``relative_paths``, a pattern that is not absolute once filled in is relative to that folder)."""
        if not isinstance(pattern, str):
            return None
        text = pattern
        for name, path in workdir_paths.items():
            text = text.replace("{" + name + "}", "{workdir}/" + path)
        if relative and not text.startswith((_WORKDIR, "/")):
            text = f"{_WORKDIR}/{text}"
        if not text.startswith(_WORKDIR):
            return None
        relative = re.sub(r"/+", "/", text[len(_WORKDIR):]).strip("/")
        if not relative or "{" in relative or ".." in relative.split("/"):
            return None
        return relative

    def environment(self, environment: dict, where: str) -> dict | None:
        if environment.get("environment_type") != "docker-encapsulated":
            self.report.cannot(self.source, f"{where}.environment_type",
                               f"environment {environment.get('environment_type')!r}")
            return None
        if environment.get("par_mounts"):
            self.report.cannot(self.source, f"{where}.par_mounts", "par_mounts (not yet in recast's spec)")
        workdir = environment.get("workdir")
        if workdir is not None and not (isinstance(workdir, str) and re.fullmatch(r"/[A-Za-z0-9_.+/-]*", workdir)
                                        and ".." not in workdir.split("/")):
            self.report.cannot(self.source, f"{where}.workdir", f"{workdir!r}: an absolute folder inside the image")
        image = str(environment.get("image", ""))
        reference = f"{image}:{environment.get('imagetag', 'latest')}" if "@" not in image else image
        pulled = {"pull": reference.lower() if "@" not in reference else reference}
        key = base = identifier(image.rsplit("/", 1)[-1].split("@")[0])
        n = 1
        while key in self.top.images and self.top.images[key] != pulled:  # the same name at another tag
            n += 1
            key = f"{base}_{n}"
        self.top.images[key] = pulled
        env = environment.get("env") or {}
        if not isinstance(env, dict) or not all(
                isinstance(k, str) and re.fullmatch(r"[A-Z_][A-Z0-9_]{0,127}", k)
                and isinstance(v, (str, int, float)) and not isinstance(v, bool) for k, v in env.items()):
            self.report.cannot(self.source, f"{where}.env", "variables other than NAME: text (upper-case names)")
            env = {}
        resources: dict[str, Any] = {}
        needs: dict[str, list[str]] = {}
        for resource in environment.get("resources") or []:
            if isinstance(resource, dict) and "kubernetes_memory_limit" in resource:
                match = _K8S_MEMORY.match(str(resource["kubernetes_memory_limit"]))
                if match:
                    resources["memory"] = f"{match.group(1)}{match.group(2)}B"
            elif isinstance(resource, dict) and "kubernetes_uid" in resource:
                self.report.note(self.source, f"{where}.resources", "kubernetes_uid ignored: recast runs every job "
                                                                   "as an unprivileged user of its own")
            elif isinstance(resource, str) and resource in NEEDS:
                kind, name = NEEDS[resource]
                if name not in needs.setdefault(kind, []):
                    needs[kind].append(name)
            else:
                self.report.cannot(self.source, f"{where}.resources", f"the resource {resource!r}")
        return {"kind": "image", "image": key, **({"env": {k: str(v) for k, v in env.items()}} if env else {}),
                **({"resources": resources} if resources else {}), **needs, **({"workdir": workdir} if workdir else {})}


_TEXT = {"type": "string"}
_OBJECT = {"type": "object"}
# The shape of what the importer reads from a yadage workflow (its $refs resolved): other keys are allowed and
# either translated or reported, but a document of another shape is refused here, field by field, not halfway
# through the translation.
STRUCTURE = {
    "$ref": "#/$defs/workflow",
    "$defs": {
        "workflow": {"type": "object", "required": ["stages"], "properties": {
            "stages": {"type": "array", "items": {"$ref": "#/$defs/stage"}}}},
        "stage": {"type": "object", "required": ["name", "scheduler"], "properties": {
            "name": _TEXT,
            "dependencies": {"type": "array", "items": _TEXT},
            "scheduler": {"type": "object", "required": ["scheduler_type"], "properties": {
                "scheduler_type": _TEXT,
                "parameters": _OBJECT,
                "scatter": {"type": "object", "properties": {"method": _TEXT,
                                                             "parameters": {"type": "array", "items": _TEXT}}},
                "step": {"$ref": "#/$defs/step"},
                "workflow": {"$ref": "#/$defs/workflow"}}}}},
        "step": {"type": "object", "properties": {
            "process": {"type": "object", "properties": {
                "process_type": _TEXT, "cmd": _TEXT, "script": _TEXT, "interpreter": _TEXT}},
            "publisher": {"type": "object", "properties": {
                "publisher_type": _TEXT, "publish": _OBJECT, "outputmap": {"type": "object",
                                                                           "additionalProperties": _TEXT},
                "globexpression": _TEXT, "outputkey": _TEXT}},
            "environment": {"type": "object", "properties": {
                "environment_type": _TEXT, "image": _TEXT, "imagetag": {"type": ["string", "number"]},
                "envscript": {"type": ["string", "null"]}, "workdir": {"type": ["string", "null"]},
                "resources": {"type": "array", "items": {"type": ["string", "object"]}}}}}},
    },
}


def check_structure(document: Any, source: Path) -> None:
    """Refuse a workflow (its $refs resolved) that is not shaped as yadage's, saying which field and why."""
    from jsonschema import Draft202012Validator

    found = spec.first_errors(Draft202012Validator(STRUCTURE).iter_errors(document), source)
    if found:
        raise RecastError(f"{source}: not a yadage workflow recast can read:\n"
                          + "\n".join(f"  {where or '(top)'}: {message}" for _, where, message in found))


def translate(workflow_path: Path, toplevel: Path | None, inputs: dict[str, dict], files_root: Path | None,
              report: Report) -> tuple[Translation, dict[str, dict]]:
    """The translation of a workflow and the request parameters its init values need."""
    resolver = Resolver(workflow_path, toplevel, report)
    document = resolver.resolve(resolver.load(workflow_path.resolve()), workflow_path.resolve())
    check_structure(document, workflow_path)
    translation = Translation(document, workflow_path, report)
    examples = list(inputs.values())
    request: dict[str, dict] = {}
    for name, uses in translation.init_uses.items():
        example = next((e[name] for e in examples if name in e), None)
        declared = type_of(example, files_root) if example is not None else {"type": "string"}
        if example is None:
            report.note(workflow_path, f"init.{name}", "no example value: declared a string")
        if any(via in ("item", "batch") for _, _, via in uses) and declared["type"] != "list":
            declared = {"type": "list", "items": declared}
        request[name] = declared
        for template, param, via in uses:
            if template not in translation.templates:
                continue  # not translated: the report says why
            translation.templates[template]["parameters"][param] = dict(
                declared["items"] if via == "item" and declared.get("type") == "list" else declared)
    for template in translation.templates.values():  # a parameter the script dropped is no parameter
        for param in list(template["parameters"]):
            if not re.search(r"\{" + re.escape(param) + r"\}", template["process"]["script"]):
                del template["parameters"][param]
    return translation, request


def _all_stages(stages: list[dict]):
    """Every stage, those of sub-workflows too."""
    for stage in stages:
        yield stage
        yield from _all_stages(stage.get("workflow", {}).get("stages", []))


def analysis_document(entry_id: str, title: str, description: str, translation: Translation,
                      request: dict[str, dict], examples: dict[str, str], metadata: dict | None = None,
                      results: dict | None = None) -> dict:
    every = list(_all_stages(translation.stages))
    used = {ref.name for stage in every for v in stage.get("bind", {}).values()
            if (ref := references.parse_or_none(v)) is not None and ref.kind == "request"}
    used |= {v.removeprefix("$request.") for stage in every
             for lists in stage.get("scatter", {}).values() if isinstance(lists, dict) for v in lists.values()}
    files = results if results is not None else {
        f"{stage}_{identifier(name)}": f"$steps.{stage}.{identifier(name)}"
        for stage, outputs in translation.outputs.items() for name, path in outputs.items()
        if not path.startswith(GLOB)}  # a glob's files are no result (recast keeps results to declared files)
    return {
        "schema": spec.schema_name("analysis"), "id": entry_id, "version": "0.1.0", "title": title,
        "description": description, "metadata": {"tags": ["imported"], **(metadata or {})},
        "images": translation.images,
        "templates": {name: f"templates/{name}.yaml" for name in translation.templates},
        "workflow": {"stages": translation.stages},
        "request": {"parameters": {k: v for k, v in request.items() if k in used}},
        "results": {"values": {}, "files": files},
        # The reference results are the first run's: `recast test ID --update-reference` writes them.
        **({"examples": {name: {"request": path, "description": f"the published example inputs {name!r}",
                                "reference": path.removesuffix(".yaml") + ".results.json"}
                         for name, path in examples.items()}} if examples else {}),
    }


def write_entry(folder: Path, document: dict, translation: Translation, examples: dict[str, dict],
                files_root: Path | None, request: dict[str, dict]) -> None:
    """The entry's files: analysis.yaml, one template per step, one example request per inputs file (with the
    files its values name copied beside it)."""
    (folder / "templates").mkdir()
    for name, template in translation.templates.items():
        _dump(folder / "templates" / f"{name}.yaml", template)
    for name, values in examples.items():
        parameters = {k: v for k, v in values.items() if k in document["request"]["parameters"]}
        for key, value in parameters.items():
            declared = request.get(key, {})
            for relative in ([value] if declared.get("type") == "file" else
                             value if declared.get("items", {}).get("type") == "file" else []):
                target = folder / "examples" / relative
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(files_root / relative, target)
        (folder / "examples").mkdir(exist_ok=True)
        _dump(folder / "examples" / f"{name}.yaml", {"schema": spec.schema_name("request"), "analysis": document["id"],
                                                     "parameters": parameters})
    _dump(folder / "analysis.yaml", document)


class _Dumper(yaml.SafeDumper):
    """Scripts as YAML block text (``|``), as a person would write them."""


_Dumper.add_representer(str, lambda dumper, text: dumper.represent_scalar(
    "tag:yaml.org,2002:str", text, style="|" if "\n" in text else None))  # the emitter falls back where a block cannot hold it


def _dump(path: Path, document: Any) -> None:
    path.write_text(yaml.dump(document, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100))


def import_workflow(workflow: Path, catalog: Path, entry_id: str, *, toplevel: Path | None = None,
                    inputs: dict[str, dict] | None = None, files_root: Path | None = None, title: str | None = None,
                    description: str | None = None, metadata: dict | None = None,
                    results: list[dict] | None = None, force: bool = False,
                    report: Report | None = None, checks=None) -> tuple[Path, Report]:
    """Translate ``workflow`` and install it as ``catalog/entry_id``; raises ImportFailed (nothing written)
    when any feature cannot be translated. ``results`` are recast-atlas's (name, relpath) results;
    ``checks(translation, request, inputs)``, if given, makes the entry's checks.yaml (or None)."""
    from recast.importers import install

    report = report or Report(str(workflow))
    inputs = inputs or {}
    translation, request = translate(workflow, toplevel, inputs, files_root, report)
    declared = None
    if results is not None:
        declared = {}
        for i, result in enumerate(results):
            stage, _, path = str(result.get("relpath", "")).partition("/")
            stage = identifier(stage, lower=True)
            output = next((n for n, p in translation.outputs.get(stage, {}).items() if p == path), None)
            if output is None:
                report.cannot(workflow, f"results[{i}]", f"{result.get('relpath')!r} is not an output the "
                                                         "workflow's stages publish")
                continue
            declared[identifier(str(result.get("name", output)), lower=True)[:64]] = \
                f"$steps.{stage}.{identifier(output)}"
            if result.get("load_yaml"):
                report.note(workflow, f"results[{i}]", "a result file, not values: recast reads values from JSON "
                                                       "outputs declared in a template")
    report.raise_if_unsupported()
    document = analysis_document(
        entry_id, title or f"{workflow.parent.name}/{workflow.name} (imported from yadage)",
        description or f"Imported by `recast import` from the yadage workflow {workflow.name}.",
        translation, request, {name: f"examples/{name}.yaml" for name in inputs}, metadata, declared)
    checks_document = checks(translation, request, inputs) if checks else None
    if checks_document:
        document["checks"] = "checks.yaml"

    def write(folder: Path) -> None:
        write_entry(folder, document, translation, inputs, files_root, request)
        if checks_document:
            _dump(folder / "checks.yaml", checks_document)

    return install(catalog, entry_id, write, force), report
