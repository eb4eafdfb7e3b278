"""The spec forms real workflows need: script processes, outputs in sub-folders, folder outputs.

Each runs for real, on the host and under Docker, on the toy analysis with two
stages added: ``describe`` (a bash script writing into sub-folders and a folder
of plots) and ``count`` (a Python script reading that folder). Request values
full of shell and Python syntax must arrive as data.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from recast import execution, images
from recast import request as request_mod
from recast.errors import ExecutionError
from recast.validate import check, load_analysis

ENVIRONMENT = """\
environment:
  kind: image
  image: toy
  resources: {cores: 1, memory: 256MiB, time_limit: 60s}
"""

DESCRIBE = """\
schema: recast/template/1.1.0
name: describe
parameters:
  label: {type: string}
  x: {type: number}
process:
  kind: script
  interpreter: bash
  script: |
    set -eu
    mkdir -p {outdir}/fit/plots
    printf '%s' {label} > {outdir}/fit/label.txt
    printf '{{"x": %s}}' {x} > {outdir}/fit/result.json
    for i in 1 2 3; do echo "plot $i" > {outdir}/fit/plots/p$i.txt; done
    if [ {label} = link ]; then ln -s /etc/hostname {outdir}/fit/plots/evil; fi
""" + ENVIRONMENT + """outputs:
  files:
    label: {path: fit/label.txt}
    result: {path: fit/result.json}
    plots: {path: fit/plots, directory: true}
  values:
    x: {file: result, pointer: /x}
"""

COUNT = """\
schema: recast/template/1.1.0
name: count
parameters:
  plots: {type: file}
  label: {type: string}
process:
  kind: script
  interpreter: python3
  script: |
    import json, os
    names = sorted(n for n in os.listdir({plots}) if not n.startswith("."))  # Snakemake adds a marker
    json.dump({{"n": len(names), "label": {label}}}, open(os.path.join({outdir}, "n.json"), "w"))
""" + ENVIRONMENT + """outputs:
  files: {counted: n.json}
  values:
    n: {file: counted, pointer: /n}
    label: {file: counted, pointer: /label}
