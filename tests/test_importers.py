"""Importing the published workflows of ../shared/workflows-in-the-wild/, and running two of them.

Every yadage workflow there is imported (directly, through its reana.yaml, or
through its recast-atlas catalogue entry) and must validate; what cannot be
imported must be refused with a report that names the feature and file, and
nothing written. The RooFit demo and the ATLAS RECAST demo then run end to
end under Docker, on stand-in images that do the same file-level work
(tests/fixtures/standins/README.md), and pass `recast test` against the
reference their first run saved.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import FIXTURES, ROOT

WILD = ROOT.parent / "shared" / "workflows-in-the-wild"
ATLAS_DEMO = WILD / "reana-demo-atlas-recast"
ROOFIT = WILD / "reana-demo-root6-roofit"
RECAST_ATLAS = WILD / "recast-atlas" / "src" / "recastatlas" / "data"
STANDINS = {"root6": "docker.io/reanahub/reana-env-root6:6.18.04",
            "atlas-eventselection": "docker.io/reanahub/reana-demo-atlas-recast-eventselection:1.0",
            "atlas-statanalysis": "docker.io/reanahub/reana-demo-atlas-recast-statanalysis:1.0"}


def recast(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "recast", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=600)


def imported(catalog: Path, kind: str, source: Path, *extra: str) -> dict:
    done = recast("import", kind, str(source), "--catalog", str(catalog), "--json", *extra)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def load(entry: Path, relative: str):
    return yaml.safe_load((entry / relative).read_text())


def test_the_atlas_demo_imports_with_its_scripts_sub_folder_outputs_and_pulled_images(tmp_path):
    inputs = ATLAS_DEMO / "workflow" / "test_inputs"
    summary = imported(tmp_path, "yadage", ATLAS_DEMO / "workflow" / "workflow.yml",
                       "--inputs", str(inputs / "inp1.yml"), "--inputs", str(inputs / "inp2.yml"))
    entry = Path(summary["path"])
    assert summary["id"] == "reana-demo-atlas-recast"
    analysis = load(entry, "analysis.yaml")
    assert analysis["images"]["reana_demo_atlas_recast_statanalysis"] == {
        "pull": "docker.io/reanahub/reana-demo-atlas-recast-statanalysis:1.0"}
    assert analysis["request"]["parameters"] == {"did": {"type": "integer"}, "xsec_in_pb": {"type": "number"},
                                                 "dxaod_file": {"type": "string"}}
    assert sorted(analysis["examples"]) == ["inp1", "inp2"]
    selection = load(entry, "templates/eventselection.yaml")
    assert selection["process"]["interpreter"] == "bash"
    assert "myEventSelection {outdir}/submitDir recast_inputs.txt" in selection["process"]["script"]
    assert selection["outputs"]["files"] == {"histfile": {"path": "submitDir/hist-sample.root"}}
    assert load(entry, "templates/statanalysis.yaml")["outputs"]["files"]["limit"] == {
        "path": "fitresults/limit_data.json"}
    stages = analysis["workflow"]["stages"]
    assert stages[1]["bind"]["signal_file"] == "$steps.eventselection.histfile"
    assert load(entry, "examples/inp1.yaml")["parameters"]["did"] == 404958
    assert any("kubernetes_uid ignored" in note["note"] for note in summary["notes"])


def test_roofit_imports_through_its_reana_yaml_with_its_macros_as_example_files(tmp_path):
    entry = Path(imported(tmp_path, "reana", ROOFIT / "reana-yadage.yaml", "--id", "roofit")["path"])
    analysis = load(entry, "analysis.yaml")
    assert analysis["request"]["parameters"] == {"events": {"type": "integer"}, "gendata": {"type": "file"},
                                                 "fitdata": {"type": "file"}}
    assert (entry / "examples" / "code" / "gendata.C").read_bytes() == (ROOFIT / "code" / "gendata.C").read_bytes()
    assert load(entry, "templates/gendata.yaml")["process"]["script"] == \
        "root -b -q '{gendata}({events},\"{outdir}/data.root\")'"


def test_recast_atlas_entries_import_with_metadata_examples_and_results(tmp_path):
    hello = Path(imported(tmp_path, "recast-atlas", RECAST_ATLAS / "templates" / "helloworld" / "recast.yml")["path"])
    assert load(hello, "templates/hello_world.yaml")["process"] == {
        "kind": "script", "interpreter": "sh", "script": "echo Hello my Name is {name} | tee {outdir}/hello_world.txt"}
    rome = Path(imported(tmp_path, "recast-atlas", RECAST_ATLAS / "catalogue" / "examples_rome.yml",
                         "--toplevel", str(ATLAS_DEMO))["path"])
    analysis = load(rome, "analysis.yaml")
    assert analysis["id"] == "examples-rome" and analysis["title"] == "Example from ATLAS Exotics Rome Workshop 2018"
    assert analysis["metadata"]["contact"] == "Lukas Heinrich"
    assert analysis["results"]["files"] == {"cls_95_based_upper_limit_on_poi": "$steps.statanalysis.limit",
                                            "cls_95_at_nominal_poi": "$steps.statanalysis.nomsig"}
    assert load(rome, "examples/newsignal.yaml")["parameters"]["xsec_in_pb"] == 0.001735


# examples_rome's workflow is the ATLAS demo, imported from its local copy above; the others' are not here.
@pytest.mark.parametrize("source", sorted(p for p in (RECAST_ATLAS / "catalogue").glob("*.yml")
                                          if p.stem != "examples_rome"), ids=lambda p: p.stem)
def test_catalogue_entries_whose_workflow_is_elsewhere_are_refused_and_nothing_is_written(source, tmp_path):
    done = recast("import", "recast-atlas", str(source), "--catalog", str(tmp_path / "catalog"))
    assert done.returncode == 1
    assert "is a remote repository, which cannot be fetched here: give a local copy of it with --toplevel" \
        in done.stderr
    assert not (tmp_path / "catalog").exists() or not any((tmp_path / "catalog").iterdir())


def test_what_cannot_be_translated_is_reported_per_feature_and_file_and_nothing_is_written(tmp_path):
    workflow = tmp_path / "src" / "workflow.yml"
    workflow.parent.mkdir()
    workflow.write_text(yaml.safe_dump({"stages": [
        {"name": "a", "dependencies": ["init"], "scheduler": {
            "scheduler_type": "singlestep-stage", "parameters": {"out": "{workdir}/x"},
            "step": {"process": {"process_type": "interpolated-script-cmd", "interpreter": "perl", "script": "x"},
                     "publisher": {"publisher_type": "fromyaml-pub", "yamlfile": "{workdir}/x.yml"},
                     "environment": {"environment_type": "docker-encapsulated", "image": "busybox",
                                     "resources": ["CVMFS", "FPGA"]}}}},
        {"name": "b", "dependencies": ["a"], "scheduler": {"scheduler_type": "singlestep-stage",
                                                          "workflow": {"stages": []}}}]}))
    done = recast("import", "yadage", str(workflow), "--catalog", str(tmp_path / "catalog"))
    assert done.returncode == 1
    for feature in ("stages[0].scheduler.step.process.interpreter: interpreter 'perl'",
                    "stages[0].scheduler.step.publisher.publisher_type: publisher 'fromyaml-pub'",
                    "stages[0].scheduler.step.environment.resources: the resource 'FPGA'",
                    "stages[1].scheduler.workflow: a sub-workflow without stages"):
        assert f"{workflow}: {feature}" in done.stderr, done.stderr
    assert "(nothing was written)" in done.stderr
    assert not (tmp_path / "catalog").exists()


def test_a_ref_outside_the_toplevel_is_refused(tmp_path):
    (tmp_path / "secret.yml").write_text("x: 1\n")
    workflow = tmp_path / "a" / "b" / "c" / "d" / "workflow.yml"
    workflow.parent.mkdir(parents=True)
    workflow.write_text("stages:\n  - {name: s, dependencies: [init], scheduler: {scheduler_type: singlestep-stage, "
                        "parameters: {}, step: {$ref: '../../../../secret.yml#x'}}}\n")
    done = recast("import", "yadage", str(workflow), "--catalog", str(tmp_path / "catalog"),
                  "--toplevel", str(workflow.parent))
    assert done.returncode == 1 and "not found under" in done.stderr, done.stderr


@pytest.fixture(scope="module")
def standins():
    """The stand-in images, tagged with the published references (see tests/fixtures/standins/README.md)."""
    import docker

    api = docker.from_env().api
    for folder, reference in STANDINS.items():
        for chunk in api.build(path=str(FIXTURES / "standins" / folder), tag=reference, rm=True, decode=True,
                               buildargs={"BASE": "recast/base:bookworm"}, network_mode="host"):
            assert "error" not in chunk, chunk
    return STANDINS


def run_and_test(catalog: Path, entry_id: str, example: str, workdir: Path) -> Path:
    common = ["--catalog", str(catalog)]
    for args in (["images", "build", entry_id], ["run", entry_id, "--example", example, "--workdir", str(workdir)],
                 ["test", entry_id, "--update-reference", "--workdir", str(catalog.parent / "update")],
                 ["test", entry_id, "--workdir", str(catalog.parent / "test")]):
        done = recast(*args, *common)
        assert done.returncode == 0, (args, done.stdout[-3000:], done.stderr[-3000:])
    assert f"passed {entry_id} example:{example}" in done.stdout + done.stderr, done.stdout + done.stderr
    return workdir


@pytest.mark.docker
def test_the_roofit_demo_runs_end_to_end_and_passes_its_test(standins, tmp_path):
    summary = imported(tmp_path / "catalog", "reana", ROOFIT / "reana-yadage.yaml", "--id", "roofit")
    # REANA's Gherkin tests, where they map: files of the workspace and lines of the job logs
    checks = load(Path(summary["path"]), "checks.yaml")["runs"]["default"]
    assert {"steps/gendata/data.root", "steps/fitdata/plot.png", "inputs/code/gendata.C"} <= set(checks["files"])
    assert len(checks["logs"]["logs/gendata.log"]) == 2 and len(checks["logs"]["logs/fitdata.log"]) == 1
    assert any("sha256 checksum" in note["where"] and "not translated" in note["note"] for note in summary["notes"])
    run_dir = run_and_test(tmp_path / "catalog", "roofit", "default", tmp_path / "run")
    plot = run_dir / "steps" / "fitdata" / "plot.png"
    assert plot.read_bytes().startswith(b"\x89PNG")
    assert "fitdata: mean = " in (run_dir / "logs" / "fitdata.log").read_text()
    assert len(json.loads((run_dir / "steps" / "gendata" / "data.root").read_text())["events"]) == 20000
    lock = json.loads((tmp_path / "catalog" / "roofit" / "images.lock.json").read_text())["images"]
    assert lock["reana_env_root6"]["pulled"] is True and lock["reana_env_root6"]["id"].startswith("sha256:")


@pytest.mark.docker
def test_the_atlas_demo_runs_end_to_end_with_results_in_the_published_shape(standins, tmp_path):
    imported(tmp_path / "catalog", "recast-atlas", RECAST_ATLAS / "catalogue" / "examples_rome.yml",
             "--toplevel", str(ATLAS_DEMO))
    run_dir = run_and_test(tmp_path / "catalog", "examples-rome", "default", tmp_path / "run")
    results = json.loads((run_dir / "results.json").read_text())
    limit = run_dir / results["files"]["cls_95_based_upper_limit_on_poi"]["path"]
    published = json.loads((ATLAS_DEMO / "statanalysis" / "example_results" / "limit_data.json").read_text())
    ours = json.loads(limit.read_text())
    assert set(ours) == set(published)
    assert ours["exp_m2"] < ours["exp_m1"] < ours["exp"] < ours["exp_p1"] < ours["exp_p2"]
    hist = json.loads((run_dir / "steps" / "eventselection" / "submitDir" / "hist-sample.root").read_text())
    assert hist["did"] == 404958 and hist["inputs"] == [
        "https://recastwww.web.cern.ch/recastwww/data/reana-recast-demo/mc15_13TeV.123456.cap_recast_demo_signal_one.root"]


@pytest.mark.docker
def test_a_pulled_image_by_digest_that_cannot_be_had_is_a_clear_error(tmp_path, toy):
    spec = yaml.safe_load((toy / "analysis.yaml").read_text())
    spec["images"]["toy"] = {"pull": "127.0.0.1:9/recast/none@sha256:" + "0" * 64}
    (toy / "analysis.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    done = recast("images", "build", "toy", "--catalog", str(toy.parent))
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "image 'toy' (127.0.0.1:9/recast/none@sha256:" in done.stderr and "cannot pull it" in done.stderr, done.stderr


def test_cvmfs_and_credentials_become_declared_needs_that_the_operator_provides(tmp_path, monkeypatch):
    workflow = tmp_path / "src" / "workflow.yml"
    workflow.parent.mkdir()
    workflow.write_text(yaml.safe_dump({"stages": [{"name": "a", "dependencies": ["init"], "scheduler": {
        "scheduler_type": "singlestep-stage", "parameters": {"out": "{workdir}/x.txt"},
        "step": {"process": {"process_type": "string-interpolated-cmd", "cmd": "voms-proxy-info > {out}"},
                 "publisher": {"publisher_type": "frompar-pub", "outputmap": {"x": "out"}},
                 "environment": {"environment_type": "docker-encapsulated", "image": "atlas/analysisbase",
                                 "imagetag": "21.2.4", "resources": ["CVMFS", "GRIDProxy", "KRB5Auth"]}}}}]}))
    monkeypatch.delenv("RECAST_RESOURCES", raising=False)
    done = recast("import", "yadage", str(workflow), "--catalog", str(tmp_path / "catalog"))
    assert done.returncode == 1 and "host resource 'cvmfs' is not provided on this machine" in done.stderr
    config = tmp_path / "resources.yaml"
    config.write_text(yaml.safe_dump({"host_resources": {"cvmfs": {"path": str(tmp_path)}}, "credentials": {
        "grid_proxy": {"file": str(config), "env": "X509_USER_PROXY"},
        "kerberos": {"file": str(config), "env": "KRB5_KTNAME"}}}))
    monkeypatch.setenv("RECAST_RESOURCES", str(config))
    entry = Path(imported(tmp_path / "catalog", "yadage", workflow, "--id", "grid")["path"])
    environment = load(entry, "templates/a.yaml")["environment"]
    assert environment["host_resources"] == ["cvmfs"] and environment["credentials"] == ["grid_proxy", "kerberos"]


def test_glob_publishers_become_glob_outputs_bound_to_lists_of_files(tmp_path):
    workflow = tmp_path / "src" / "workflow.yml"
    workflow.parent.mkdir()
    step = {"process": {"process_type": "string-interpolated-cmd", "cmd": "make-histograms {outdir}"},
            "publisher": {"publisher_type": "fromglob-pub", "globexpression": "hists/*.root", "outputkey": "hists"},
            "environment": {"environment_type": "docker-encapsulated", "image": "busybox"}}
    merge = {"process": {"process_type": "string-interpolated-cmd", "cmd": "hadd {merged} {inputs}"},
             "publisher": {"publisher_type": "frompar-pub", "outputmap": {"merged": "merged"}},
             "environment": {"environment_type": "docker-encapsulated", "image": "busybox"}}
    workflow.write_text(yaml.safe_dump({"stages": [
        {"name": "hist", "dependencies": ["init"], "scheduler": {
            "scheduler_type": "singlestep-stage", "parameters": {"outdir": "{workdir}"}, "step": step}},
        {"name": "merge", "dependencies": ["hist"], "scheduler": {
            "scheduler_type": "singlestep-stage", "step": merge,
            "parameters": {"inputs": {"step": "hist", "output": "hists"}, "merged": "{workdir}/merged.root"}}}]}))
    entry = Path(imported(tmp_path / "catalog", "yadage", workflow, "--id", "globs")["path"])
    assert load(entry, "templates/hist.yaml")["outputs"]["files"] == {"hists": {"glob": "hists/*.root"}}
    merge_template = load(entry, "templates/merge.yaml")
    assert merge_template["parameters"]["inputs"] == {"type": "list", "items": {"type": "file"}}
    assert "$steps.hist.hists" in load(entry, "analysis.yaml")["workflow"]["stages"][1]["bind"].values()


def test_a_scatter_over_the_files_another_stage_globbed_is_imported_as_a_runtime_scatter(tmp_path):
    workflow = tmp_path / "src" / "workflow.yml"
    workflow.parent.mkdir()
    env = {"environment_type": "docker-encapsulated", "image": "busybox"}
    workflow.write_text(yaml.safe_dump({"stages": [
        {"name": "split", "dependencies": ["init"], "scheduler": {
            "scheduler_type": "singlestep-stage", "parameters": {"outdir": "{workdir}"},
            "step": {"process": {"process_type": "string-interpolated-cmd", "cmd": "split-into-chunks {outdir}"},
                     "publisher": {"publisher_type": "fromglob-pub", "globexpression": "chunk_*.txt",
                                   "outputkey": "chunks"}, "environment": env}}},
        {"name": "process", "dependencies": ["split"], "scheduler": {
            "scheduler_type": "multistep-stage", "scatter": {"method": "zip", "parameters": ["chunk"]},
            "parameters": {"chunk": {"step": "split", "output": "chunks"}, "out": "{workdir}/out.txt"},
            "step": {"process": {"process_type": "string-interpolated-cmd", "cmd": "wc -l {chunk} > {out}"},
                     "publisher": {"publisher_type": "frompar-pub", "outputmap": {"out": "out"}},
                     "environment": env}}}]}))
    entry = Path(imported(tmp_path / "catalog", "yadage", workflow, "--id", "chunks")["path"])
    stage = load(entry, "analysis.yaml")["workflow"]["stages"][1]
    assert stage["scatter"] == {"over": "$steps.split.chunks"} and stage["bind"]["chunk"] == "$item"
    assert load(entry, "templates/process.yaml")["parameters"]["chunk"] == {"type": "file"}


@pytest.mark.docker
def test_the_roofit_demo_in_its_snakemake_form_imports_runs_and_passes_its_test(standins, tmp_path):
    """The Snakefile is read through Snakemake's parser and never run; its rules become stages."""
    summary = imported(tmp_path / "catalog", "reana", ROOFIT / "reana-snakemake.yaml", "--id", "roofit-snakemake")
    entry = Path(summary["path"])
    analysis = load(entry, "analysis.yaml")
    assert [s["name"] for s in analysis["workflow"]["stages"]] == ["gendata", "fitdata"]
    assert analysis["workflow"]["stages"][1]["bind"]["data"] == "$steps.gendata.output0"
    assert analysis["results"]["files"] == {"plot": "$steps.fitdata.output0"}
    assert load(entry, "templates/gendata.yaml")["process"]["script"] == \
        "mkdir -p results && root -b -q '{gendata_tool}({events},\"{outdir}/results/data.root\")'"
    checks = load(entry, "checks.yaml")["runs"]["default"]
    assert {"steps/gendata/results/data.root", "steps/fitdata/results/plot.png"} <= set(checks["files"])
    run_dir = run_and_test(tmp_path / "catalog", "roofit-snakemake", "default", tmp_path / "run")
    assert (run_dir / "steps" / "fitdata" / "results" / "plot.png").read_bytes().startswith(b"\x89PNG")


