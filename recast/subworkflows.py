"""Sub-workflows: a stage whose body is a workflow, expanded into plain stages before anything else sees it.

A stage may hold ``workflow: {stages: [...]}`` instead of a template: its
stages run once per branch of its scatter (a whole chain per signal point,
say), nested as deep as needed. Everything after validation sees plain
stages: a sub-workflow's stage ``fit`` inside stage ``per_point`` becomes the
stage ``per_point_fit``, scattered as ``per_point`` is, so that the stages of
one sub-workflow run branch to branch. References are renamed on the way:

- inside a sub-workflow, ``$steps.NAME.OUTPUT`` names the nearest stage called
  NAME: a sibling first, then one of an enclosing workflow;
- anywhere, ``$steps.OUTER.INNER.OUTPUT`` (one more name per level) names a
  stage inside a sub-workflow, from outside it (results included);
- ``after: [OUTER]`` waits for every stage of the sub-workflow OUTER;
- ``$item`` inside is the element of the enclosing scatter.

A scatter inside a scattered sub-workflow (branches of branches) is refused.
"""

from __future__ import annotations

from typing import Any

Problem = tuple[str, str]  # (field, message)


class _Scope:
    """One workflow level: its stages' names, and the prefix its stages get once flattened."""

    def __init__(self, stages: list[dict], prefix: str, parent: _Scope | None):
        self.names = {s.get("name"): s for s in stages if isinstance(s, dict)}
        self.prefix, self.parent = prefix, parent

    def find(self, name: str) -> tuple[_Scope, dict] | None:
        scope = self
        while scope is not None:
            if name in scope.names:
                return scope, scope.names[name]
            scope = scope.parent
        return None


def _stages_below(stage: dict, prefix: str) -> list[str]:
    """The flattened names of every plain stage a (sub-workflow) stage holds, or the stage itself."""
    name = prefix + stage["name"]
    if "workflow" not in stage:
        return [name]
    return [n for inner in stage["workflow"].get("stages", []) for n in _stages_below(inner, name + "_")]


def rename(value: Any, scope: _Scope, where: str, problems: list[Problem]) -> Any:
    """A binding or result with its ``$steps`` references made to name flattened stages."""
    if not isinstance(value, str) or not value.startswith("$steps."):
        return value
    parts = value.split(".")[1:]
    if len(parts) < 2 or not all(parts):
        return value  # malformed: validation says so
    found = scope.find(parts[0])
    if found is None:
        return value  # unknown: validation says so
    owner, stage = found
    path, name = [parts[0]], owner.prefix + parts[0]
    for part in parts[1:-1]:
        inner = {s.get("name"): s for s in stage.get("workflow", {}).get("stages", [])} if "workflow" in stage else {}
        if part not in inner:
            problems.append((where, f"{value}: {'.'.join(path)} has no stage {part!r}" if "workflow" in stage
                             else f"{value}: stage {'.'.join(path)!r} is not a sub-workflow"))
            return value
        stage, name = inner[part], f"{name}_{part}"
        path.append(part)
    if "workflow" in stage:
        problems.append((where, f"{value}: {'.'.join(path)} is a sub-workflow: name one of its stages "
                                f"($steps.{'.'.join(path)}.STAGE.OUTPUT)"))
        return value
    return f"$steps.{name}.{parts[-1]}"


def flatten(stages: list[dict], where: str = "workflow") -> tuple[list[tuple[str, dict]], list[Problem]]:
    """Every plain stage (with where it was written), sub-workflows expanded; and the problems found."""
    problems: list[Problem] = []
    flat: list[tuple[str, dict]] = []
    _flatten(stages, where, _Scope(stages, "", None), None, [], flat, problems)
    return flat, problems


def _flatten(stages: list[dict], where: str, scope: _Scope, scatter: dict | None, after: list[str],
             flat: list[tuple[str, dict]], problems: list[Problem]) -> None:
    for i, stage in enumerate(stages):
        at = f"{where}.stages[{i}]"
        own = stage.get("scatter")
        if own is not None and scatter is not None:
            problems.append((f"{at}.scatter", "a scatter inside a scattered sub-workflow (branches of branches) "
                                              "is not supported: scatter the sub-workflow, or this stage, not both"))
        waits = list(after)
        for name in stage.get("after", []):
            found = scope.find(name)
            waits += _stages_below(found[1], found[0].prefix) if found else [name]
        if "workflow" in stage:
            inner = stage["workflow"].get("stages", [])
            _flatten(inner, f"{at}.workflow", _Scope(inner, f"{scope.prefix}{stage['name']}_", scope),
                     own if own is not None else scatter, waits, flat, problems)
            continue
        doc = {**stage, "name": scope.prefix + stage["name"],
               "bind": {k: rename(v, scope, f"{at}.bind.{k}", problems) for k, v in stage.get("bind", {}).items()}}
        if own is None and scatter is not None:
            doc["scatter"] = scatter
        if waits:
            doc["after"] = list(dict.fromkeys(waits))
        flat.append((at, doc))


def rename_results(results: dict, stages: list[dict]) -> tuple[dict, list[Problem]]:
    """An analysis's results with ``$steps.OUTER.INNER.OUTPUT`` made to name flattened stages."""
    problems: list[Problem] = []
    scope = _Scope(stages, "", None)
    renamed = {section: {name: rename(value, scope, f"results.{section}.{name}", problems)
                         for name, value in (results.get(section) or {}).items()}
               for section in ("values", "files") if section in results}
    return {**results, **renamed}, problems