"""

def with_templates(toy: Path, **texts: str) -> dict:
    """Write templates into the toy entry, declare them in its spec; the spec, for the caller to extend."""
    spec = yaml.safe_load((toy / "analysis.yaml").read_text())
    for name, text in texts.items():
        (toy / "templates" / f"{name}.yaml").write_text(text)
        spec["templates"][name] = f"templates/{name}.yaml"
    return spec


HOSTILE_LABELS = ["one; touch /tmp/recast-pwned", "$(id) `id` ${HOME}", "it's \"quoted\" {x} \\n"]


@pytest.fixture
def forms(toy):
    """The toy analysis with the describe and count stages, and a request whose labels are hostile."""
    spec = with_templates(toy, describe=DESCRIBE, count=COUNT)
    spec["workflow"]["stages"] += [
        {"name": "describe", "template": "describe", "scatter": {"over": "$request.points"},
         "bind": {"label": "$item.label", "x": "$item.x"}},
        {"name": "count", "template": "count", "scatter": {"over": "$request.points"},
         "bind": {"plots": "$steps.describe.plots", "label": "$item.label"}},
    ]
    spec["results"]["values"].update(xs="$steps.describe.x", plot_counts="$steps.count.n",
                                     labels="$steps.count.label")
    spec["results"]["files"].update(plots="$steps.describe.plots")
    (toy / "analysis.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    request = toy / "requests" / "hostile.yaml"
    request.write_text(yaml.safe_dump({
        "schema": "recast/request/1.0.0", "analysis": "toy",
        "parameters": {"points": [{"x": i + 1, "label": label, "events": "data/a.txt"}
                                  for i, label in enumerate(HOSTILE_LABELS)]}}))
    return toy


def run(toy, run_dir: Path, environment: str, request: Path):
    analysis = load_analysis(toy)
    if environment == "docker":
        images.build(analysis)
        analysis = load_analysis(toy)
    return execution.run(analysis, request_mod.load(analysis, request), run_dir, environment=environment, cores=2)


@pytest.mark.parametrize("environment", ["host", pytest.param("docker", marks=pytest.mark.docker)])
def test_scripts_sub_folder_and_folder_outputs_run_and_request_values_stay_data(forms, tmp_path, environment):
    assert check(forms)[1] == []
    Path("/tmp/recast-pwned").unlink(missing_ok=True)
    run_dir = tmp_path / "run"
    run(forms, run_dir, environment, forms / "requests" / "hostile.yaml")
    results = json.loads((run_dir / "results.json").read_text())["values"]
    assert results["xs"] == [1, 2, 3] and results["plot_counts"] == [3, 3, 3]
    assert results["labels"] == HOSTILE_LABELS, "a Python literal, never code"
    for branch, label in enumerate(HOSTILE_LABELS):
        assert (run_dir / "steps" / f"describe__{branch}" / "fit" / "label.txt").read_text() == label
    assert not Path("/tmp/recast-pwned").exists()
    files = json.loads((run_dir / "results.json").read_text())["files"]
    assert files["plots[0]"]["directory"] is True and files["plots[0]"]["path"] == "steps/describe__0/fit/plots"
    from recast.results import verify

    assert verify(run_dir) == []
    (run_dir / "steps" / "describe__1" / "fit" / "plots" / "p2.txt").write_text("changed")
    assert any("plots" in problem for problem in verify(run_dir)), "a folder output is certified as a whole"


@pytest.mark.parametrize("environment", ["host", pytest.param("docker", marks=pytest.mark.docker)])
def test_a_link_inside_a_folder_output_is_refused(forms, tmp_path, environment):
    request = forms / "requests" / "link.yaml"
    request.write_text("schema: recast/request/1.0.0\nanalysis: toy\nparameters:\n  points:\n"
                       "    - {x: 1, label: link, events: data/a.txt}\n")
    with pytest.raises(ExecutionError, match=r"describe__0 left declared output\(s\) that are links, hold links"):
        run(forms, tmp_path / "run", environment, request)
    assert not (tmp_path / "run" / "steps" / "count__0" / "n.json").exists(), "nothing downstream ran on it"


def _problems(toy, template: str, text: str) -> list[str]:
    (toy / "templates" / f"{template}.yaml").write_text(text)
    return [f"{where}: {message}" for _, where, message in check(toy)[1]]


def test_validation_says_what_to_write_instead(forms):
    found = _problems(forms, "describe", DESCRIBE.replace("label: {path: fit/label.txt}", "label: fit/label.txt"))
    assert any(p.startswith("outputs.files.label: 'fit/label.txt': a plain output is a file name directly in the "
                            "job's folder") and "{path: DIR/FILE}" in p for p in found), found
    found = _problems(forms, "describe", DESCRIBE.replace("{path: fit/plots,", "{path: ../plots,"))
    assert any(p.startswith("outputs.files.plots.path: '../plots': a path inside the job's folder") for p in found), found
    found = _problems(forms, "describe", DESCRIBE.replace("{outdir}/fit/label.txt", "{workdir}/fit/label.txt"))
    assert any(p.startswith("process.script: placeholder {workdir} is not a declared parameter") for p in found), found
    found = _problems(forms, "describe", DESCRIBE.replace("interpreter: bash", "interpreter: perl"))
    assert any("process.interpreter: expected one of 'sh', 'bash', 'python3'" in p for p in found), found
    found = _problems(forms, "describe", DESCRIBE.replace("x: {file: result, pointer: /x}", "x: {file: plots, pointer: /x}"))
    assert any(p.startswith("outputs.values.x.file: 'plots' is a folder") for p in found), found
    found = _problems(forms, "describe", DESCRIBE.replace("{path: fit/plots,", "{path: fit/label.txt/more,"))
    assert any("overlaps output" in p for p in found), found


PAIR = """\
schema: recast/template/1.1.0
name: pair
parameters:
  m: {type: number}
  w: {type: number}
process:
  kind: script
  interpreter: python3
  script: |
    import json, os
    json.dump({{"m": {m}, "w": {w}}}, open(os.path.join({outdir}, "pair.json"), "w"))
""" + ENVIRONMENT + """outputs:
  files: {pair: pair.json}
  values:
    m: {file: pair, pointer: /m}
    w: {file: pair, pointer: /w}