def test_a_snakefile_is_never_run_and_what_needs_python_is_reported(tmp_path):
    root = tmp_path / "analysis"
    root.mkdir()
    (root / "Snakefile").write_text(
        "import os\nos.system('touch " + str(tmp_path / "pwned") + "')\n"
        "rule a:\n    output: 'out/{sample}.txt'\n    container: 'docker://busybox'\n    shell: 'touch {output}'\n"
        "rule b:\n    output: 'b.txt'\n    run:\n        open(output[0], 'w').write('x')\n")
    (root / "reana.yaml").write_text("inputs: {parameters: {}}\nworkflow: {type: snakemake, file: Snakefile}\n")
    done = recast("import", "reana", str(root / "reana.yaml"), "--catalog", str(tmp_path / "catalog"))
    assert done.returncode == 1 and not (tmp_path / "pwned").exists()
    for feature in ("line 1: top-level Python code", "rule a: output 'out/{sample}.txt': a wildcard",
                    "rule b: a run: block (Python code)"):
        assert feature in done.stderr, done.stderr
    assert not (tmp_path / "catalog").exists()


def test_a_nested_yadage_sub_workflow_becomes_a_recast_sub_workflow(tmp_path):
    """A multistep stage whose body is a workflow: one chain per sample, its init parameters the stage's."""
    env = {"environment_type": "docker-encapsulated", "image": "busybox"}
    select = {"process": {"process_type": "string-interpolated-cmd", "cmd": "select {sample} {cut} > {out}"},
              "publisher": {"publisher_type": "frompar-pub", "outputmap": {"selected": "out"}}, "environment": env}
    count = {"process": {"process_type": "string-interpolated-cmd", "cmd": "wc -l < {selected} > {out}"},
             "publisher": {"publisher_type": "frompar-pub", "outputmap": {"count": "out"}}, "environment": env}
    inner = {"stages": [
        {"name": "select", "dependencies": ["init"], "scheduler": {
            "scheduler_type": "singlestep-stage", "step": select,
            "parameters": {"sample": {"step": "init", "output": "sample"}, "cut": {"step": "init", "output": "cut"},
                           "out": "{workdir}/selected.txt"}}},
        {"name": "count", "dependencies": ["select"], "scheduler": {
            "scheduler_type": "singlestep-stage", "step": count,
            "parameters": {"selected": {"step": "select", "output": "selected"}, "out": "{workdir}/n.txt"}}}]}
    workflow = tmp_path / "src" / "workflow.yml"
    workflow.parent.mkdir()
    (workflow.parent / "inner.yml").write_text(yaml.safe_dump(inner))
    workflow.write_text(yaml.safe_dump({"stages": [
        {"name": "per_sample", "dependencies": ["init"], "scheduler": {
            "scheduler_type": "multistep-stage", "scatter": {"method": "zip", "parameters": ["sample"]},
            "parameters": {"sample": {"step": "init", "output": "samples"}, "cut": 100},
            "workflow": {"$ref": "inner.yml"}}}]}))
    inputs = tmp_path / "src" / "inputs.yml"
    inputs.write_text(yaml.safe_dump({"samples": ["a.root", "b.root"]}))
    entry = Path(imported(tmp_path / "catalog", "yadage", workflow, "--id", "nested", "--inputs", str(inputs))["path"])
    analysis = load(entry, "analysis.yaml")
    [stage] = analysis["workflow"]["stages"]
    assert stage["scatter"] == {"zip": {"sample": "$request.samples"}}
    assert [s["template"] for s in stage["workflow"]["stages"]] == ["per_sample_select", "per_sample_count"]
    assert stage["workflow"]["stages"][0]["bind"] == {"sample": "$item.sample", "cut": 100}
    assert stage["workflow"]["stages"][1]["bind"] == {"selected": "$steps.select.selected"}
    assert analysis["request"]["parameters"] == {"samples": {"type": "list", "items": {"type": "string"}}}
    from recast.validate import load_analysis

    stages = [s.name for s in load_analysis(entry).stages]
    assert stages == ["per_sample_select", "per_sample_count"]


