"""A newcomer's first hour (issue 12): what a theorist and an analyst meet first, each item once.

Stale images are refused, requests can be checked before a run, tables read
at any width, fix-it hints can be pasted as they are, references are made
from a run, the limit plot separates m(N1), analysis ids complete in a shell.
Item 6 (run identity) is tests/security/test_run_folder.py::
test_each_run_folder_has_its_own_run_id_kept_when_resumed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from recast import images
from recast.cli import cli
from recast.model import ImageSpec

from conftest import ROOT


def invoke(*args, env=None):
    return CliRunner().invoke(cli, [str(a) for a in args], env=env)


def message(result) -> str:
    return result.output + (str(result.exception) if result.exception else "")


def recast(*args, columns: int | None = None, cwd=None) -> subprocess.CompletedProcess:
    """The command as a user runs it, its output piped (not a terminal)."""
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    if columns:
        env["COLUMNS"] = str(columns)
    return subprocess.run([sys.executable, "-m", "recast", *map(str, args)], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=600)


# -- 1. stale images ------------------------------------------------------------------------


def test_build_inputs_are_the_copied_files_less_dockerignore(tmp_path):
    (tmp_path / "code" / "sub").mkdir(parents=True)
    (tmp_path / "code" / "a.py").write_text("a = 1\n")
    (tmp_path / "code" / "sub" / "b.py").write_text("b = 2\n")
    (tmp_path / "code" / "sub" / "b.pyc").write_bytes(b"\0")
    (tmp_path / "code" / "images.lock.json").write_text("{}")
    (tmp_path / "notes.txt").write_text("not copied\n")
    (tmp_path / ".dockerignore").write_text("# caches\n**/*.pyc\ncode/sub/*\n!code/sub/b.py\n")
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text("ARG BASE\nFROM ${BASE}\n# a comment\nCOPY --chown=1000 code \\\n  /opt/code\n"
                          "COPY --from=other /x /y\n")
    spec = ImageSpec(name="one", tag="t:1", context=tmp_path, dockerfile=dockerfile)
    inputs = images.build_inputs(spec)
    assert sorted(inputs["context_files"]) == ["code/a.py", "code/sub/b.py"]
    assert inputs["context_scope"] == "files the Dockerfile copies, less .dockerignore"
    before = inputs["context_sha256"]
    (tmp_path / "notes.txt").write_text("edited, still not copied\n")
    (tmp_path / "code" / "sub" / "b.pyc").write_bytes(b"\1")
    assert images.build_inputs(spec)["context_sha256"] == before
    (tmp_path / "code" / "a.py").write_text("a = 2\n")
    assert images.build_inputs(spec)["context_sha256"] != before
    # What recast cannot read simply, it over-hashes rather than under-hashes.
    dockerfile.write_text("FROM x\nARG WHERE=code\nCOPY ${WHERE} /opt\n")
    widened = images.build_inputs(spec)
    assert "notes.txt" in widened["context_files"] and widened["context_scope"].startswith("every file")


@pytest.mark.docker
def test_stale_image_is_refused_by_run_test_and_check_until_rebuilt_or_allowed(toy, tmp_path):
    catalog = toy.parent
    dockerfile = toy / "Dockerfile"
    dockerfile.write_text(dockerfile.read_text() + "COPY code /opt/toy-code\n")
    assert invoke("images", "build", "toy", "-q", "--catalog", catalog).exit_code == 0
    run_args = ["run", "toy", "--example", "default", "--catalog", catalog, "--json"]

    # Editing what the image does not hold changes nothing; editing its code makes it out of date.
    spec = toy / "analysis.yaml"
    spec.write_text(spec.read_text().replace("Toy analysis", "The toy analysis"))
    (toy / "code" / "square.py").write_text((toy / "code" / "square.py").read_text() + "\n# edited\n")
    expected = f"image out of date: run `recast images build toy --catalog {catalog}`"
    refused = invoke(*run_args, "--workdir", tmp_path / "run")
    assert refused.exit_code == 1 and expected in message(refused) and "code/square.py changed" in message(refused)
    assert not (tmp_path / "run" / "steps").exists()
    tested = invoke("test", "toy", "--catalog", catalog, "--workdir", tmp_path / "test")
    assert tested.exit_code == 1 and "image out of date" in message(tested)
    checked = json.loads(invoke("catalog", "check", "toy", "--catalog", catalog, "--json").stdout)[0]
    assert not checked["passed"]
    assert any(c["name"] == "image toy up to date" and expected in c["message"] and "code/square.py" in c["message"]
               for c in checked["checks"])

    # Explicitly allowed: it runs, and provenance says which image was out of date and why.
    allowed = invoke(*run_args, "--workdir", tmp_path / "run", "--allow-stale-images")
    assert allowed.exit_code == 0, message(allowed)
    provenance = json.loads((tmp_path / "run" / "provenance.json").read_text())
    assert "code/square.py changed" in provenance["images_out_of_date"]["toy"]

    # Right after a build, everything passes.
    assert invoke("images", "build", "toy", "-q", "--catalog", catalog).exit_code == 0
    assert invoke(*run_args, "--workdir", tmp_path / "run").exit_code == 0
    provenance = json.loads((tmp_path / "run" / "provenance.json").read_text())
    assert provenance["images_out_of_date"] == {}


# -- 2. requests can be checked before running ------------------------------------------------------


def test_validate_recognises_a_request_and_checks_it_against_its_analysis(tmp_path):
    good = invoke("validate", ROOT / "catalog" / "wh1lbb" / "examples" / "default.yaml")
    assert good.exit_code == 0 and "valid" in good.output, message(good)

    shutil.copytree(ROOT / "catalog" / "wh1lbb" / "examples" / "samples", tmp_path / "samples")
    bad = tmp_path / "mine.yaml"
    bad.write_text("schema: recast/request/1.0.0\nanalysis: wh1lbb\nparameters:\n  signals:\n"
                   "    - {name: p1, events: samples/C1N2_Wh_300_0.lhe.gz, cross_section_pb: 0.05, m_C1N2: 300, m_N1: -5}\n"
                   "    - {name: p2, events: samples/missing.lhe.gz, cross_section_pb: 0.01, m_C1N2: 400, m_N1: 0}\n")
    result = invoke("validate", bad, "--json")
    assert result.exit_code == 1
    [entry] = json.loads(result.stdout)
    assert entry["kind"] == "request"
    assert [p["field"] for p in entry["problems"]] == ["parameters.signals[0].m_N1"], entry["problems"]
    bad.write_text(bad.read_text().replace("m_N1: -5", "m_N1: 0"))
    [entry] = json.loads(invoke("validate", bad, "--json").stdout)
    assert [(p["field"], p["message"]) for p in entry["problems"]] == [
        ("parameters.signals[1].events", f"file 'samples/missing.lhe.gz' not found in {tmp_path}")]

    elsewhere = invoke("validate", bad, "--catalog", ROOT / "tests" / "fixtures" / "catalog")
    assert elsewhere.exit_code == 1 and "no analysis 'wh1lbb'" in elsewhere.output


def test_dry_run_prints_the_plan_and_runs_nothing(toy, tmp_path):
    run_dir = tmp_path / "never"
    result = invoke("run", "toy", "--example", "default", "--catalog", toy.parent, "--environment", "host",
                    "--workdir", run_dir, "--dry-run", "--json")
    assert result.exit_code == 0, message(result)
    plan = json.loads(result.stdout)
    assert plan["dry_run"] and [j["job"] for j in plan["jobs"]] == ["square__0", "square__1", "square__2", "total"]
    assert "inputs/data/a.txt" in plan["jobs"][0]["inputs"]
    assert "steps/square__2/square.json" in plan["jobs"][3]["inputs"]
    assert not run_dir.exists()
    table = invoke("run", "toy", "--example", "default", "--catalog", toy.parent, "--environment", "host",
                   "--workdir", run_dir, "--dry-run")
    assert table.exit_code == 0 and "square__0" in table.output and not run_dir.exists()


def test_catalog_show_lists_the_fields_of_a_list_of_objects():
    shown = invoke("catalog", "show", "wh1lbb", env={"COLUMNS": "120"})
    assert shown.exit_code == 0
    for field in ("signals[].name", "signals[].events", "signals[].cross_section_pb", "signals[].m_C1N2",
                  "signals[].m_N1"):
        assert field in shown.output


# -- 3. tables ----------------------------------------------------------------------------------------


@pytest.fixture
def wh1lbb_run(tmp_path) -> Path:
    """A finished wh1lbb run folder, as far as `recast results` reads one (its reference results)."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    shutil.copy(ROOT / "catalog" / "wh1lbb" / "examples" / "default.results.json", run_dir / "results.json")
    from recast import spec

    request = spec.load_document(ROOT / "catalog" / "wh1lbb" / "examples" / "default.yaml")
    (run_dir / "request.json").write_text(json.dumps({"parameters": request["parameters"]}, sort_keys=True))
    return run_dir