"""


@pytest.fixture
def grids(toy):
    """The toy analysis with two more stages: one zips masses with widths, one crosses them."""
    spec = with_templates(toy, pair=PAIR)
    spec["request"]["parameters"].update(masses={"type": "list", "items": {"type": "number"}, "default": []},
                                         widths={"type": "list", "items": {"type": "number"}, "default": []})
    lists = {"m": "$request.masses", "w": "$request.widths"}
    spec["workflow"]["stages"] += [
        {"name": "zipped", "template": "pair", "scatter": {"zip": lists}, "bind": {"m": "$item.m", "w": "$item.w"}},
        {"name": "crossed", "template": "pair", "scatter": {"cartesian": lists}, "bind": {"m": "$item.m", "w": "$item.w"}},
    ]
    spec["results"]["values"].update(zipped="$steps.zipped.m", crossed_m="$steps.crossed.m",
                                     crossed_w="$steps.crossed.w")
    (toy / "analysis.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    return toy


def _grid_request(toy, masses, widths) -> Path:
    document = yaml.safe_load((toy / "requests" / "default.yaml").read_text())
    document["parameters"].update(masses=masses, widths=widths)
    path = toy / "requests" / "grid.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


@pytest.mark.parametrize("environment", ["host", pytest.param("docker", marks=pytest.mark.docker)])
def test_zip_and_cartesian_scatters_make_one_branch_per_pair_and_per_combination(grids, tmp_path, environment):
    assert check(grids)[1] == []
    run(grids, tmp_path / "run", environment, _grid_request(grids, [100, 200], [1.5, 2.5]))
    values = json.loads((tmp_path / "run" / "results.json").read_text())["values"]
    assert values["zipped"] == [100, 200]
    assert list(zip(values["crossed_m"], values["crossed_w"])) == [(100, 1.5), (100, 2.5), (200, 1.5), (200, 2.5)]


def test_zip_of_lists_of_different_lengths_is_refused_before_anything_runs(grids, tmp_path):
    with pytest.raises(Exception, match=r"stage 'zipped' zips lists of different lengths: masses has 2, widths has 1"):
        run(grids, tmp_path / "run", "host", _grid_request(grids, [100, 200], [1.5]))
    assert not (tmp_path / "run" / "steps").exists()


def test_scatter_fields_are_checked(grids):
    spec = (grids / "analysis.yaml").read_text()
    (grids / "analysis.yaml").write_text(spec.replace("m: $item.m\n", "m: $item.mass\n", 1))
    found = [f"{where}: {message}" for _, where, message in check(grids)[1]]
    assert any("$item has the fields m, w here (one per list the stage scatters over), not 'mass'" in p
               for p in found), found
    (grids / "analysis.yaml").write_text(spec.replace("w: $request.widths", "w: $request.nothing", 1))
    found = [f"{where}: {message}" for _, where, message in check(grids)[1]]
    assert any(p.startswith("workflow.stages[2].scatter.zip.w: request parameter 'nothing' is not declared")
               for p in found), found


def test_a_placeholder_in_a_binding_is_refused_not_made_into_a_folder(toy):
    """yadage writes "{workdir}/fitresults" in stage parameters; here that would be literal text."""
    spec = yaml.safe_load((toy / "analysis.yaml").read_text())
    spec["workflow"]["stages"][0]["bind"]["label"] = "{workdir}/submitDir"
    (toy / "analysis.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    found = [f"{where}: {message}" for _, where, message in check(toy)[1]]
    assert any(p.startswith("workflow.stages[0].bind.label: '{workdir}/submitDir' holds {workdir}, but a binding is "
                            "not filled in") and "{outdir}/..." in p for p in found), found


EVIL = "a b;touch /tmp/recast-pwned #'$(touch /tmp/recast-pwned)`touch /tmp/recast-pwned`\"\\ {__import__('os')}"


@pytest.mark.parametrize("interpreter,script", [
    ("bash", "printf '%s\\n' {v}"),
    ("bash", "printf '%s\\n' '{v}'"),
    ("bash", 'printf "%s\\n" "{v}"'),
    ("bash", "printf '%s\\n' pre{v}post"),
    ("bash", "printf '%s\\n' $'{v}'"),
    ("bash", "cat <<EOF\n{v}\nEOF"),
    ("sh", "cat <<'EOF'\n{v}\nEOF"),
    ("sh", "cat <<-END\n\t{v}\n\tEND"),
    ("sh", "x=1 # {v}\nprintf '%s\\n' \"{v}\""),
    ("python3", "print({v})"),
    ("python3", "print('{v}')"),
    ("python3", 'print("""{v}""")'),
    ("python3", "print(f'{v}')"),
    ("python3", "print(r'' + '{v}')"),
])
def test_a_value_is_data_wherever_a_script_puts_it(interpreter, script, tmp_path):
    """Every quoting context of sh and Python, run by the real interpreter: the value comes out intact."""
    import subprocess

    from recast.processes import Script

    Path("/tmp/recast-pwned").unlink(missing_ok=True)
    value = "pre" + EVIL + "post" if "pre{v}post" in script else EVIL
    argv = Script().argv({"interpreter": interpreter, "script": script}, {"v": EVIL})
    out = subprocess.run(argv, capture_output=True, text=True, cwd=tmp_path, timeout=30)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip("\n\t") == value, (argv, out.stdout)
    assert not Path("/tmp/recast-pwned").exists()


def test_a_line_break_is_refused_where_it_could_end_a_here_document(forms, tmp_path):
    from recast.errors import RecastError
    from recast.processes import Script

    with pytest.raises(ValueError, match=r"the value of \{v\} holds a line break, which cannot stand in a here-document"):
        Script().argv({"interpreter": "sh", "script": "cat <<'EOF'\n{v}\nEOF"}, {"v": "x\nEOF\ntouch /tmp/recast-pwned"})
    template = forms / "templates" / "describe.yaml"
    template.write_text(DESCRIBE.replace("set -eu\n", "set -eu\n    cat > {outdir}/note.txt <<'EOF'\n    {label}\n    EOF\n"))
    request = forms / "requests" / "newline.yaml"
    request.write_text(yaml.safe_dump({"schema": "recast/request/1.0.0", "analysis": "toy", "parameters": {
        "points": [{"x": 1, "label": "ok\nEOF\ntouch /tmp/recast-pwned", "events": "data/a.txt"}]}}))
    with pytest.raises(RecastError, match=r"template 'describe': the value of \{label\} holds a line break"):
        run(forms, tmp_path / "run", "host", request)
    assert not (tmp_path / "run" / "steps").exists(), "refused while planning: nothing ran"


BATCH_SUM = """\
schema: recast/template/1.1.0
name: batch_sum
parameters:
  ms: {type: list, items: {type: number}}
