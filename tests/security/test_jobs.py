"""A job is analyst code running on a stranger's inputs: it must not reach outside its run.

Each test runs the hostile analysis (tests/fixtures/hostile-catalog/hostile) for real:
a real Docker engine, real Snakemake. The attacks are the ones our security
issue reproduced on the old code: links left instead of files, a disk filled,
the host's network reached, containers outliving a killed run, one run's
cancel killing another's container.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import docker
import pytest

from recast import execution
from recast import request as request_mod
from recast.environments import ImageRef, Job
from recast.environments import docker as docker_env
from recast.errors import ExecutionError
from recast.validate import load_analysis

from conftest import ROOT
from security.conftest import recast_command, set_template, start_run, write_request

pytestmark = pytest.mark.docker

ENVIRONMENTS = ["docker", "host"]


def run_points(entry: Path, points: list[dict], run_dir: Path, environment: str = "docker"):
    analysis = load_analysis(entry)
    request = request_mod.load(analysis, write_request(run_dir.parent / f"{run_dir.name}-request", points))
    return execution.run(analysis, request, run_dir, environment=environment, cores=2)


def regular_files(folder: Path):
    for root, _, names in os.walk(folder):
        for name in names:
            path = Path(root) / name
            if path.is_file() and not path.is_symlink():
                yield path


def recast_containers(label: str = "recast.run") -> list:
    return docker.from_env().containers.list(all=True, filters={"label": label})


def wait_for(condition, timeout: float = 60, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_a_declared_output_that_is_a_link_to_a_host_file_is_refused(hostile, tmp_path, environment):
    secret = tmp_path / "secret.json"
    secret.write_text('{"v": "SECRET-7f3a"}')
    run_dir = tmp_path / "run"
    with pytest.raises(ExecutionError) as failure:
        run_points(hostile, [{"mode": "link-result", "arg": str(secret)}], run_dir, environment)
    assert str(failure.value).startswith(
        "step attack__0 left declared output(s) that are links, hold links, or are not regular files or folders: result (result.json); "
        "recast never follows a link out of a job's folder")
    assert not (run_dir / "results.json").exists()
    assert not any("SECRET-7f3a" in p.read_text(errors="replace") for p in regular_files(run_dir))


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_values_json_planted_as_a_link_is_replaced_never_written_through(hostile, tmp_path, environment):
    victim = tmp_path / "victim.rc"
    victim.write_text("original\n")
    run_dir = tmp_path / "run"
    run_points(hostile, [{"mode": "link-values", "arg": str(victim)}], run_dir, environment)
    assert victim.read_text() == "original\n"
    values = run_dir / "steps" / "attack__0" / "values.json"
    assert not values.is_symlink() and json.loads(values.read_text()) == {"v": 1}
    assert json.loads((run_dir / "results.json").read_text())["values"]["v"] == [1]


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_a_job_that_fills_the_disk_is_stopped_at_its_output_limit(hostile, tmp_path, environment):
    run_dir = tmp_path / "run"
    with pytest.raises(ExecutionError) as failure:
        run_points(hostile, [{"mode": "fill", "arg": "1024"}], run_dir, environment)  # 1 GiB, limit 16 MiB
    assert str(failure.value).startswith("step attack__0 wrote more than its output limit of 16 MiB "
                                         "(resources.output of template 'attack') and was stopped")
    written = (run_dir / "steps" / "attack__0" / "big.bin").stat().st_size
    assert written < 256 * 2**20, f"stopped only after {written} bytes"


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_a_job_that_exhausts_inodes_is_stopped(hostile, tmp_path, environment):
    from recast.environments.watch import MAX_ENTRIES

    with pytest.raises(ExecutionError) as failure:
        run_points(hostile, [{"mode": "files", "arg": str(4 * MAX_ENTRIES)}], tmp_path / "run", environment)
    assert str(failure.value).startswith(f"step attack__0 left more than {MAX_ENTRIES} files and folders in its "
                                         "output folder and was stopped")
    assert len(os.listdir(tmp_path / "run" / "steps" / "attack__0" / "many")) < 4 * MAX_ENTRIES


def test_an_input_that_is_a_link_is_never_mounted(hostile, tmp_path):
    from recast import images

    target = tmp_path / "host-file"
    target.write_text("host\n")
    link = tmp_path / "input.json"
    link.symlink_to(target)
    image = images.resolve(load_analysis(hostile), "toy")
    job = Job(run_id="hostile-test", step="next", argv=["cat", str(link)], outdir=tmp_path / "out",
              read_only=[link], image=ImageRef(image.name, image.tag, image.id, "hostile"),
              log_path=tmp_path / "log")
    with pytest.raises(ExecutionError, match=r"^step next: input .*input\.json is a link, or not a regular file or folder"):
        docker_env.DockerEnvironment().run(job)


def test_an_image_pinned_by_tag_is_refused(tmp_path):
    job = Job(run_id="hostile-test", step="s", argv=["true"], outdir=tmp_path / "out", read_only=[],
              image=ImageRef("toy", "recast/toy:1.0.0", "recast/toy:1.0.0", "hostile"))
    with pytest.raises(ExecutionError, match=r"pinned as 'recast/toy:1.0.0', which is not an image ID"):
        docker_env.DockerEnvironment().run(job)


# --- the network ------------------------------------------------------------------------------


def _listen(host: str) -> socket.socket:
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind((host, 0))
    server.listen(8)
    return server


def _host_address() -> str:
    """This machine's own address on its main interface (what a job would aim at)."""
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.connect(("192.0.2.254", 9))  # no packet is sent: this only picks the route
        return probe.getsockname()[0]
    finally:
        probe.close()