@pytest.mark.parametrize("columns", [None, 80, 200])
def test_results_never_break_numbers_and_put_inputs_first(wh1lbb_run, columns):
    shown = recast("results", wh1lbb_run, columns=columns)
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert max(len(line) for line in lines) <= (columns or 80)
    points = json.loads((wh1lbb_run / "results.json").read_text())["values"]["points"]
    for point in points:
        for key in ("cross_section_pb", "cls_obs", "mu_up_obs"):
            assert re.search(rf"(^|[\s│]){re.escape(f'{point[key]:.4g}')}($|[\s│])", shown.stdout), (key, shown.stdout)
    assert re.search(r"(^|\s)cross_section_pb(\s|$)", shown.stdout), "a header is never broken"
    text = shown.stdout
    order = [text.index(word) for word in ("C1N2_Wh_300_0", "m_C1N2", "m_N1", "cross_section_pb", "cls_obs", "cls_exp")]
    if columns == 200:  # one table: the header row reads name, masses, inputs, then results
        header = next(line for line in lines if "m_C1N2" in line)
        order = [header.index(word) for word in ("name", "m_C1N2", "m_N1", "cross_section_pb", "cls_obs", "cls_exp")]
    assert order == sorted(order), text


def test_table_falls_back_to_one_block_per_record_when_it_does_not_fit():
    from rich.console import Console

    from recast.cli.common import table

    console = Console(width=40, record=True, file=open(os.devnull, "w"))
    console.print(table("t", ["name", "a_long_header_name", "value"], [["p1", 0.0007755, 1234567.5]]))
    text = console.export_text()
    assert "a_long_header_name  0.0007755" in text and "value" in text
    assert max(len(line) for line in text.splitlines()) <= 40