process:
  kind: script
  interpreter: python3
  script: |
    import json, os
    json.dump({{"n": len({ms}), "total": sum({ms})}}, open(os.path.join({outdir}, "sum.json"), "w"))
""" + ENVIRONMENT + """\
outputs:
  files: {sums: sum.json}
  values:
    n: {file: sums, pointer: /n}
    total: {file: sums, pointer: /total}
"""


@pytest.mark.parametrize("environment", ["host", pytest.param("docker", marks=pytest.mark.docker)])
def test_a_batched_scatter_runs_several_elements_per_job(grids, tmp_path, environment):
    spec = with_templates(grids, batch_sum=BATCH_SUM)
    spec["workflow"]["stages"].append({"name": "batched", "template": "batch_sum",
                                       "scatter": {"over": "$request.masses", "batch": 2}, "bind": {"ms": "$item"}})
    spec["results"]["values"].update(batch_sizes="$steps.batched.n", batch_totals="$steps.batched.total")
    (grids / "analysis.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    assert check(grids)[1] == []
    run(grids, tmp_path / "run", environment, _grid_request(grids, [100, 200, 300], [1.5, 2.5, 3.5]))
    values = json.loads((tmp_path / "run" / "results.json").read_text())["values"]
    assert values["batch_sizes"] == [2, 1] and values["batch_totals"] == [300, 300]
    assert sorted(p.name for p in (tmp_path / "run" / "steps").glob("batched__*")) == ["batched__0", "batched__1"]

    spec["workflow"]["stages"][-1]["scatter"]["batch"] = 2
    spec["workflow"]["stages"][2]["scatter"] = {"over": "$request.masses", "batch": 5}
    spec["workflow"]["stages"][2]["bind"] = {"m": "$item", "w": 1.0}
    (grids / "analysis.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    found = [f"{where}: {message}" for _, where, message in check(grids)[1]]
    assert any(p.startswith("workflow.stages[2].bind.m: stage 'zipped' runs batches of 5 elements, so $item is a "
                            "list there: parameter 'm' must be a list, not number") for p in found), found


@pytest.fixture
def nested(toy):
    """The toy analysis with a sub-workflow per point, holding a stage and a sub-workflow of its own."""
    spec = yaml.safe_load((toy / "analysis.yaml").read_text())
    point = {"script": "$entry/code/square.py", "label": "$item.label", "events": "$item.events"}
    spec["workflow"]["stages"] += [
        {"name": "per_point", "scatter": {"over": "$request.points"}, "workflow": {"stages": [
            {"name": "sq", "template": "square", "bind": {**point, "x": "$item.x"}},
            {"name": "again", "workflow": {"stages": [
                {"name": "sq2", "template": "square", "bind": {**point, "x": "$steps.sq.y"}}]}}]}},
        {"name": "deep_total", "template": "total", "after": ["per_point"],
         "bind": {"script": "$entry/code/total.py", "squares": "$steps.per_point.again.sq2.result"}},
    ]
    spec["results"]["values"].update(deep="$steps.per_point.again.sq2.y", deep_total="$steps.deep_total.total")
    (toy / "analysis.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    return toy


@pytest.mark.parametrize("environment", ["host", pytest.param("docker", marks=pytest.mark.docker)])
def test_sub_workflows_two_deep_run_once_per_branch(nested, tmp_path, environment):
    assert check(nested)[1] == []
    stages = [s.name for s in load_analysis(nested).stages]
    assert stages == ["square", "total", "per_point_sq", "per_point_again_sq2", "deep_total"]
    run(nested, tmp_path / "run", environment, nested / "requests" / "default.yaml")
    values = json.loads((tmp_path / "run" / "results.json").read_text())["values"]
    assert values["squares"] == [2, 6, 13.25]
    # y = x² + offset + lines; the inner stage squares its own branch's y: y² + (y - x²)
    expected = [y * y + (y - x * x) for x, y in zip([1, 2, 3.5], [2, 6, 13.25])]
    assert values["deep"] == expected, "each branch's inner chain ran on its own branch's values"
    assert values["deep_total"] == sum(expected)
    record = json.loads((tmp_path / "run" / "logs" / "per_point_again_sq2__2.json").read_text())
    assert record["exit_code"] == 0


def test_sub_workflow_references_are_checked(nested):
    spec = (nested / "analysis.yaml").read_text()
    cases = {
        "$steps.per_point.again.sq2.result": ("$steps.per_point.again.result",
                                             "$steps.per_point.again.result: per_point.again is a sub-workflow: "
                                             "name one of its stages"),
        "deep: $steps.per_point.again.sq2.y": ("deep: $steps.per_point.nothing.sq2.y",
                                              "per_point has no stage 'nothing'"),
    }
    for old, (new, message) in cases.items():
        (nested / "analysis.yaml").write_text(spec.replace(old, new))
        found = [f"{where}: {m}" for _, where, m in check(nested)[1]]
        assert any(message in p for p in found), found
    doc = yaml.safe_load(spec)
    doc["workflow"]["stages"][2]["workflow"]["stages"][0]["scatter"] = {"over": "$request.points"}
    (nested / "analysis.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    found = [f"{where}: {m}" for _, where, m in check(nested)[1]]
    assert any(p.startswith("workflow.stages[2].workflow.stages[0].scatter: a scatter inside a scattered "
                            "sub-workflow") for p in found), found


def test_the_reana_export_refuses_commands_that_need_values_known_only_at_run_time(nested, tmp_path):
    from recast.errors import RecastError
    from recast.export.reana import export

    analysis = load_analysis(nested)
    with pytest.raises(RecastError, match=r"per_point_again_sq2\.bind\.x take another stage's output values"):
        export(analysis, request_mod.load(analysis, nested / "requests" / "default.yaml"), tmp_path / "out")
    assert not (tmp_path / "out").exists()


FITS = """\
schema: recast/template/1.1.0
name: fits
parameters:
  label: {type: string}
