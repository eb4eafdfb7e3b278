"""The slurm executor against a real one-node Slurm cluster (scripts/slurm.sh; CI starts it).

Every run goes through the command line in a child process bounded by
``timeout -s KILL``: a Snakemake waiting on a cluster does not stop on SIGTERM.
Under CI (``CI=true``) a missing cluster fails these tests instead of skipping them.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from conftest import ROOT

PARTITION = "debug"
SLURM = ["--executor", "slurm", "--slurm-partition", PARTITION, "--slurm-status-interval", "1"]


def _slurm_up() -> bool:
    if shutil.which("sinfo") is None:
        return False
    try:
        out = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=20).stdout
    except subprocess.TimeoutExpired:
        return False
    return any(state in out for state in ("idle", "mixed", "allocated"))


@pytest.fixture(scope="module")
def slurm():
    if not _slurm_up() and os.geteuid() == 0:
        subprocess.run(["bash", str(ROOT / "scripts" / "slurm.sh")], check=False, timeout=600,
                       stdout=subprocess.DEVNULL)
    if not _slurm_up():
        message = "no Slurm cluster answers: run scripts/slurm.sh as root"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return PARTITION


def recast(*args: str, limit: int = 300, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["timeout", "-s", "KILL", str(limit), sys.executable, "-m", "recast", *args],
                          capture_output=True, text=True, cwd=cwd)


def start(*args: str, limit: int = 300, cwd: Path | None = None) -> subprocess.Popen:
    return subprocess.Popen(["timeout", "-s", "KILL", str(limit), sys.executable, "-m", "recast", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=cwd)


def wait_for(condition, seconds: float, what: str):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"gave up after {seconds} s waiting for {what}")


def slurm_jobs(run_dir: Path) -> dict[str, dict[str, str]]:
    """The Slurm jobs of a run folder (their logs go to RUN/logs/slurm), by recast step: scontrol's fields."""
    ids = subprocess.run(["squeue", "--states=all", "-h", "-o", "%i"], capture_output=True, text=True).stdout.split()
    jobs = {}
    for slurm_id in sorted(ids, key=int):
        shown = subprocess.run(["scontrol", "show", "job", "-o", slurm_id], capture_output=True, text=True).stdout
        fields = dict(re.findall(r"(\w+)=(\S*)", shown))
        if fields.get("StdOut", "").startswith(str(run_dir / "logs" / "slurm") + "/"):
            jobs[fields["Comment"].removeprefix("rule_")] = fields  # the newest submission of each step
    return jobs


def record(run_dir: Path, step: str) -> dict:
    try:
        return json.loads((run_dir / "logs" / f"{step}.json").read_text())
    except (OSError, ValueError):
        return {}


def containers_of(run_dir: Path) -> list[str]:
    import docker

    run_id = json.loads((run_dir / ".recast" / "run.json").read_text())["id"]
    return [c.id for c in docker.from_env().containers.list(all=True, filters={"label": f"recast.run={run_id}"})]


@pytest.fixture
def toy_for_slurm(toy_catalog):
    """The toy catalog, its image built, with a step that naps (label napN: N seconds) and long time limits.

    The square template's time limit is 10 minutes, so that Slurm's (10 minutes too, set on the
    batch job) can be cut short by hand and Slurm, not recast, ends the job.
    """
    from recast import images
    from recast.validate import load_analysis

    toy = toy_catalog / "toy"
    script = toy / "code" / "square.py"
    script.write_text(script.read_text().replace(
        'if a.label == "sleep":', 'if a.label.startswith("nap"):\n    time.sleep(float(a.label[3:]))\nif a.label == "sleep":'))
    template = toy / "templates" / "square.yaml"
    template.write_text(template.read_text().replace("time_limit: 60s", "time_limit: 10m"))
    requests = toy / "requests"
    (requests / "nap.yaml").write_text(
        "schema: recast/request/1.0.0\nanalysis: toy\nparameters:\n  points:\n"
        "    - {x: 1, label: one, events: data/a.txt}\n"
        "    - {x: 2, label: two, events: data/b.txt}\n"
        "    - {x: 3, label: nap12, events: data/a.txt}\n")
    (requests / "sleep.yaml").write_text(
        "schema: recast/request/1.0.0\nanalysis: toy\nparameters:\n  points:\n"
        "    - {x: 1, label: sleep, events: data/a.txt}\n"
        "    - {x: 2, label: sleep, events: data/b.txt}\n")
    images.build(load_analysis(toy))
    return toy_catalog


