"""A Snakemake workflow (rules without wildcards) as recast stages, for ``recast import reana``.

The Snakefile is never run: Snakemake's own parser turns it into Python
source, which is read as a syntax tree. Each rule (but ``all``) becomes a
template and a stage:

- ``input``: ``config["KEY"]`` becomes the request parameter KEY (typed from
  the REANA configfile's example values, a file when the value names one);
  a path another rule makes becomes ``$steps.RULE.OUTPUT``; a path no rule
  makes, a file of the workflow copied into the entry (``$entry/files/PATH``);
- ``params``: ``config["KEY"]`` or a literal;
- ``output``: paths in the job's own folder (``{outdir}/PATH``);
- ``shell``: a ``sh`` script, its ``{input.NAME}``, ``{input}``, ``{output}``,
  ``{output.NAME}``, ``{params.NAME}`` and ``{threads}`` made recast
  placeholders (quoted for where they stand);
- ``container: "docker://REF"``: a pulled image; ``threads``, ``mem_mb``,
  ``runtime`` and ``kubernetes_memory_limit``: the template's resources.

Wildcards, ``run:`` blocks, ``script:``/``notebook:``/``wrapper:``, rules
without a container, top-level Python code and expressions other than
literals and ``config[...]`` are named in the report, and nothing is written.
"""

from __future__ import annotations

import ast
import io
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from recast.errors import RecastError
from recast.importers import Report
from recast.importers.yadage import identifier
from recast.spec import schema_name

_DIRECTIVES = {"input", "output", "params", "container", "resources", "shellcmd", "threads", "log", "run", "norun",
               "rule", "script", "notebook", "wrapper", "cwl", "conda", "message", "benchmark"}
_K8S_MEMORY = re.compile(r"^([0-9]+)(Ki|Mi|Gi|Ti)$")


@dataclass
class Rule:
    name: str
    directives: dict[str, tuple[list, dict]] = field(default_factory=dict)  # directive -> (args, keywords)


MAX_SNAKEFILE_BYTES = 4 * 2**20


def parse_snakefile(path: Path, report: Report) -> list[Rule]:
    """The rules of a Snakefile, read (never run) through Snakemake's parser and Python's ``ast``."""
    from snakemake import parser

    if path.stat().st_size > MAX_SNAKEFILE_BYTES:
        raise RecastError(f"{path}: {path.stat().st_size} bytes, more than a Snakefile recast reads "
                          f"({MAX_SNAKEFILE_BYTES} bytes)")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise RecastError(f"{path}: not a Snakefile recast can read: not UTF-8 text ({exc.reason} at byte "
                          f"{exc.start})") from None
    source = SimpleNamespace(get_path_or_uri=lambda secret_free=True: str(path))
    workflow = SimpleNamespace(sourcecache=SimpleNamespace(open=lambda _: io.StringIO(text)))
    try:
        code, _ = parser.parse(source, workflow, {})
        module = ast.parse(code)
    except Exception as exc:  # Snakemake's parser raises its own errors for a malformed Snakefile
        raise RecastError(f"{path}: not a Snakefile recast can read: {exc}") from None
    rules = []
    for node in module.body:
        if not isinstance(node, ast.FunctionDef) or not node.name.startswith("__rule_"):
            report.cannot(path, f"line {getattr(node, 'lineno', '?')}", "top-level Python code (it would run when "
                                                                         "Snakemake reads the file)")
            continue
        rule = Rule(node.name.removeprefix("__rule_"))
        for decorator in node.decorator_list:
            call = decorator if isinstance(decorator, ast.Call) else None
            target = call.func if call else decorator
            if isinstance(target, ast.Attribute) and isinstance(target.value, ast.Name) and target.value.id == "workflow":
                rule.directives[target.attr] = (list(call.args) if call else [],
                                                {k.arg: k.value for k in call.keywords} if call else {})
        rules.append(rule)
    return rules


def value(node: ast.AST, where: str, report: Report, path: Path) -> tuple[str, Any] | None:
    """("literal", v) or ("config", key); None (reported) for anything that would need running code."""
    try:
        return "literal", ast.literal_eval(node)
    except (ValueError, SyntaxError, TypeError):
        pass
    if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name) and node.value.id == "config":
        key = node.slice
        if isinstance(key, ast.Constant) and isinstance(key.value, str):
            return "config", key.value
    report.cannot(path, where, f"the expression {ast.unparse(node)!r} (recast reads literals and config[...])")
    return None