def _step(script: str, outputs: dict | None = None, envscript: str | None = None, constants: dict | None = None):
    """A packtivity step on the stand-in image: an sh script, its outputs published from parameters."""
    publisher = ({"publisher_type": "constant-pub", "publish": constants} if constants is not None
                 else {"publisher_type": "frompar-pub", "outputmap": outputs})
    return {"process": {"process_type": "interpolated-script-cmd", "interpreter": "sh", "script": script},
            "publisher": publisher,
            "environment": {"environment_type": "docker-encapsulated", "image": "example/yadage-standin",
                            "imagetag": "1.0", **({"envscript": envscript} if envscript else {})}}


def _stage(name: str, step: dict | None, parameters: dict, after: list[str], scatter: list[str] | None = None,
           workflow: dict | None = None, batch: int | None = None) -> dict:
    scheduler = {"scheduler_type": "multistep-stage" if scatter else "singlestep-stage", "parameters": parameters}
    scheduler.update({"step": step} if step is not None else {"workflow": workflow})
    if scatter:
        scheduler["scatter"] = {"method": "zip", "parameters": scatter}
    if batch:
        scheduler["batchsize"] = batch
    return {"name": name, "dependencies": after, "scheduler": scheduler}


def selected_workflow() -> dict:
    """Written for this test in the forms published yadage workflows use: stage selections ({stages, output,
    unwrap}), a batched scatter, a map over a map, a gather into a sub-workflow, a selection into it
    (NAME[*].INNER), a constant publisher, and an envscript."""
    combine = {"stages": [_stage("combine", _step("cat {selected} > {out}", {"combined": "out"}),
                                 {"selected": {"stages": "init", "output": "selected"},
                                  "out": "{workdir}/combined.txt"}, ["init"])]}
    return {"stages": [
        _stage("settings", _step("echo configured", constants={"label": "selected", "cut": 3}), {}, ["init"]),
        _stage("generate", _step('for p in {point}; do echo "point $p $SETUP"; done > {out}', {"events": "out"},
                                 envscript="/opt/setup.sh"),
               {"point": {"stages": "init", "output": "points", "unwrap": True}, "out": "{workdir}/events.txt"},
               ["init"], scatter=["point"], batch=2),
        _stage("select", _step("sed 's/^point/{label}/' {events} | cut -c1-100 > {out}; echo {cut} >> {out}",
                               {"selected": "out"}),
               {"events": {"stages": "generate", "output": "events"},
                "label": {"stages": "settings", "output": "label", "unwrap": True},
                "cut": {"stages": "settings", "output": "cut", "unwrap": True}, "out": "{workdir}/selected.txt"},
               ["generate", "settings"], scatter=["events"]),
        _stage("summary", None, {"selected": {"stages": "select", "output": "selected"}}, ["select"],
               workflow=combine),
        _stage("report", _step("wc -l < {combined} > {out}", {"lines": "out"}),
               {"combined": {"stages": "summary[*].combine", "output": "combined", "unwrap": True},
                "out": "{workdir}/lines.txt"}, ["summary"]),
    ]}