# -- 4. fix-it hints ------------------------------------------------------------------------------------


def test_hints_keep_the_catalog_and_suggest_the_host_only_when_it_can_run(toy, tmp_path):
    catalog = toy.parent
    (toy / "images.lock.json").unlink(missing_ok=True)
    args = ["run", "toy", "--example", "default", "--catalog", catalog, "--workdir", tmp_path / "r"]
    result = invoke(*args)
    assert result.exit_code == 1
    assert f"run `recast images build toy --catalog {catalog}` (or use --environment host)" in message(result)

    for name in ("square", "total"):  # the analysis's code is in its image only: the host cannot run it
        template = toy / "templates" / f"{name}.yaml"
        template.write_text(template.read_text().replace("argv: [python3,", "argv: [toy-only-in-its-image,"))
    result = invoke(*args)
    assert result.exit_code == 1 and f"run `recast images build toy --catalog {catalog}`" in message(result)
    assert "--environment host" not in message(result)

    (toy / "preserved" / "files.sha256").unlink(missing_ok=True)
    checked = json.loads(invoke("catalog", "check", "toy", "--catalog", catalog, "--json").stdout)[0]
    assert any(f"run `recast catalog pin toy --catalog {catalog}`" in c["message"] for c in checked["checks"])


# -- 5. references from a run ------------------------------------------------------------------------------