process:
  kind: script
  interpreter: bash
  script: |
    set -eu
    mkdir -p {outdir}/fit/sub
    for region in SR1 SR2 CR; do printf '{{"region": "%s"}}' $region > {outdir}/fit/$region.json; done
    echo not json > {outdir}/fit/notes.txt
    if [ {label} = link ]; then ln -s /etc/hostname {outdir}/fit/evil.json; fi
""" + ENVIRONMENT + """\
outputs:
  files:
    fits: {glob: "fit/*.json"}
"""

COLLECT = """\
schema: recast/template/1.1.0
name: collect
parameters:
  fits: {type: list, items: {type: file}}
process:
  kind: script
  interpreter: python3
  script: |
    import json, os
    regions = [json.load(open(path))["region"] for path in {fits}]
    json.dump({{"regions": regions}}, open(os.path.join({outdir}, "regions.json"), "w"))
""" + ENVIRONMENT + """\
outputs:
  files: {table: regions.json}
  values:
    regions: {file: table, pointer: /regions}
"""


@pytest.fixture
def globbed(toy):
    spec = with_templates(toy, fits=FITS, collect=COLLECT)
    over = {"over": "$request.points"}
    spec["workflow"]["stages"] += [
        {"name": "fits", "template": "fits", "scatter": over, "bind": {"label": "$item.label"}},
        {"name": "collect", "template": "collect", "scatter": over, "bind": {"fits": "$steps.fits.fits"}}]
    spec["results"]["values"]["regions"] = "$steps.collect.regions"
    (toy / "analysis.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    return toy


@pytest.mark.parametrize("environment", ["host", pytest.param("docker", marks=pytest.mark.docker)])
def test_a_glob_output_is_the_list_of_files_it_matched_and_they_reach_the_next_stage(globbed, tmp_path, environment):
    assert check(globbed)[1] == []
    run_dir = tmp_path / "run"
    run(globbed, run_dir, environment, globbed / "requests" / "default.yaml")
    values = json.loads((run_dir / "results.json").read_text())["values"]
    assert values["regions"] == [["CR", "SR1", "SR2"]] * 3
    record = json.loads((run_dir / "logs" / "fits__0.json").read_text())
    assert {"fit/CR.json", "fit/SR1.json", "fit/SR2.json"} <= set(record["outputs"]), "each match is certified"
    from recast.results import verify

    assert verify(run_dir) == []

    request = globbed / "requests" / "link.yaml"
    request.write_text("schema: recast/request/1.0.0\nanalysis: toy\nparameters:\n  points:\n"
                       "    - {x: 1, label: link, events: data/a.txt}\n")
    with pytest.raises(ExecutionError, match=r"glob output 'fits' matched fit/evil.json, a link or not a regular file"):
        run(globbed, tmp_path / "link", environment, request)
    assert not (tmp_path / "link" / "steps" / "collect__0" / "regions.json").exists()


def test_glob_outputs_are_bound_to_lists_of_files_only(globbed):
    spec = (globbed / "analysis.yaml").read_text()
    (globbed / "analysis.yaml").write_text(spec.replace("regions: $steps.collect.regions", "regions: $steps.fits.fits"))
    found = [f"{where}: {m}" for _, where, m in check(globbed)[1]]
    assert any("results.values.regions: stage 'fits' declares no output value 'fits'" in p
               or "the files a glob matched cannot be a result yet" in p for p in found), found
    (globbed / "templates" / "collect.yaml").write_text(COLLECT.replace("fits: {type: list, items: {type: file}}",
                                                                        "fits: {type: list, items: {type: string}}"))
    (globbed / "analysis.yaml").write_text(spec)
    found = [f"{where}: {m}" for _, where, m in check(globbed)[1]]
    assert any("is the list of files its glob matched: parameter 'fits' must be a list of files" in p
               for p in found), found


REGIONS = """\
schema: recast/template/1.1.0
name: regions
parameters: {}
process:
  kind: script
  interpreter: python3
  script: |
    import json, os
    os.makedirs(os.path.join({outdir}, "fit"))
    for region in ("SR1", "SR2", "CR"):
        json.dump({{"region": region}}, open(os.path.join({outdir}, "fit", region + ".json"), "w"))
    json.dump({{"regions": ["SR1", "SR2", "CR", "VR"]}}, open(os.path.join({outdir}, "list.json"), "w"))