def test_settings_belong_to_their_executor_and_required_ones_are_asked_for():
    from recast.cli import cli
    from recast.errors import RecastError
    from recast.executors import EXECUTORS, configure

    assert EXECUTORS["local"].shares_machine and not EXECUTORS["slurm"].shares_machine
    with pytest.raises(RecastError, match="needs --slurm-partition"):
        configure("slurm", {})
    with pytest.raises(RecastError, match="takes no settings"):
        configure("local", {"partition": "debug"})
    runner = CliRunner()
    result = runner.invoke(cli, ["run", "toy", "--example", "default", "--slurm-partition", "debug"])
    assert result.exit_code == 2 and "--slurm-partition is a setting of --executor slurm" in result.output
    result = runner.invoke(cli, ["run", "toy", "--example", "default", "--executor", "slurm",
                                 "--slurm-partition", "debug", "--slurm-status-interval", "0"])
    assert result.exit_code != 0
    settings = configure("slurm", {"partition": "p", "account": "a", "status_interval": 3})
    assert settings.default_resources() == {"slurm_partition": "p", "slurm_account": "a"}
    plugin = settings.plugin_settings(Path("/run"))
    assert (plugin.status_command, plugin.no_account, plugin.max_seconds_between_status_checks) == ("squeue", False, 3)
    assert plugin.logdir == Path("/run/logs/slurm")



@pytest.mark.slurm
@pytest.mark.docker
def test_toy_on_slurm_under_docker_matches_local_with_template_resources(slurm, toy_for_slurm, tmp_path):
    catalog = str(toy_for_slurm)
    local = recast("run", "toy", "--catalog", catalog, "--example", "default", "--cores", "2",
                   "--workdir", str(tmp_path / "local"), "--json")
    assert local.returncode == 0, local.stderr
    started = time.monotonic()
    on_slurm = recast("run", "toy", "--catalog", catalog, "--example", "default", "--cores", "2",
                      "--workdir", str(tmp_path / "slurm"), "--json", *SLURM)
    seconds = time.monotonic() - started
    assert on_slurm.returncode == 0, on_slurm.stderr
    assert json.loads(on_slurm.stdout)["jobs_run"] == ["square__0", "square__1", "square__2", "total"]
    print(f"toy on Slurm: 4 jobs, 2 at once, in {seconds:.1f} s")

    a, b = (json.loads((tmp_path / name / "results.json").read_text()) for name in ("local", "slurm"))
    assert a["values"] == b["values"] and b["values"]["total"] == 21.25
    assert (a["run"]["executor"], b["run"]["executor"]) == ("local", "slurm")
    assert json.loads((tmp_path / "slurm" / "provenance.json").read_text())["executor"] == "slurm"
    for step in ("square__0", "total"):
        job = record(tmp_path / "slurm", step)
        # The remote path: no broker on a node, each job started its own container of the pinned image.
        assert job["container_broker"] is False and job["details"]["container"]
        assert job["details"]["image"] == job["image"]["id"]

    jobs = slurm_jobs(tmp_path / "slurm")
    assert sorted(jobs) == ["square__0", "square__1", "square__2", "total"]
    for job in jobs.values():  # square and total: 1 core, 256 MiB, a time limit of 10 min and of 60 s
        assert job["JobState"] == "COMPLETED" and job["Partition"] == PARTITION
        assert (job["NumCPUs"], job["MinMemoryNode"]) == ("1", "256M")
    assert (jobs["square__0"]["TimeLimit"], jobs["total"]["TimeLimit"]) == ("00:10:00", "00:01:00")

    again = recast("run", "toy", "--catalog", catalog, "--example", "default", "--workdir", str(tmp_path / "slurm"),
                   "--json", *SLURM)
    assert again.returncode == 0 and json.loads(again.stdout)["jobs_run"] == []
    assert slurm_jobs(tmp_path / "slurm").keys() == jobs.keys(), "an up-to-date run submits nothing"