def test_stage_selections_map_over_map_constants_and_envscript_translate(tmp_path):
    workflow = tmp_path / "src" / "workflow.yml"
    workflow.parent.mkdir()
    workflow.write_text(yaml.safe_dump(selected_workflow()))
    inputs = tmp_path / "src" / "inputs.yml"
    inputs.write_text(yaml.safe_dump({"points": [300, 400, 500]}))
    entry = Path(imported(tmp_path / "catalog", "yadage", workflow, "--id", "selections",
                          "--inputs", str(inputs))["path"])
    stages = {s["name"]: s for s in load(entry, "analysis.yaml")["workflow"]["stages"]}
    assert stages["generate"]["scatter"] == {"zip": {"point": "$request.points"}, "batch": 2}
    assert load(entry, "templates/generate.yaml")["parameters"]["point"] == {"type": "list", "items": {"type": "integer"}}
    # a map over a map: the same branches, each taking its own branch's file
    assert stages["select"]["scatter"] == stages["generate"]["scatter"]
    assert stages["select"]["bind"] == {"events": "$steps.generate.events", "label": "selected", "cut": 3}
    assert stages["summary"]["workflow"]["stages"][0]["bind"] == {"selected": "$steps.select.selected"}
    assert stages["report"]["bind"] == {"combined": "$steps.summary.combine.combined"}
    assert load(entry, "templates/generate.yaml")["process"]["script"].startswith(". /opt/setup.sh\n")
    assert load(entry, "templates/summary_combine.yaml")["parameters"]["selected"] == {
        "type": "list", "items": {"type": "file"}}