""" + ENVIRONMENT + """\
outputs:
  files:
    listing: list.json
    fits: {glob: "fit/*.json"}
  values:
    regions: {file: listing, pointer: /regions}
"""

ONE_REGION = """\
schema: recast/template/1.1.0
name: one_region
parameters:
  region: {type: string}
process:
  kind: script
  interpreter: sh
  script: |
    printf '{{"n": %s}}' $(printf %s {region} | wc -c) > {outdir}/n.json
""" + ENVIRONMENT + """\
outputs:
  files: {counted: n.json}
  values:
    n: {file: counted, pointer: /n}
"""


@pytest.fixture
def runtime_lists(toy):
    spec = with_templates(toy, regions=REGIONS, one_region=ONE_REGION, collect=COLLECT)
    spec["workflow"]["stages"] += [
        {"name": "regions", "template": "regions"},
        {"name": "per_region", "template": "one_region", "scatter": {"over": "$steps.regions.regions"},
         "bind": {"region": "$item"}},
        {"name": "per_fit", "template": "collect", "scatter": {"over": "$steps.regions.fits", "batch": 2},
         "bind": {"fits": "$item"}},
    ]
    spec["results"]["values"].update(lengths="$steps.per_region.n", batches="$steps.per_fit.regions")
    (toy / "analysis.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    return toy


@pytest.mark.parametrize("environment", ["host", pytest.param("docker", marks=pytest.mark.docker)])
def test_a_scatter_over_a_list_another_stage_leaves_is_planned_once_it_is_known(runtime_lists, tmp_path, environment):
    assert check(runtime_lists)[1] == []
    analysis = load_analysis(runtime_lists)
    dry = execution.dry_run(analysis, request_mod.load(analysis, runtime_lists / "requests" / "default.yaml"),
                            tmp_path / "dry", "host")
    assert dry.pending == ["per_region", "per_fit"] and not any(j.stage == "per_region" for j in dry.jobs)
    run_dir = tmp_path / "run"
    run(runtime_lists, run_dir, environment, runtime_lists / "requests" / "default.yaml")
    values = json.loads((run_dir / "results.json").read_text())["values"]
    assert values["lengths"] == [3, 3, 2, 2], "one branch per element of the list the regions stage left"
    assert values["batches"] == [["CR", "SR1"], ["SR2"]], "the glob's files, two per job, mounted read-only"
    plan = json.loads((run_dir / ".recast" / "plan.json").read_text())
    assert plan["pending"] == [] and sum(j["stage"] == "per_region" for j in plan["jobs"]) == 4
    again = run(runtime_lists, run_dir, environment, runtime_lists / "requests" / "default.yaml")
    assert again.jobs_run == [], "a second run plans the same jobs and runs nothing"


def test_a_runtime_scatter_is_checked(runtime_lists):
    spec = (runtime_lists / "analysis.yaml").read_text()
    (runtime_lists / "analysis.yaml").write_text(spec.replace("$steps.regions.regions", "$steps.regions.listing"))
    found = [f"{where}: {m}" for _, where, m in check(runtime_lists)[1]]
    assert any("has no output value or glob 'listing' to scatter over (a file is one file, not a list)" in p
               for p in found), found
    (runtime_lists / "analysis.yaml").write_text(spec.replace("$steps.regions.regions", "$steps.square.y"))
    found = [f"{where}: {m}" for _, where, m in check(runtime_lists)[1]]
    assert any("stage 'square' is itself scattered" in p for p in found), found


WHERE = """\
schema: recast/template/1.1.0
name: where
parameters: {}
process:
  kind: script
  interpreter: sh
  script: pwd > {outdir}/pwd.txt
environment:
  kind: image
  image: toy
  workdir: WORKDIR
outputs:
  files: {pwd: pwd.txt}
"""


@pytest.mark.parametrize("environment", ["host", pytest.param("docker", marks=pytest.mark.docker)])
def test_a_template_workdir_is_where_its_command_starts(toy, tmp_path, environment):
    workdir = "/usr/share" if environment == "docker" else str(tmp_path)
    spec = with_templates(toy, where=WHERE.replace("WORKDIR", workdir))
    spec["workflow"]["stages"].append({"name": "where", "template": "where"})
    (toy / "analysis.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    assert check(toy)[1] == []
    run(toy, tmp_path / "run", environment, toy / "requests" / "default.yaml")
    assert (tmp_path / "run" / "steps" / "where" / "pwd.txt").read_text().strip() == workdir
    (toy / "templates" / "where.yaml").write_text(WHERE.replace("WORKDIR", "/opt/../etc"))
    assert any(where == "environment.workdir" for _, where, _ in check(toy)[1])