@pytest.mark.slurm
@pytest.mark.docker
def test_jobs_ended_by_slurm_are_reported_with_its_state_and_leave_no_container(slurm, toy_for_slurm, tmp_path):
    run_dir = tmp_path / "run"
    proc = start("run", "toy", "--catalog", str(toy_for_slurm), "--request",
                 str(toy_for_slurm / "toy" / "requests" / "sleep.yaml"), "--cores", "2", "--workdir", str(run_dir),
                 *SLURM, limit=300)
    try:
        jobs = wait_for(lambda: (j := slurm_jobs(run_dir)) and len(j) == 2
                        and all(v["JobState"] == "RUNNING" for v in j.values()) and j, 120, "two running Slurm jobs")
        wait_for(lambda: len(containers_of(run_dir)) == 2, 60, "both jobs' containers")
        subprocess.run(["scancel", jobs["square__0"]["JobId"]], check=True)
        # Slurm keeps time limits in minutes: one minute, already past or nearly, ends the job at its next check.
        subprocess.run(["scontrol", "update", f"jobid={jobs['square__1']['JobId']}", "TimeLimit=1"], check=True)
        out, err = proc.communicate(timeout=240)
    finally:
        proc.kill()
    assert proc.returncode == 1, err
    assert f"step square__0: Slurm job {jobs['square__0']['JobId']} cancelled (scancel, or an operator) " \
           "(state CANCELLED" in err
    assert f"step square__1: Slurm job {jobs['square__1']['JobId']} killed at its Slurm time limit " \
           "(state TIMEOUT, reason TimeLimit)" in err
    assert "run the same command to resume" in err
    wait_for(lambda: not containers_of(run_dir), 30, "the containers of the killed jobs to be removed")


@pytest.mark.slurm
@pytest.mark.docker
def test_an_interrupted_slurm_run_cancels_its_jobs_and_resumes(slurm, toy_for_slurm, tmp_path):
    run_dir = tmp_path / "run"
    args = ["run", "toy", "--catalog", str(toy_for_slurm), "--request", str(toy_for_slurm / "toy" / "requests" / "nap.yaml"),
            "--cores", "3", "--workdir", str(run_dir), "--json", *SLURM]
    proc = start(*args, limit=300)
    try:
        wait_for(lambda: all(record(run_dir, s).get("exit_code") == 0 for s in ("square__0", "square__1"))
                 and record(run_dir, "square__2").get("started"), 150, "two finished jobs and the nap started")
        wait_for(lambda: all(slurm_jobs(run_dir).get(s, {}).get("JobState") == "COMPLETED"
                             for s in ("square__0", "square__1")), 60, "Slurm to see them complete")
        time.sleep(3)  # the run's next status check (--slurm-status-interval 1) takes them as finished
        proc.send_signal(signal.SIGINT)  # timeout passes it on to recast
        out, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert "interrupted (SIGINT)" in err and "run the same command to resume" in err
    nap = slurm_jobs(run_dir)["square__2"]
    assert wait_for(lambda: slurm_jobs(run_dir)["square__2"]["JobState"] == "CANCELLED", 30,
                    f"Slurm job {nap['JobId']} to be cancelled")
    wait_for(lambda: not containers_of(run_dir), 30, "the nap's container to be removed")

    resumed = recast(*args, limit=300)
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["jobs_run"] == ["square__2", "total"]
    assert json.loads((run_dir / "results.json").read_text())["values"]["squares"] == [2, 6, 10]