@dataclass
class Translation:
    """What :func:`recast.importers.yadage.analysis_document` and ``write_entry`` need."""

    templates: dict[str, dict] = field(default_factory=dict)
    stages: list[dict] = field(default_factory=list)
    images: dict[str, dict] = field(default_factory=dict)
    outputs: dict[str, dict[str, str]] = field(default_factory=dict)
    entry_files: dict[str, Path] = field(default_factory=dict)  # path in the entry -> file to copy there
    request: dict[str, dict] = field(default_factory=dict)


def translate(snakefile: Path, root: Path, config: dict, report: Report) -> Translation:
    from recast.importers.yadage import type_of

    rules = [r for r in parse_snakefile(snakefile, report) if "norun" not in r.directives]
    made: dict[str, tuple[str, str]] = {}  # output path -> (stage, output name)
    for rule in rules:
        args, keywords = rule.directives.get("output", ([], {}))
        for i, (key, node) in enumerate([*((None, a) for a in args), *keywords.items()]):
            found = value(node, f"rule {rule.name}: output", report, snakefile)
            if found and found[0] == "literal" and isinstance(found[1], str):
                made[found[1]] = (identifier(rule.name, lower=True), identifier(key or f"output{i}"))
    translation = Translation()
    for rule in rules:
        _rule(rule, translation, made, snakefile, root, config, report, type_of)
    return translation


def _rule(rule: Rule, translation: Translation, made: dict, snakefile: Path, root: Path, config: dict,
          report: Report, type_of) -> None:
    name, at = identifier(rule.name, lower=True), f"rule {rule.name}"
    for directive in ("script", "notebook", "wrapper", "cwl", "conda", "log", "benchmark"):
        if directive in rule.directives:
            report.cannot(snakefile, at, f"the {directive!r} directive")
    if "shellcmd" not in rule.directives:  # every rule has a body; a rule without shell: runs Python in it
        report.cannot(snakefile, at, "a run: block (Python code) or a rule without a shell command")
        return
    parameters, bind, placeholders = {}, {}, {}
    inputs = []
    args, keywords = rule.directives.get("input", ([], {}))
    for i, (key, node) in enumerate([*((None, a) for a in args), *keywords.items()]):
        pname = identifier(key or f"input{i}")
        found = value(node, f"{at}: input {key or i}", report, snakefile)
        if found is None:
            continue
        kind, v = found
        if kind == "config":
            example = config.get(v)
            declared = type_of(example, root) if example is not None else {"type": "file"}
            translation.request[v] = declared
            bind[pname], parameters[pname] = f"$request.{v}", dict(declared)
        elif isinstance(v, str) and v in made:
            stage, output = made[v]
            bind[pname], parameters[pname] = f"$steps.{stage}.{output}", {"type": "file"}
        elif isinstance(v, str) and "{" not in v and (root / v).is_file() and not (root / v).is_symlink() \
                and ".." not in Path(v).parts:
            translation.entry_files[f"files/{v}"] = root / v
            bind[pname], parameters[pname] = f"$entry/files/{v}", {"type": "file"}
        else:
            report.cannot(snakefile, f"{at}: input {key or i}", f"{v!r}: a wildcard, or a file neither made by a "
                                                               "rule nor found beside the workflow")
            continue
        placeholders[f"input.{key}" if key else f"input[{i}]"] = "{" + pname + "}"
        inputs.append("{" + pname + "}")
    placeholders["input"] = " ".join(inputs)
    outputs, produced = {}, []
    args, keywords = rule.directives.get("output", ([], {}))
    for i, (key, node) in enumerate([*((None, a) for a in args), *keywords.items()]):
        found = value(node, f"{at}: output", report, snakefile)
        if not found or found[0] != "literal" or not isinstance(found[1], str):
            continue
        path = found[1]
        if "{" in path or ".." in Path(path).parts or path.startswith("/"):
            report.cannot(snakefile, f"{at}: output {path!r}", "a wildcard, or a path outside the job's folder")
            continue
        oname = identifier(key or f"output{i}")
        outputs[oname] = path if "/" not in path else {"path": path}
        placeholders[f"output.{key}" if key else f"output[{i}]"] = "{outdir}/" + path
        produced.append("{outdir}/" + path)
    placeholders["output"] = " ".join(produced)
    args, keywords = rule.directives.get("params", ([], {}))
    for key, node in keywords.items():
        found = value(node, f"{at}: params {key}", report, snakefile)
        if found is None:
            continue
        pname = identifier(f"param_{key}") if identifier(key) in parameters else identifier(key)
        if found[0] == "config":
            example = config.get(found[1])
            declared = type_of(example, None) if example is not None else {"type": "string"}
            translation.request[found[1]] = declared
            bind[pname], parameters[pname] = f"$request.{found[1]}", declared
        else:
            bind[pname], parameters[pname] = found[1], type_of(found[1], None)
        placeholders[f"params.{key}"] = "{" + pname + "}"
    if args:
        report.cannot(snakefile, f"{at}: params", "positional params")
    resources, cores = _resources(rule, at, snakefile, report)
    placeholders["threads"] = str(cores)
    shell = rule.directives["shellcmd"][0]
    command = value(shell[0], f"{at}: shell", report, snakefile) if shell else None
    if not command or command[0] != "literal" or not isinstance(command[1], str):
        return
    script = _placeholders(command[1], placeholders, f"{at}: shell", snakefile, report)
    image = _container(rule, at, snakefile, report)
    if script is None or image is None:
        return
    key = identifier(image.rsplit("/", 1)[-1].split(":")[0].split("@")[0])
    translation.images[key] = {"pull": image}
    translation.templates[name] = {
        "schema": schema_name("template"), "name": name, "parameters": parameters,
        "process": {"kind": "script", "interpreter": "sh", "script": script},
        "environment": {"kind": "image", "image": key, **({"resources": resources} if resources else {})},
        "outputs": {"files": outputs}}
    translation.outputs[name] = {k: (v if isinstance(v, str) else v["path"]) for k, v in outputs.items()}
    translation.stages.append({"name": name, "template": name, "bind": bind})


