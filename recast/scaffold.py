"""``recast new ID``: a minimal two-step catalog entry to start preserving an analysis from.

The entry is complete and valid as written: a selection that runs once per
signal (a scatter) and a combination of all of them (a gather), their code,
a Dockerfile on recast's local base image, an example request with its input
files, and acceptance checks. The author replaces the code and the spec
with their analysis's; ``docs/authoring.md`` walks through it.
"""

from __future__ import annotations

import re
from pathlib import Path

from recast.errors import RecastError
from recast.importers import install

ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")

_ENVIRONMENT = """\
environment:
  kind: image
  image: analysis
  resources: {cores: 1, memory: 256MiB, time_limit: 5m}
"""

FILES = {
    "analysis.yaml": """\
schema: recast/analysis/1.1.0
id: {id}
version: 0.1.0
title: "{id}: describe the search in one line"
description: >
  What the analysis selects, and what it reports. Replace this text, the code
  in code/ and these specs with your analysis's.
metadata: {{collaboration: "", luminosity_fb: 139, sqrt_s_tev: 13, tags: [new]}}
images:
  analysis:
    tag: {id}/analysis:0.1.0
    build: {{context: ., dockerfile: Dockerfile}}
templates:
  select: templates/select.yaml
  combine: templates/combine.yaml
workflow:
  stages:
    - name: select                       # once per signal point
      template: select
      scatter: {{over: $request.signals}}
      bind: {{events: $item.events, cross_section_pb: $item.cross_section_pb, luminosity_fb: $request.luminosity_fb}}
    - name: combine                      # once, over every point's yield
      template: combine
      bind: {{yields: $steps.select.yields}}
request:
  parameters:
    luminosity_fb: {{type: number, default: 139, exclusiveMinimum: 0}}
    signals:
      type: list
      minItems: 1
      items:
        type: object
        required: [name, events, cross_section_pb]
        properties:
          name: {{type: string}}
          events: {{type: file, suffixes: [.txt]}}
          cross_section_pb: {{type: number, exclusiveMinimum: 0}}
results:
  values:
    efficiency: $steps.select.efficiency
    signal_yield: $steps.select.signal_yield
    total_yield: $steps.combine.total
  files:
    table: $steps.combine.table
checks: checks.yaml
examples:
  default:
    request: examples/default.yaml
    description: two signal points
    reference: examples/default.results.json
    tolerances: {{relative: 1.0e-9}}
""",
    "templates/select.yaml": """\
schema: recast/template/1.1.0
name: select
description: the fraction of a signal's events that pass the cut, and its yield
parameters:
  events: {type: file}
  cross_section_pb: {type: number}
  luminosity_fb: {type: number}
process:
  kind: command
  argv: [python3, /opt/analysis/select.py, --events, "{events}", --cross-section-pb, "{cross_section_pb}",
         --luminosity-fb, "{luminosity_fb}", --out, "{outdir}/yields.json"]
""" + _ENVIRONMENT + """outputs:
  files: {yields: yields.json}
  values:
    efficiency: {file: yields, pointer: /efficiency}
    signal_yield: {file: yields, pointer: /signal_yield}
""",
    "templates/combine.yaml": """\
schema: recast/template/1.1.0
name: combine
description: every point's yield in one table, and their sum
parameters:
  yields: {type: list, items: {type: file}}
process:
  kind: command
  argv: [python3, /opt/analysis/combine.py, --out, "{outdir}/table.json", "{yields}"]
""" + _ENVIRONMENT + """outputs:
  files: {table: table.json}
  values:
    total: {file: table, pointer: /total}
""",
    "code/select.py": '''\
"""Select events: here, a cut on the leading-jet pT (one value per line of the events file, in GeV)."""
import argparse
import json

parser = argparse.ArgumentParser()
parser.add_argument("--events", required=True)
parser.add_argument("--cross-section-pb", type=float, required=True)
parser.add_argument("--luminosity-fb", type=float, required=True)
parser.add_argument("--out", required=True)
args = parser.parse_args()
pts = [float(line) for line in open(args.events) if line.strip()]
efficiency = sum(pt > 100.0 for pt in pts) / len(pts)
print(f"{len(pts)} events, efficiency {efficiency:.3f}")
with open(args.out, "w") as out:
    json.dump({"events": len(pts), "efficiency": efficiency,
               "signal_yield": args.cross_section_pb * 1000.0 * args.luminosity_fb * efficiency}, out)
''',
    "code/combine.py": '''\
"""Combine: every point's yield in one table, and the total."""
import argparse
import json

parser = argparse.ArgumentParser()
parser.add_argument("--out", required=True)
parser.add_argument("yields", nargs="+")
args = parser.parse_args()
rows = [json.load(open(path)) for path in args.yields]
with open(args.out, "w") as out:
    json.dump({"rows": rows, "total": sum(row["signal_yield"] for row in rows)}, out)
''',
    "Dockerfile": """\
# Built on recast's local base image (Debian with python3), or another with --base.
ARG BASE=python:3.11-slim
FROM ${BASE}
COPY code/ /opt/analysis/
""",
    "checks.yaml": """\
schema: recast/checks/1.1.0
runs:
  default:
    files: [steps/combine/table.json]
steps:
  select:
    description: one point, on a stored events file
    template: select
    fixtures: fixtures
    parameters: {events: events.txt, cross_section_pb: 0.01, luminosity_fb: 139}
    expect:
      files: [yields.json]
      values: {efficiency: 0.5}
""",
    "fixtures/events.txt": "50\n150\n90\n210\n",
    "examples/default.yaml": """\
schema: recast/request/1.1.0
analysis: {id}
parameters:
  signals:
    - {{name: A, events: a.txt, cross_section_pb: 0.01}}
    - {{name: B, events: b.txt, cross_section_pb: 0.002}}
""",
    "examples/a.txt": "40\n120\n250\n95\n180\n",
    "examples/b.txt": "310\n20\n140\n",
}


FORMATTED = ("analysis.yaml", "examples/default.yaml")  # str.format with the id: their braces are doubled


def new(catalog: Path, entry_id: str) -> Path:
    """Write the scaffold as ``catalog/entry_id`` (refused if it exists); it validates as written."""
    if not ID.match(entry_id):
        raise RecastError(f"{entry_id!r} is not an analysis id: lower-case letters, digits, - and _, "
                          "starting with a letter or digit, at most 64 characters")

    def write(folder: Path) -> None:
        for relative, text in FILES.items():
            path = folder / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text.format(id=entry_id) if relative in FORMATTED else text)

    return install(catalog, entry_id, write)