def test_update_reference_makes_the_first_reference_then_shows_what_changed(toy, tmp_path):
    catalog = toy.parent
    reference = toy / "requests" / "default.results.json"
    reference.unlink()
    # A declared reference that does not exist yet is no error: it is made from a run.
    assert invoke("validate", toy).exit_code == 0
    no_reference = invoke("test", "toy", "--catalog", catalog, "--environment", "host", "--workdir", tmp_path)
    assert no_reference.exit_code == 1
    assert f"recast test toy --update-reference --catalog {catalog}" in message(no_reference)

    args = ["test", "toy", "--catalog", catalog, "--environment", "host", "--workdir", tmp_path]
    first = invoke(*args, "--update-reference")
    assert first.exit_code == 0, message(first)
    assert "wrote the first reference" in first.output and reference.is_file()
    assert json.loads(reference.read_text())["values"]["total"] == 21.25
    assert json.loads(reference.read_text())["request"]["source"] == "requests/default.yaml"
    assert invoke(*args).exit_code == 0

    old = json.loads(reference.read_text())
    old["values"]["total"] = 20.0
    reference.write_text(json.dumps(old))
    again = invoke(*args, "--update-reference", "--json")
    assert again.exit_code == 0, message(again)
    [update] = json.loads(again.stdout)
    assert update["previous"] and [(c["name"], c["expected"], c["found"]) for c in update["changes"]] == [
        ("total", 20.0, 21.25)]
    assert json.loads(reference.read_text())["values"]["total"] == 21.25


def test_readme_gives_the_order_run_save_reference_pin():
    readme = (ROOT / "README.md").read_text()
    block = readme[readme.index("recast images build ID    "):]
    commands = [line.split("#")[0].strip() for line in block[:block.index("```")].splitlines()]
    assert commands == ["recast images build ID", "recast run ID --example default",
                        "recast test ID --update-reference", "recast catalog pin ID", "recast catalog check ID",
                        "recast test ID"]


# -- 7. the limit plot ---------------------------------------------------------------------------------------


def test_limit_plot_has_one_curve_per_lsp_mass_and_labelled_minor_ticks():
    pytest.importorskip("wh1lbb", reason="scripts/setup.sh installs the example's code")
    from wh1lbb.gather import limit_figure

    def point(m, lsp, mu):
        return {"name": f"p{m}_{lsp}", "m_C1N2": m, "m_N1": lsp, "mu_up_obs": mu,
                "mu_up_exp": [mu * f for f in (0.5, 0.7, 1.0, 1.4, 2.0)]}

    points = [point(m, lsp, 0.5 + m / 1000 + lsp / 200) for m in (300, 400, 500) for lsp in (0, 100)]
    figure = limit_figure({"points": points})
    ax = figure.axes[0]
    observed = [line for line in ax.get_lines() if line.get_marker() == "o"]
    assert len(observed) == 2
    for line in observed:  # each joins points of one m(N1) only
        xs, ys = line.get_data()
        lsp = next(p["m_N1"] for p in points if p["m_C1N2"] == xs[0] and p["mu_up_obs"] == ys[0])
        assert [(p["m_C1N2"], p["mu_up_obs"]) for p in points if p["m_N1"] == lsp] == list(zip(xs, ys))
    figure.canvas.draw()
    low, high = ax.get_ylim()
    minor = [t.get_text() for t in ax.get_yticklabels(minor=True)
             if t.get_text() and low <= t.get_position()[1] <= high]
    assert len(minor) >= 2, minor


# -- 8. shell completion --------------------------------------------------------------------------------


def test_analysis_ids_complete_in_the_shell(toy):
    env = {**os.environ, "_RECAST_COMPLETE": "bash_complete", "COMP_WORDS": "recast run wh", "COMP_CWORD": "2"}
    done = subprocess.run([sys.executable, "-m", "recast"], env=env,
                          capture_output=True, text=True, timeout=60)
    assert "plain,wh1lbb" in done.stdout.splitlines(), done.stdout + done.stderr
    env["COMP_WORDS"], env["COMP_CWORD"] = f"recast catalog show --catalog {toy.parent} t", "5"
    done = subprocess.run([sys.executable, "-m", "recast"], env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.stdout.splitlines() == ["plain,toy"], done.stdout + done.stderr
    assert "_RECAST_COMPLETE=bash_source recast" in (ROOT / "README.md").read_text()