@pytest.mark.parametrize("selection", ["generate[0]", "generate | first", "$.stages[?(@.name)]"])
def test_a_stage_selection_recast_cannot_follow_is_reported(selection, tmp_path):
    document = selected_workflow()
    document["stages"][2]["scheduler"]["parameters"]["events"]["stages"] = selection
    workflow = tmp_path / "src" / "workflow.yml"
    workflow.parent.mkdir()
    workflow.write_text(yaml.safe_dump(document))
    done = recast("import", "yadage", str(workflow), "--catalog", str(tmp_path / "catalog"))
    assert done.returncode == 1
    assert f"stages[2].scheduler.parameters.events.stages: {selection!r}: recast follows a stage's name" \
        in done.stderr, done.stderr
    assert not (tmp_path / "catalog").exists()


@pytest.mark.docker
def test_stage_selections_map_over_map_constants_and_envscript_run_end_to_end(tmp_path):
    import docker

    context = tmp_path / "standin"
    context.mkdir()
    (context / "Dockerfile").write_text("ARG BASE\nFROM ${BASE}\n"
                                        "RUN printf 'SETUP=sourced\\nexport SETUP\\n' > /opt/setup.sh\n")
    for chunk in docker.from_env().api.build(path=str(context), tag="example/yadage-standin:1.0", rm=True,
                                             decode=True, buildargs={"BASE": "recast/base:bookworm"}):
        assert "error" not in chunk, chunk
    workflow = tmp_path / "src" / "workflow.yml"
    workflow.parent.mkdir()
    workflow.write_text(yaml.safe_dump(selected_workflow()))
    inputs = tmp_path / "src" / "inputs.yml"
    inputs.write_text(yaml.safe_dump({"points": [300, 400, 500]}))
    imported(tmp_path / "catalog", "yadage", workflow, "--id", "selections", "--inputs", str(inputs))
    run_dir = run_and_test(tmp_path / "catalog", "selections", "inputs", tmp_path / "run")
    combined = (run_dir / "steps" / "summary_combine" / "combined.txt").read_text().splitlines()
    # two jobs of generate (batches of 2), two of select, each taking its own branch's file
    assert sorted(p.name for p in (run_dir / "steps").iterdir() if p.name.startswith(("generate", "select"))) == [
        "generate__0", "generate__1", "select__0", "select__1"]
    assert combined == ["selected 300 sourced", "selected 400 sourced", "3", "selected 500 sourced", "3"]
    assert (run_dir / "steps" / "report" / "lines.txt").read_text().strip() == "5"