def _placeholders(command: str, known: dict[str, str], where: str, path: Path, report: Report) -> str | None:
    """Snakemake's shell placeholders as recast's ({{ and }} stay literal braces)."""
    problems = []

    def fill(match: re.Match) -> str:
        token = match.group(0)
        if token in ("{{", "}}"):
            return token
        inner = token[1:-1].strip()
        if inner in known:
            return known[inner]
        problems.append(inner)
        return token

    result = re.sub(r"\{\{|\}\}|\{[^{}]*\}", fill, command)
    for inner in problems:
        report.cannot(path, where, f"the placeholder {{{inner}}} (recast fills input, output, params and threads)")
    return None if problems else result


def _container(rule: Rule, where: str, path: Path, report: Report) -> str | None:
    args, _ = rule.directives.get("container", ([], {}))
    found = value(args[0], f"{where}: container", report, path) if args else None
    if not found or not isinstance(found[1], str) or not found[1].startswith("docker://"):
        report.cannot(path, f"{where}: container", "a rule without a docker:// container (recast runs every job "
                                                   "in an image)")
        return None
    return found[1].removeprefix("docker://").lower()


def _resources(rule: Rule, where: str, path: Path, report: Report) -> tuple[dict, int]:
    resources, cores = {}, 1
    threads = rule.directives.get("threads", ([], {}))[0]
    if threads:
        found = value(threads[0], f"{where}: threads", report, path)
        if found and isinstance(found[1], int):
            cores = found[1]
            resources["cores"] = cores
    for key, node in rule.directives.get("resources", ([], {}))[1].items():
        found = value(node, f"{where}: resources {key}", report, path)
        if not found or found[0] != "literal":
            continue
        if key == "mem_mb" and isinstance(found[1], int):
            resources["memory"] = f"{found[1]}MiB"
        elif key == "runtime" and isinstance(found[1], int):
            resources["time_limit"] = f"{found[1]}m"
        elif key == "kubernetes_memory_limit" and (match := _K8S_MEMORY.match(str(found[1]))):
            resources["memory"] = f"{match.group(1)}{match.group(2)}B"
    return resources, cores


def copy_entry_files(folder: Path, translation: Translation) -> None:
    for relative, source in translation.entry_files.items():
        target = folder / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
