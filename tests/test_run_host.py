"""Running a workflow end to end with the real Snakemake, on the host environment."""

from __future__ import annotations

import json
from pathlib import Path
import os
import subprocess
import sys

import pytest
import yaml
from click.testing import CliRunner

from recast import execution
from recast import request as request_mod
from recast.cli import cli
from recast.errors import ExecutionError
from recast.spec import validate_document
from recast.validate import load_analysis

from conftest import ROOT


def run(toy, run_dir, request_path=None, **kw):
    analysis = load_analysis(toy)
    req = request_mod.load(analysis, request_path or analysis.examples["default"].request)
    return execution.run(analysis, req, run_dir, environment="host", **kw)


def test_results_provenance_and_incremental_reruns(toy, tmp_path):
    run_dir = tmp_path / "run"
    first = run(toy, run_dir, cores=2)
    assert sorted(first.jobs_run) == ["square__0", "square__1", "square__2", "total"]
    results = json.loads((run_dir / "results.json").read_text())
    # y = x^2 + offset + lines of the events file (a.txt: 1 line, b.txt: 2 lines)
    assert results["values"]["squares"] == [2.0, 6.0, 13.25]
    assert results["values"]["total"] == 21.25
    assert results["files"]["total"]["path"] == "steps/total/total.json"
    validate_document(results, "result")

    provenance = json.loads((run_dir / "provenance.json").read_text())
    validate_document(provenance, "provenance")
    assert provenance["environment"] == "host" and provenance["executor"] == "local"
    assert set(provenance["software"]) >= {"recast", "snakemake", "pyhf", "python"}
    assert "inputs/data/a.txt" in provenance["inputs"] and "inputs/data/b.txt" in provenance["inputs"]
    assert all(j["exit_code"] == 0 and j["started"] <= j["ended"] for j in provenance["jobs"].values())
    assert provenance["analysis"]["spec_digest"].startswith("sha256:")

    again = run(toy, run_dir)
    assert again.jobs_run == [], "an unchanged request must do no work"

    # Change one point: only its branch and the gather re-run.
    req = yaml.safe_load((toy / "requests" / "default.yaml").read_text())
    req["parameters"]["points"][1]["x"] = 5
    changed = toy / "requests" / "changed.yaml"
    changed.write_text(yaml.safe_dump(req))
    third = run(toy, run_dir, changed)
    assert sorted(third.jobs_run) == ["square__1", "total"]
    assert json.loads((run_dir / "results.json").read_text())["values"]["total"] == 2 + 27 + 13.25

    # Change the content of an input file used by branch 1 only.
    (toy / "requests" / "data" / "b.txt").write_text("e1\ne2\ne3\n")
    fourth = run(toy, run_dir, changed)
    assert sorted(fourth.jobs_run) == ["square__1", "total"]


def test_shell_metacharacters_stay_inert(toy, tmp_path):
    marker = tmp_path / "pwned"
    hostile = f"$(touch {marker}); `touch {marker}` && rm -rf / ; echo '\""
    req = toy / "requests" / "hostile.yaml"
    req.write_text(yaml.safe_dump({"parameters": {"points": [{"x": 1, "label": hostile, "events": "data/a.txt"}]}}))
    run(toy, tmp_path / "run", req)
    out = json.loads((tmp_path / "run" / "steps" / "square__0" / "square.json").read_text())
    assert out["label"] == hostile
    assert not marker.exists()


def test_failing_job_names_step_and_log_and_keeps_previous_results(toy, tmp_path):
    run_dir = tmp_path / "run"
    run(toy, run_dir)
    before = (run_dir / "results.json").read_bytes()
    req = yaml.safe_load((toy / "requests" / "default.yaml").read_text())
    req["parameters"]["points"][2]["label"] = "fail"
    failing = toy / "requests" / "failing.yaml"
    failing.write_text(yaml.safe_dump(req))
    with pytest.raises(ExecutionError) as err:
        run(toy, run_dir, failing)
    message = str(err.value)
    assert "step square__2" in message and "asked to fail" in message
    assert (run_dir / "results.json").read_bytes() == before


def test_time_limit_stops_the_job(toy, tmp_path):
    template = toy / "templates" / "square.yaml"
    doc = yaml.safe_load(template.read_text())
    doc["environment"]["resources"]["time_limit"] = "2s"
    template.write_text(yaml.safe_dump(doc))
    req = toy / "requests" / "slow.yaml"
    req.write_text(yaml.safe_dump({"parameters": {"points": [{"x": 1, "label": "sleep", "events": "data/a.txt"}]}}))
    with pytest.raises(ExecutionError, match=r"step square__0 .*exceeded its time limit of 2 s"):
        run(toy, tmp_path / "run", req)


def test_plain_snakemake_runs_the_same_plan(toy, tmp_path):
    run_dir = tmp_path / "run"
    run(toy, run_dir)
    expected = (run_dir / "steps" / "total" / "total.json").read_text()
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "--configfile",
         str(run_dir / ".recast" / "config.yaml"), "--cores", "1", "--forceall", "--quiet"],
        capture_output=True, text=True, cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert (run_dir / "steps" / "total" / "total.json").read_text() == expected
    records = [json.loads(p.read_text()) for p in (run_dir / "logs").glob("*.json")]
    assert len(records) == 4 and all(r["exit_code"] == 0 for r in records)