def _leaves(node, at=()):
    if isinstance(node, dict):
        for key, value in node.items():
            yield at + (key,)
            yield from _leaves(value, at + (key,))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield at + (i,)
            yield from _leaves(value, at + (i,))


def test_a_malformed_workflow_at_any_field_is_a_clear_error_never_a_traceback(tmp_path):
    """Every field of a workflow replaced by values of the wrong shape: a RecastError or an import, nothing else."""
    from recast.errors import RecastError
    from recast.importers.yadage import import_workflow

    import copy

    base = selected_workflow()
    wrong = [None, 7, ["a", 1], {"x": {"y": 1}}, "x" * 300]
    workflow = tmp_path / "src" / "workflow.yml"
    workflow.parent.mkdir()
    refused = 0
    for n, at in enumerate(_leaves(base)):
        document = copy.deepcopy(base)
        node = document
        for key in at[:-1]:
            node = node[key]
        node[at[-1]] = copy.deepcopy(wrong[n % len(wrong)])
        workflow.write_text(yaml.safe_dump(document))
        try:
            import_workflow(workflow, tmp_path / "catalog", f"m{n}", inputs={"inputs": {"points": [1, 2]}},
                            files_root=workflow.parent)
        except RecastError:
            refused += 1
    assert refused > len(list(_leaves(base))) // 2


