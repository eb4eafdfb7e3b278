"""The validated analysis, as Python objects: what the rest of recast reads.

Specs are loaded and schema-checked by :mod:`recast.spec`, cross-checked by
:mod:`recast.validate`, and arrive here as frozen dataclasses. Nothing in this
module touches the file system beyond resolving paths relative to the entry.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from recast.limits import DEFAULT_OUTPUT_BYTES


@dataclass(frozen=True)
class ImageSpec:
    """A container image an analysis needs, and how to rebuild it (or, for a published one, pull it)."""

    name: str  # key in the analysis spec, referenced by templates
    tag: str  # e.g. recast/wh1lbb-selection:1.0.0; for a pulled image, its reference
    context: Path | None  # absolute build context (None: pulled, not built)
    dockerfile: Path | None  # absolute path of the Dockerfile (None: pulled, not built)
    build_args: dict[str, str] = field(default_factory=dict)
    pulled: bool = False  # published elsewhere: pulled by its reference, never built here


@dataclass(frozen=True)
class Parameter:
    """A typed parameter of a template or of a request (JSON-Schema-like, plus `file`)."""

    name: str
    type: str  # string | number | integer | boolean | file | list | object
    description: str = ""
    default: Any = None
    has_default: bool = False
    items: Parameter | None = None  # for lists
    properties: dict[str, Parameter] = field(default_factory=dict)  # for objects
    required: tuple[str, ...] = ()
    schema: dict = field(default_factory=dict)  # extra JSON Schema keywords (minimum, pattern, enum...)


@dataclass(frozen=True)
class Resources:
    cores: float = 1.0
    memory_bytes: int = 2 * 1024**3
    time_limit_s: float = 3600.0
    output_bytes: int = DEFAULT_OUTPUT_BYTES  # most a job may write into its output folder
    retries: int = 0  # starts after a failure before the run fails (Snakemake's retries)


@dataclass(frozen=True)
class Template:
    """A job template in three independent parts: process, environment, outputs."""

    name: str
    path: Path
    description: str
    parameters: dict[str, Parameter]
    process: dict[str, Any]  # the template's `process`, as recast/processes.py reads it for its kind
    image: str  # name of an ImageSpec of the analysis
    env: dict[str, str]
    resources: Resources
    network: bool
    output_files: dict[str, str]  # name -> path inside the job's output folder (a file, or a folder)
    output_values: dict[str, tuple[str, str]]  # name -> (output file name key, JSON pointer)
    output_directories: frozenset[str] = frozenset()  # names of output_files that are whole folders
    output_globs: dict[str, str] = field(default_factory=dict)  # name -> pattern: the files matching when it ends
    host_resources: tuple[str, ...] = ()  # read-only host folders it needs, by name (recast/host_resources.py)
    workdir: str | None = None  # where the command starts, inside the image (default: its output folder)
    credentials: tuple[str, ...] = ()  # credential files it needs, by name

    @property
    def argv(self) -> tuple[str, ...]:
        """What it runs, for people and for "is this program on the host": a command's argv, or
        ``INTERPRETER -c SCRIPT`` (placeholders unfilled)."""
        if self.process["kind"] == "script":
            return (self.process["interpreter"], "-c", self.process["script"])
        return tuple(self.process["argv"])


@dataclass(frozen=True)
class Stage:
    name: str
    template: str
    bind: dict[str, Any]  # template parameter -> literal or "$request.x" / "$item.x" / "$steps.s.o"
    scatter: str | None = None  # which branches: a request list's name, or "zip(...)"/"cartesian(...)" of several
    after: tuple[str, ...] = ()
    scatter_method: str = "over"  # over (one list) | zip (several, element by element) | cartesian (every combination)
    scatter_lists: tuple[tuple[str, str], ...] = ()  # zip/cartesian: ($item field, request list parameter)
    scatter_batch: int = 0  # > 0: each branch runs on up to this many elements ($item is then a list)
    scatter_from: tuple[str, str] | None = None  # (stage, output): a list known only when that stage has run

    @property
    def branches(self) -> tuple | None:
        """What a stage's branches are: two stages with the same run branch to branch."""
        return None if self.scatter is None else (self.scatter, self.scatter_batch)

    def scatter_items(self, parameters: dict[str, Any]) -> list[Any]:
        """The elements its branches run on (``$item`` of each), in branch order."""
        import itertools

        if self.scatter is None:
            return [None]
        if self.scatter_method == "over":  # a request list, or (scatter_from) one another stage left
            return self._batched(list(parameters[self.scatter]))
        fields = [field for field, _ in self.scatter_lists]
        lists = [list(parameters[name]) for _, name in self.scatter_lists]
        if self.scatter_method == "zip":
            lengths = {name: len(values) for (_, name), values in zip(self.scatter_lists, lists)}
            if len(set(lengths.values())) > 1:
                from recast.errors import RecastError

                raise RecastError(f"stage {self.name!r} zips lists of different lengths: "
                                  + ", ".join(f"{name} has {n}" for name, n in lengths.items()))
            combined = zip(*lists)
        else:
            combined = itertools.product(*lists)
        return self._batched([dict(zip(fields, values)) for values in combined])

    def _batched(self, items: list[Any]) -> list[Any]:
        """With ``batch: N``, each branch's ``$item`` is a list of up to N elements (and ``$item.FIELD``
        the list of that field of each)."""
        if not self.scatter_batch:
            return items
        return [items[i:i + self.scatter_batch] for i in range(0, len(items), self.scatter_batch)]

    @property
    def upstream(self) -> set[str]:
        """The stages this one waits for: its `after`, and every stage whose outputs it binds."""
        from recast.references import parse_or_none

        return set(self.after) | {ref.stage for value in self.bind.values()
                                  if (ref := parse_or_none(value)) is not None and ref.kind == "steps"} \
            | ({self.scatter_from[0]} if self.scatter_from else set())


@dataclass(frozen=True)
class Example:
    name: str
    request: Path
    description: str = ""
    reference: Path | None = None
    tolerances: dict = field(default_factory=dict)  # {"relative": r, "absolute": a}


@dataclass(frozen=True)
class Analysis:
    id: str
    version: str
    title: str
    description: str
    root: Path  # the catalog entry's folder
    spec_path: Path
    document: dict  # the spec as loaded (templates inlined), for digests and display
    metadata: dict
    images: dict[str, ImageSpec]
    templates: dict[str, Template]
    stages: tuple[Stage, ...]
    request_parameters: dict[str, Parameter]
    results: dict  # {"values": {name: ref}, "files": {name: ref}}
    examples: dict[str, Example]
    likelihood: dict | None = None  # likelihood-only entries (see recast.likelihood)
    checks: dict | None = None  # acceptance checks (checks.yaml), see recast.checks

    @property
    def runnable(self) -> bool:
        return bool(self.stages)