@pytest.fixture
def outside_host():
    """A test host 'outside' this machine: a network namespace on a veth pair, a TCP server in it."""
    ns, host_if, ns_if = "recast-t-out", "rc-t-out0", "rc-t-out1"
    subprocess.run(["ip", "netns", "del", ns], capture_output=True)
    commands = [["ip", "netns", "add", ns],
                ["ip", "link", "add", host_if, "type", "veth", "peer", "name", ns_if],
                ["ip", "link", "set", ns_if, "netns", ns],
                ["ip", "addr", "add", "198.51.100.1/24", "dev", host_if],
                ["ip", "link", "set", host_if, "up"],
                ["ip", "netns", "exec", ns, "ip", "addr", "add", "198.51.100.2/24", "dev", ns_if],
                ["ip", "netns", "exec", ns, "ip", "link", "set", ns_if, "up"],
                ["ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up"]]
    for command in commands:
        subprocess.run(command, check=True, capture_output=True)
    server = subprocess.Popen(["ip", "netns", "exec", ns, "python3", "-c",
                               "import socket, time\n"
                               "s = socket.socket(); s.bind(('198.51.100.2', 8443)); s.listen(8)\n"
                               "deadline = time.time() + 120\n"
                               "s.settimeout(1)\n"
                               "while time.time() < deadline:\n"
                               "    try: s.accept()[0].close()\n"
                               "    except OSError: pass\n"])
    try:
        yield "198.51.100.2:8443"
    finally:
        server.kill()
        server.wait()
        subprocess.run(["ip", "link", "del", host_if], capture_output=True)
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def test_network_true_reaches_the_outside_but_not_this_machine(hostile, tmp_path, outside_host):
    local_only, everywhere = _listen("127.0.0.1"), _listen("0.0.0.0")
    try:
        bridge = subprocess.run(["ip", "-o", "-4", "addr", "show", "br-recast"], capture_output=True, text=True)
        gateway = bridge.stdout.split(" inet ")[1].split("/")[0]  # this machine's side of the job network
        targets = {"loopback": f"127.0.0.1:{local_only.getsockname()[1]}",
                   "host address": f"{_host_address()}:{everywhere.getsockname()[1]}",
                   "bridge gateway": f"{gateway}:{everywhere.getsockname()[1]}",
                   "outside": outside_host}
        set_template(hostile, "attack", network=True)
        run_dir = tmp_path / "run"
        run_points(hostile, [{"mode": "net", "arg": ",".join(targets.values())}], run_dir)
        reached = json.loads((run_dir / "results.json").read_text())["values"]["v"][0]
        assert {name: reached[t] for name, t in targets.items()} == {
            "loopback": False, "host address": False, "bridge gateway": False, "outside": True}
        record = json.loads((run_dir / "logs" / "attack__0.json").read_text())
        assert record["details"]["network"] == docker_env.JOB_NETWORK

        set_template(hostile, "attack", network=False)  # and without it, nothing at all
        run_points(hostile, [{"mode": "net", "arg": outside_host}], tmp_path / "offline")
        assert json.loads((tmp_path / "offline" / "results.json").read_text())["values"]["v"] == [{outside_host: False}]
    finally:
        local_only.close()
        everywhere.close()


def test_network_true_without_the_isolated_network_is_refused(hostile, tmp_path, monkeypatch):
    monkeypatch.setattr(docker_env, "JOB_NETWORK", "recast-jobs-not-set-up")
    set_template(hostile, "attack", network=True)
    with pytest.raises(ExecutionError, match=r"declares network: true, but the isolated job network "
                                             r"'recast-jobs-not-set-up' is not set up .* containers/job-network\.sh"):
        run_points(hostile, [{"mode": "plain"}], tmp_path / "run")


# --- signals, kill -9, and two runs of one request -------------------------------------------