def test_cli_run_and_results_json(toy, tmp_path):
    runner = CliRunner()
    args = ["run", "toy", "--example", "default", "--environment", "host", "--catalog", str(toy.parent),
            "--workdir", str(tmp_path / "run"), "--json"]
    first = runner.invoke(cli, args)
    assert first.exit_code == 0, first.output
    summary = json.loads(first.stdout)
    assert summary["status"] == "success" and summary["jobs_total"] == 4 and len(summary["jobs_run"]) == 4
    shown = runner.invoke(cli, ["results", str(tmp_path / "run"), "--json"])
    assert json.loads(shown.stdout)["values"]["total"] == 21.25
    table = runner.invoke(cli, ["results", str(tmp_path / "run")])
    assert "21.25" in table.output
    both = runner.invoke(cli, ["run", "toy", "--catalog", str(toy.parent)])
    assert both.exit_code != 0 and "exactly one of --request FILE or --example NAME" in both.output
    unknown = runner.invoke(cli, ["run", "nosuch", "--example", "default", "--catalog", str(toy.parent)])
    assert unknown.exit_code != 0


def test_killed_run_is_redone_and_its_stale_snakemake_lock_cleared(toy, tmp_path):
    run_dir = tmp_path / "run"
    plan = execution.prepare(load_analysis(toy), request_mod.load(load_analysis(toy), toy / "requests" / "default.yaml"),
                             run_dir, "host")
    # What a SIGKILLed Snakemake leaves: a job marked incomplete, and its lock. recast's own
    # lock (a flock, released by the kernel when its process dies) proves nobody runs here.
    (run_dir / ".snakemake" / "incomplete").mkdir(parents=True)
    (run_dir / ".snakemake" / "locks").mkdir(parents=True)
    lock = run_dir / ".snakemake" / "locks" / "0.output.lock"
    lock.write_text("\n".join(plan.jobs[-1].outputs) + "\n")
    assert sorted(run(toy, run_dir).jobs_run) == ["square__0", "square__1", "square__2", "total"]
    assert not lock.exists()

def test_host_job_sees_only_the_software_variables_and_its_template_env(tmp_path, monkeypatch):
    """A worker's secrets and the caller's numerical tuning never reach analysis code on the host."""
    from recast.environments import Job
    from recast.environments.host import HostEnvironment

    monkeypatch.setenv("RECAST_DATABASE_URL", "postgresql://recast:secret@db/recast")
    monkeypatch.setenv("OPENBLAS_CORETYPE", "Haswell")
    monkeypatch.setenv("LC_NUMERIC", "C")
    out = tmp_path / "out"
    job = Job(run_id="r", step="env", outdir=out, read_only=[], env={"MODE": "fit"}, cores=2,
              argv=[sys.executable, "-c", "import json, os; json.dump(dict(os.environ), open('env.json', 'w'))"],
              log_path=tmp_path / "log.txt")
    assert HostEnvironment().run(job).exit_code == 0, (tmp_path / "log.txt").read_text()
    seen = json.loads((out / "env.json").read_text())
    assert "RECAST_DATABASE_URL" not in seen and "OPENBLAS_CORETYPE" not in seen
    assert seen["MODE"] == "fit" and seen["OMP_NUM_THREADS"] == "2" and seen["LC_NUMERIC"] == "C"
    assert seen["PATH"] == os.environ["PATH"]


def _flaky(toy, retries: int) -> Path:
    """The toy's square step fails the first time it runs for label 'flaky'; a request with one such point."""
    script = toy / "code" / "square.py"
    script.write_text(script.read_text().replace(
        'if a.label == "fail":',
        'if a.label == "flaky" and not os.path.exists("tried"):\n'
        '    open("tried", "w").close()\n    raise SystemExit("failing once")\nif a.label == "fail":'))
    template = toy / "templates" / "square.yaml"
    template.write_text(template.read_text().replace("time_limit: 60s}", f"time_limit: 60s, retries: {retries}}}"))
    request = toy / "requests" / "flaky.yaml"
    request.write_text("schema: recast/request/1.0.0\nanalysis: toy\nparameters:\n  points:\n"
                       "    - {x: 1, label: one, events: data/a.txt}\n"
                       "    - {x: 2, label: flaky, events: data/b.txt}\n")
    return request


def test_a_failed_job_is_started_again_per_its_templates_retries(toy, tmp_path, capsys):
    request = _flaky(toy, retries=1)
    run_dir = tmp_path / "run"
    run(toy, run_dir, request)
    assert "step square__1 failed with exit status 1; started again (attempt 2 of 2)" in capsys.readouterr().err
    record = json.loads((run_dir / "logs" / "square__1.json").read_text())
    assert record["exit_code"] == 0 and record["attempt"] == 2
    assert json.loads((run_dir / "logs" / "square__0.json").read_text())["attempt"] == 1
    [earlier] = record["earlier_attempts"]
    assert earlier["exit_code"] == 1 and "square__1 failed with exit status 1" in earlier["error"]
    assert json.loads((run_dir / "results.json").read_text())["values"]["total"] > 0


def test_without_retries_the_same_job_fails_the_run_and_a_rerun_counts_its_attempt(toy, tmp_path):
    request = _flaky(toy, retries=0)
    run_dir = tmp_path / "run"
    with pytest.raises(ExecutionError, match="square__1"):
        run(toy, run_dir, request)
    assert json.loads((run_dir / "logs" / "square__1.json").read_text())["attempt"] == 1
    run(toy, run_dir, request)  # the same command resumes: the job's second start
    assert json.loads((run_dir / "logs" / "square__1.json").read_text())["attempt"] == 2