@pytest.mark.parametrize("kind, name, text, message", [
    ("yadage", "workflow.yml", "stages:\n  - {name: a, dependencies: init, scheduler: singlestep}\n",
     "stages[0].dependencies: expected array, found str 'init'"),
    ("recast-atlas", "recast.yml", "name: x\nspec: {workflow: [a]}\n", "spec.workflow: expected string"),
    ("recast-atlas", "recast.yml", "name: x\nspec: {toplevel: ., workflow: ../../outside.yml}\n",
     "is outside its toplevel"),
    ("reana", "reana.yaml", "workflow: {type: yadage, file: {a: 1}}\n", "workflow.file: expected string"),
    ("reana", "reana.yaml", "workflow: {type: yadage, file: ../outside.yml}\n", "workflow.file '../outside.yml' is "
                                                                               "not a file inside"),
])
def test_malformed_sources_are_refused_naming_the_field(kind, name, text, message, tmp_path):
    (tmp_path / "outside.yml").write_text("stages: []\n")
    source = tmp_path / "a" / "b" / name
    source.parent.mkdir(parents=True)
    source.write_text(text)
    done = recast("import", kind, str(source), "--catalog", str(tmp_path / "catalog"))
    assert done.returncode == 1 and message in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert not (tmp_path / "catalog").exists()