@pytest.mark.slurm
@pytest.mark.docker
def test_wh1lbb_example_on_slurm_under_docker_reproduces_its_reference(slurm, tmp_path):
    """`recast test --executor slurm`: the example analysis, each job a Slurm job in its own container."""
    # The images' staleness is another test's business (recast's own sources are in the stats image).
    result = recast("test", "wh1lbb", "--environment", "docker", "--cores", "2", "--workdir", str(tmp_path),
                    "--allow-stale-images", "--json", *SLURM, limit=900, cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    [case] = json.loads(result.stdout)
    assert case["passed"] and case["checks"], case
    provenance = json.loads((Path(case["run_dir"]) / "provenance.json").read_text())
    assert provenance["executor"] == "slurm" and provenance["environment"] == "docker"
    assert set(slurm_jobs(Path(case["run_dir"]))) == set(provenance["jobs"])


def test_a_service_worker_sends_its_runs_to_slurm(slurm, tmp_path):
    """`recast worker --executor slurm ...` hands the executor and its settings to the run it starts."""
    from conftest import FIXTURES

    catalog = tmp_path / "catalog"
    shutil.copytree(FIXTURES / "catalog" / "toy", catalog / "toy")
    request = catalog / "toy" / "requests" / "default.yaml"
    document = tmp_path / "request.json"
    import yaml

    document.write_text(json.dumps(yaml.safe_load(request.read_text())))
    outcome = tmp_path / "outcome.json"
    settings = json.dumps({"partition": PARTITION, "status_interval": 1})
    runner = subprocess.run(
        [sys.executable, "-m", "recast.service.runner", "--catalog", str(catalog),
         "--analysis", "toy", "--request", str(document), "--files", str(request.parent),
         "--run-dir", str(tmp_path / "run"), "--environment", "host", "--executor", "slurm",
         "--executor-settings", settings, "--parent", str(os.getpid()), "--outcome", str(outcome)],
        capture_output=True, text=True, timeout=300)  # the runner dies with its parent: no `timeout` between
    assert runner.returncode == 0, runner.stderr
    assert json.loads(outcome.read_text())["status"] == "succeeded"
    assert json.loads((tmp_path / "run" / "provenance.json").read_text())["executor"] == "slurm"
    assert sorted(slurm_jobs(tmp_path / "run")) == ["square__0", "square__1", "square__2", "total"]


@pytest.mark.slurm
@pytest.mark.docker
def test_jobs_lost_to_scancel_or_a_node_failure_are_retried_per_their_template(slurm, toy_for_slurm, tmp_path):
    """retries: 1 on the square template; one job scancelled, the other lost with its node (set DOWN)."""
    toy = toy_for_slurm / "toy"
    script = toy / "code" / "square.py"
    script.write_text(script.read_text().replace(
        'if a.label.startswith("nap"):',
        'if a.label == "hang-once" and not os.path.exists("tried"):\n'
        '    open("tried", "w").close()\n    time.sleep(600)\nif a.label.startswith("nap"):'))
    template = toy / "templates" / "square.yaml"
    template.write_text(template.read_text().replace("time_limit: 10m}", "time_limit: 10m, retries: 1}"))
    from recast import images
    from recast.validate import load_analysis

    images.build(load_analysis(toy))
    request = toy / "requests" / "hang.yaml"
    request.write_text("schema: recast/request/1.0.0\nanalysis: toy\nparameters:\n  points:\n"
                       "    - {x: 1, label: hang-once, events: data/a.txt}\n"
                       "    - {x: 2, label: hang-once, events: data/b.txt}\n")
    run_dir = tmp_path / "run"
    node = subprocess.run(["sinfo", "-h", "-N", "-o", "%N"], capture_output=True, text=True).stdout.split()[0]
    proc = start("run", "toy", "--catalog", str(toy_for_slurm), "--request", str(request), "--cores", "2",
                 "--workdir", str(run_dir), "--json", *SLURM, limit=400)
    try:
        jobs = wait_for(lambda: (j := slurm_jobs(run_dir)) and len(j) == 2
                        and all(v["JobState"] == "RUNNING" for v in j.values()) and j, 120, "two running Slurm jobs")
        wait_for(lambda: all((run_dir / "steps" / s / "tried").exists() for s in jobs), 60, "both jobs to hang")
        subprocess.run(["scancel", jobs["square__0"]["JobId"]], check=True)
        subprocess.run(["scontrol", "update", f"nodename={node}", "state=down", "reason=recast-test"], check=True)
        wait_for(lambda: slurm_jobs(run_dir).get("square__1", {}).get("JobState") not in (None, "RUNNING"),
                 60, "the node's job to end")
    finally:
        subprocess.run(["scontrol", "update", f"nodename={node}", "state=resume"], check=False)
    try:
        out, err = proc.communicate(timeout=300)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert json.loads((run_dir / "results.json").read_text())["values"]["squares"] == [2, 6]
    for step in ("square__0", "square__1"):
        job = record(run_dir, step)
        assert job["exit_code"] == 0 and job["attempt"] == 2, (step, job)
    # Snakemake saw the cancelled job fail and submitted it again; the node's job Slurm requeued itself.
    assert f"step square__0: Slurm job {jobs['square__0']['JobId']} cancelled (scancel, or an operator) " \
           "(state CANCELLED)" in err and "; started again (attempt 2 of 2)" in err, err
    assert f"step square__1: Slurm job {jobs['square__1']['JobId']} was requeued by Slurm (its node failed, " \
           "or an operator requeued it); started again (attempt 2 of 2)" in err, err