def _containers_of(run_dir: Path) -> list:
    run_id = json.loads((run_dir / ".recast" / "run.json").read_text())["id"]
    return recast_containers(f"recast.run={run_id}")


def test_sigterm_stops_one_run_and_its_containers_never_the_other_runs(hostile, tmp_path):
    request = write_request(tmp_path / "request", [{"mode": "sleep", "arg": "120"}])
    a = start_run(hostile, request, tmp_path / "a")
    b = start_run(hostile, request, tmp_path / "b")
    try:
        wait_for(lambda: (tmp_path / "a" / ".recast" / "run.json").exists() and _containers_of(tmp_path / "a")
                 and (tmp_path / "b" / ".recast" / "run.json").exists() and _containers_of(tmp_path / "b"),
                 what="both runs' containers")
        run_a = json.loads((tmp_path / "a" / ".recast" / "run.json").read_text())["id"]
        run_b = json.loads((tmp_path / "b" / ".recast" / "run.json").read_text())["id"]
        assert run_a != run_b, "the same request in two folders must be two runs"

        a.send_signal(signal.SIGTERM)
        _, err = a.communicate(timeout=60)
        assert a.returncode == 143
        assert err.strip().splitlines()[-1] == \
            "interrupted (SIGTERM): 0 finished jobs kept; run the same command to resume"
        assert "Traceback" not in err
        assert not _containers_of(tmp_path / "a")
        assert [c.status for c in _containers_of(tmp_path / "b")] == ["running"], "run b's job must live on"

        os.killpg(b.pid, signal.SIGINT)  # Ctrl-C: the terminal signals the whole group
        _, err = b.communicate(timeout=60)
        assert b.returncode == 130
        assert "interrupted (SIGINT): 0 finished jobs kept; run the same command to resume" in err
        assert "Traceback" not in err
        assert not _containers_of(tmp_path / "b")
    finally:
        for process in (a, b):
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def test_kill_9_leaves_nothing_running_and_the_run_resumes_to_the_same_results(hostile, tmp_path):
    points = [{"mode": "plain"}, {"mode": "sleep", "arg": "4"}]
    run_points(hostile, points, tmp_path / "reference")
    reference = json.loads((tmp_path / "reference" / "results.json").read_text())

    request = write_request(tmp_path / "request", points)
    run_dir = tmp_path / "killed"
    killed = start_run(hostile, request, run_dir, "--cores", "2")
    try:
        wait_for(lambda: (run_dir / ".recast" / "run.json").exists()
                 and any(c.labels["recast.step"] == "attack__1" for c in _containers_of(run_dir)),
                 what="the sleeping job's container")
        killed.send_signal(signal.SIGKILL)
        killed.wait(timeout=30)
    finally:
        if killed.poll() is None:
            os.killpg(killed.pid, signal.SIGKILL)
        killed.wait()
    assert _containers_of(run_dir), "the killed run's container is still there (its owner died)"

    gc = subprocess.run(recast_command("gc", "--json"), capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert gc.returncode == 0, gc.stderr
    removed = json.loads(gc.stdout)["removed"]
    assert {(r["step"], r["why"]) for r in removed} >= {("attack__1", "the process that started it is gone")}
    assert not _containers_of(run_dir)

    resumed = subprocess.run(recast_command("run", "hostile", "--catalog", str(hostile.parent), "--request",
                                            str(request), "--workdir", str(run_dir)),
                             capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads((run_dir / "results.json").read_text())["values"] == reference["values"]
    for path in (run_dir / "steps").rglob("*"):
        assert path.lstat().st_uid == os.getuid(), f"{path} must belong to the invoking user"
    assert not _containers_of(run_dir)


def test_a_kill_9_run_is_reaped_by_the_next_run_too(hostile, tmp_path):
    request = write_request(tmp_path / "request", [{"mode": "sleep", "arg": "120"}])
    killed = start_run(hostile, request, tmp_path / "killed")
    try:
        wait_for(lambda: (tmp_path / "killed" / ".recast" / "run.json").exists()
                 and _containers_of(tmp_path / "killed"), what="the container")
    finally:
        os.killpg(killed.pid, signal.SIGKILL)
        killed.wait()
    assert _containers_of(tmp_path / "killed")
    run_points(hostile, [{"mode": "plain"}], tmp_path / "next")  # any run reaps what the dead left
    assert not _containers_of(tmp_path / "killed")


def test_the_reaper_judges_only_owners_it_can_see():
    this_process = docker_env.process_identity()
    boot = this_process.split(":")[0]
    assert docker_env._owner_alive(this_process)
    assert not docker_env._owner_alive(f"{boot}:{2**22 + 17}:123"), "no such process on this machine: gone"
    # Another machine's (or another boot's) process is not ours to judge: its deadline retires it.
    assert docker_env._owner_alive("0123abcd:1:1")