@pytest.mark.parametrize("content, message", [
    (b"rule a:\n    output: '\xff'\n", "not a Snakefile recast can read: not UTF-8 text"),
    (b"rule a:\n    shell: '" + b"a" * (5 * 2**20) + b"'\n", "more than a Snakefile recast reads"),
    (b"rule a:\n    shell: " + b"(" * 5000 + b"'x'" + b")" * 5000 + b"\n", "not a Snakefile recast can read"),
], ids=["not-utf8", "too-big", "too-deep"])
def test_a_snakefile_that_is_not_text_too_big_or_too_deep_is_refused(content, message, tmp_path):
    (tmp_path / "Snakefile").write_bytes(content)
    (tmp_path / "reana.yaml").write_text("workflow: {type: snakemake, file: Snakefile}\n")
    done = recast("import", "reana", str(tmp_path / "reana.yaml"), "--catalog", str(tmp_path / "catalog"))
    assert done.returncode == 1 and message in done.stderr and "Traceback" not in done.stderr, done.stderr


def test_interpolated_publishers_relative_paths_and_numbers(tmp_path):
    """packtivity's interpolated-pub: with relative_paths a pattern is in the job's folder; a number is
    published as it is (a constant its takers get as a literal)."""
    step = _step("echo {n} > {outdir_file}; mkdir -p fit; echo 1 > fit/r.json", {})
    step["publisher"] = {"publisher_type": "interpolated-pub", "relative_paths": True,
                         "publish": {"result": "fit/r.json", "copy": "{outdir_file}", "nevents": 500}}
    document = {"stages": [
        _stage("make", step, {"n": 1, "outdir_file": "{workdir}/n.txt"}, ["init"]),
        _stage("use", _step("cat {result} {copy} > {out}; echo {nevents} >> {out}", {"out": "out"}),
               {"result": {"stages": "make", "output": "result", "unwrap": True},
                "copy": {"step": "make", "output": "copy"},
                "nevents": {"stages": "make", "output": "nevents", "unwrap": True}, "out": "{workdir}/o.txt"},
               ["make"])]}
    workflow = tmp_path / "src" / "workflow.yml"
    workflow.parent.mkdir()
    workflow.write_text(yaml.safe_dump(document))
    entry = Path(imported(tmp_path / "catalog", "yadage", workflow, "--id", "relative")["path"])
    assert load(entry, "templates/make.yaml")["outputs"]["files"] == {"result": {"path": "fit/r.json"},
                                                                      "copy": "n.txt"}
    stages = {s["name"]: s for s in load(entry, "analysis.yaml")["workflow"]["stages"]}
    assert stages["use"]["bind"] == {"result": "$steps.make.result", "copy": "$steps.make.copy", "nevents": 500}


def test_one_image_name_at_two_tags_stays_two_images_and_env_is_kept(tmp_path):
    old, new = _step("echo a > {out}", {"a": "out"}), _step("echo b > {out}", {"b": "out"})
    old["environment"]["imagetag"], new["environment"]["imagetag"] = "21.2.10", "21.2.50"
    new["environment"]["env"] = {"ATLAS_LOCAL_ROOT_BASE": "/cvmfs/atlas.cern.ch", "NTHREADS": 4}
    workflow = tmp_path / "src" / "workflow.yml"
    workflow.parent.mkdir()
    workflow.write_text(yaml.safe_dump({"stages": [_stage("a", old, {"out": "{workdir}/a"}, ["init"]),
                                                   _stage("b", new, {"out": "{workdir}/b"}, ["init"])]}))
    entry = Path(imported(tmp_path / "catalog", "yadage", workflow, "--id", "tags")["path"])
    images = load(entry, "analysis.yaml")["images"]
    assert sorted(i["pull"] for i in images.values()) == ["example/yadage-standin:21.2.10",
                                                          "example/yadage-standin:21.2.50"]
    a, b = load(entry, "templates/a.yaml")["environment"], load(entry, "templates/b.yaml")["environment"]
    assert images[a["image"]]["pull"].endswith("21.2.10") and images[b["image"]]["pull"].endswith("21.2.50")
    assert b["env"] == {"ATLAS_LOCAL_ROOT_BASE": "/cvmfs/atlas.cern.ch", "NTHREADS": "4"} and "env" not in a


@pytest.mark.parametrize("envscript, sourced", [("~/release_setup.sh", ". ~/release_setup.sh\n"),
                                                ("/opt/setup.sh", ". /opt/setup.sh\n"),
                                                ("/opt/a b.sh; id", None), ("$HOME/x.sh", None)])
def test_an_envscript_is_sourced_as_a_path_only(envscript, sourced, tmp_path):
    workflow = tmp_path / "src" / "workflow.yml"
    workflow.parent.mkdir()
    workflow.write_text(yaml.safe_dump({"stages": [
        _stage("a", _step("echo a > {out}", {"a": "out"}, envscript=envscript), {"out": "{workdir}/a"}, ["init"])]}))
    done = recast("import", "yadage", str(workflow), "--catalog", str(tmp_path / "catalog"), "--json")
    if sourced is None:
        assert done.returncode == 1 and "an envscript recast can source is a plain path" in done.stderr, done.stderr
    else:
        entry = Path(json.loads(done.stdout)["path"])
        assert load(entry, "templates/a.yaml")["process"]["script"].startswith(sourced)
