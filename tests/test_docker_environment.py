"""The docker environment against a real Docker engine: isolation, limits, labels, failures.

Each test runs real containers of a tiny image built FROM the local base
(``recast/base:bookworm``, made once with debootstrap if missing, ~70-100 s).
Without an engine these tests fail, never skip: CI starts one
(``containers/engine.sh``), and a skipped isolation test proves nothing.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from recast import images
from recast.environments import ImageRef, Job, get_environment
from recast.environments.docker import NOBODY, PIDS_LIMIT, DockerEnvironment, engine_available
from recast.errors import ExecutionError
from recast.model import Analysis, ImageSpec

from conftest import ROOT

pytestmark = pytest.mark.docker

MiB = 1024**2


def require_engine():
    if not engine_available():
        pytest.fail("no Docker engine answers (DOCKER_HOST or /var/run/docker.sock): "
                    "start one with `bash containers/engine.sh`; docker tests must not be skipped")


def tiny_analysis(root: Path, dockerfile_text: str, tag: str = "recast/test-tiny:1") -> Analysis:
    """A hand-built analysis with one image whose context is ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "Dockerfile").write_text(dockerfile_text)
    spec = ImageSpec(name="tiny", tag=tag, context=root, dockerfile=root / "Dockerfile")
    return Analysis(id="tiny", version="1", title="tiny", description="", root=root,
                    spec_path=root / "analysis.yaml", document={}, metadata={}, images={"tiny": spec},
                    templates={}, stages=(), request_parameters={}, results={}, examples={})


@pytest.fixture(scope="session")
def tiny_image(tmp_path_factory) -> ImageRef:
    require_engine()
    analysis = tiny_analysis(tmp_path_factory.mktemp("tiny"),
                             "ARG BASE=python:3.11-slim\nFROM ${BASE}\nLABEL org.recast.test=tiny\n")
    return images.build(analysis)["tiny"]


@pytest.fixture
def env() -> DockerEnvironment:
    return get_environment("docker")


def api():
    import docker

    return docker.from_env().api


def job(tmp_path, image, argv, **kw) -> Job:
    kw.setdefault("outdir", tmp_path / "out")
    kw.setdefault("read_only", [])
    kw.setdefault("log_path", tmp_path / "job.log")
    kw.setdefault("run_id", f"test-{os.getpid()}-{time.monotonic_ns()}")
    return Job(step=kw.pop("step", "probe"), argv=argv, image=image, **kw)


def py(code: str) -> list[str]:
    return ["python3", "-c", textwrap.dedent(code)]


def expected_user() -> str:
    uid, gid = os.getuid(), os.getgid()
    return f"{uid}:{gid}" if uid else f"{NOBODY[0]}:{NOBODY[1]}"


def test_outputs_are_written_and_owned_by_the_invoking_user(env, tiny_image, tmp_path):
    (tmp_path / "job.log").write_text("earlier line\n")
    outdir = tmp_path / "out"
    outdir.mkdir()
    (outdir / "stale.txt").write_text("from an earlier run\n")  # a re-run overwrites earlier outputs
    owner_before = outdir.stat().st_uid, outdir.stat().st_gid
    outcome = env.run(job(tmp_path, tiny_image, py("""
        import os, sys
        print("cwd", os.getcwd(), "uid", os.getuid(), "home", os.environ["HOME"], flush=True)
        print("env", os.environ["MODE"], os.environ["OMP_NUM_THREADS"], flush=True)
        print("to stderr", file=sys.stderr, flush=True)
        open("result.txt", "w").write("42\\n")
        open("stale.txt", "w").write("new\\n")
        os.makedirs("deep/er")
        open("deep/er/leaf.json", "w").write("{}")
    """), env={"MODE": "$(id) fast", "OMP_NUM_THREADS": "3", "HOME": "/root"}, cores=2))
    assert outcome.exit_code == 0 and not outcome.timed_out
    assert (outdir / "result.txt").read_text() == "42\n"
    assert (outdir / "stale.txt").read_text() == "new\n"
    for path in [outdir / "result.txt", outdir / "stale.txt", outdir / "deep", outdir / "deep/er/leaf.json"]:
        assert (path.stat().st_uid, path.stat().st_gid) == (os.getuid(), os.getgid()), path
    assert (outdir.stat().st_uid, outdir.stat().st_gid) == owner_before
    log = (tmp_path / "job.log").read_text()
    assert log.startswith("earlier line\n"), "the log is appended to, not replaced"
    assert f"cwd {outdir} uid {expected_user().split(':')[0]} home /tmp" in log and "to stderr" in log
    assert "env $(id) fast 3" in log, "the template's environment variables arrive verbatim"
    assert outcome.details["user"] == expected_user()
    assert outcome.details["image"] == tiny_image.id
    assert len(outcome.details["container"]) == 64


def test_giving_outputs_back_never_follows_links(env, tiny_image, tmp_path):
    """A job may leave symlinks to host paths: handing its outputs over must not chown their targets."""
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "file").write_text("host data\n")
    if os.getuid() == 0:
        for path in (victim, victim / "file"):
            os.chown(path, 4242, 4242)
    before = {p: (p.stat().st_uid, p.stat().st_gid) for p in (victim, victim / "file")}
    outcome = env.run(job(tmp_path, tiny_image, py(f"""
        import os
        os.symlink({str(victim / "file")!r}, "to-file")
        os.mkdir("sub")
        os.symlink({str(victim)!r}, "sub/to-dir")
    """)))
    assert outcome.exit_code == 0, (tmp_path / "job.log").read_text()
    assert {p: (p.stat().st_uid, p.stat().st_gid) for p in before} == before
    link = tmp_path / "out" / "sub" / "to-dir"
    assert link.is_symlink() and (link.lstat().st_uid, link.lstat().st_gid) == (os.getuid(), os.getgid())


def test_runs_as_non_root_without_capabilities(env, tiny_image, tmp_path):
    outcome = env.run(job(tmp_path, tiny_image, py("""
        import os
        status = dict(l.split(":", 1) for l in open("/proc/self/status"))
        print("uid", os.getuid(), "gid", os.getgid(), "capeff", status["CapEff"].strip())
    """)))
    assert outcome.exit_code == 0
    uid, gid = expected_user().split(":")
    assert f"uid {uid} gid {gid} capeff 0000000000000000" in (tmp_path / "job.log").read_text()
    assert uid != "0"


def test_inputs_are_read_only_and_nothing_else_is_visible(env, tiny_image, tmp_path):
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    (inputs / "events.lhe").write_text("data\n")
    single = tmp_path / "single.txt"
    single.write_text("one file\n")
    (tmp_path / "secret.txt").write_text("not mounted\n")
    # World-writable on the host, so that only the read-only mounts can refuse the writes.
    for path, mode in [(inputs, 0o777), (inputs / "events.lhe", 0o666), (single, 0o666)]:
        path.chmod(mode)
    probes = {
        "append to an input": f"open({str(inputs / 'events.lhe')!r}, 'a').write('x')",
        "create in an input folder": f"open({str(inputs / 'new.txt')!r}, 'w')",
        "write a mounted input file": f"open({str(single)!r}, 'w')",
        "write the image": "open('/opt/x', 'w')",
        "write /var/tmp": "open('/var/tmp/x', 'w')",
    }
    outcome = env.run(job(tmp_path, tiny_image, py(f"""
        import json, os
        probes = {probes!r}
        failed = {{}}
        for name, code in probes.items():
            try:
                exec(code)
                failed[name] = "succeeded"
            except OSError as err:
                failed[name] = err.strerror
        seen = {{
            "input": open({str(inputs / 'events.lhe')!r}).read(),
            "single": open({str(single)!r}).read(),
            "secret": os.path.exists({str(tmp_path / 'secret.txt')!r}),
            "checkout": os.path.exists({str(ROOT / 'recast')!r}),
            "tmp_path": sorted(os.listdir({str(tmp_path)!r})),
            "tmp writable": bool(open("/tmp/scratch", "w").write("ok")),
        }}
        json.dump({{"failed": failed, "seen": seen}}, open("probe.json", "w"))
    """), read_only=[inputs, single]))
    assert outcome.exit_code == 0, (tmp_path / "job.log").read_text()
    probe = json.loads((tmp_path / "out" / "probe.json").read_text())
    assert probe["failed"] == {name: "Read-only file system" for name in probes}
    assert probe["seen"] == {
        "input": "data\n", "single": "one file\n",
        "secret": False,  # a sibling of the mounts is not there
        "checkout": False,  # nor is anything else of the host
        "tmp_path": ["inputs", "out", "single.txt"],
        "tmp writable": True,  # a private scratch /tmp (HOME), gone with the container
    }
    assert (inputs / "events.lhe").read_text() == "data\n" and not (inputs / "new.txt").exists()


def test_no_network_unless_declared(env, tiny_image, tmp_path):
    code = py("""
        import json, socket
        try:
            socket.create_connection(("1.1.1.1", 53), timeout=3)
            connect = "connected"
        except OSError as err:
            connect = err.strerror or type(err).__name__
        interfaces = sorted(l.split(":")[0].strip() for l in open("/proc/net/dev").readlines()[2:])
        json.dump({"connect": connect, "interfaces": interfaces}, open("net.json", "w"))
    """)
    assert env.run(job(tmp_path, tiny_image, code)).exit_code == 0
    isolated = json.loads((tmp_path / "out" / "net.json").read_text())
    assert isolated == {"connect": "Network is unreachable", "interfaces": ["lo"]}

    declared = job(tmp_path, tiny_image, code, outdir=tmp_path / "out2", network=True)
    assert env.run(declared).exit_code == 0
    shared = json.loads((tmp_path / "out2" / "net.json").read_text())
    assert len(shared["interfaces"]) > 1, "a template that declares network gets the host's"


def test_labels_limits_and_removal_seen_from_the_engine(env, tiny_image, tmp_path):
    """While the job runs, the engine shows its labels and limits; afterwards the container is gone."""
    the_job = job(tmp_path, tiny_image, py("""
        import os, time
        def first(*paths):
            for p in paths:
                if os.path.exists(p):
                    return open(p).read().strip()
        open("cgroup.txt", "w").write(" ".join([
            first("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"),
            first("/sys/fs/cgroup/pids.max", "/sys/fs/cgroup/pids/pids.max"),
        ]))
        deadline = time.monotonic() + 30
        while not os.path.exists("release") and time.monotonic() < deadline:
            time.sleep(0.05)
    """), step="select__3", memory_bytes=300 * MiB, cores=0.5, time_limit_s=60)
    outcomes = []
    runner = threading.Thread(target=lambda: outcomes.append(env.run(the_job)))
    runner.start()
    label = f"recast.run={the_job.run_id}"
    try:
        deadline = time.monotonic() + 20
        while not (found := api().containers(filters={"label": label})) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(found) == 1, f"no running container labelled {label}"
        info = api().inspect_container(found[0]["Id"])
    finally:
        (the_job.outdir / "release").touch()
        runner.join(40)
    assert info["Config"]["Labels"]["recast.run"] == the_job.run_id
    assert info["Config"]["Labels"]["recast.step"] == "select__3"
    assert info["Config"]["Labels"]["recast.image"] == "tiny"
    assert info["Image"] == tiny_image.id
    host = info["HostConfig"]
    assert host["Memory"] == 300 * MiB and host["MemorySwap"] == 300 * MiB
    assert host["NanoCpus"] == 500_000_000 and host["PidsLimit"] == PIDS_LIMIT
    assert host["NetworkMode"] == "none" and host["ReadonlyRootfs"] is True
    assert host["CapDrop"] == ["ALL"] and "no-new-privileges" in host["SecurityOpt"]
    assert info["Config"]["User"] == expected_user() and info["Config"]["WorkingDir"] == str(the_job.outdir)

    # Applied, not just requested: the container's own cgroup says so.
    assert (the_job.outdir / "cgroup.txt").read_text() == f"{300 * MiB} {PIDS_LIMIT}"
    assert outcomes and outcomes[0].exit_code == 0
    assert api().containers(all=True, filters={"label": label}) == [], "the container must be removed"


def test_time_limit_kills_and_reports_timed_out(env, tiny_image, tmp_path):
    started = time.monotonic()
    outcome = env.run(job(tmp_path, tiny_image, py("""
        import time
        print("working", flush=True)
        time.sleep(60)
    """), time_limit_s=1.5, run_id="test-timeout"))
    assert outcome.timed_out and outcome.exit_code == -9
    assert time.monotonic() - started < 10
    assert "working" in (tmp_path / "job.log").read_text(), "output before the kill is kept"
    assert api().containers(all=True, filters={"label": "recast.run=test-timeout"}) == []


def test_memory_limit_is_enforced(env, tiny_image, tmp_path):
    outcome = env.run(job(tmp_path, tiny_image, py("""
        blocks = [bytearray(16 * 1024**2) for _ in range(40)]
        print("allocated", sum(map(len, blocks)))
    """), memory_bytes=64 * MiB))
    assert outcome.exit_code == 137 and not outcome.timed_out
    assert outcome.details.get("oom_killed") is True
    assert "allocated" not in (tmp_path / "job.log").read_text()


def test_failing_command_gives_exit_code_and_log(env, tiny_image, tmp_path):
    outcome = env.run(job(tmp_path, tiny_image, py("""
        import sys
        print("reading events.lhe", flush=True)
        sys.exit("error: no events passed the selection")
    """)))
    assert outcome.exit_code == 1 and not outcome.timed_out
    tail = (tmp_path / "job.log").read_text().splitlines()[-2:]
    # Docker copies stdout and stderr separately: lines of the two may swap places.
    assert sorted(tail) == ["error: no events passed the selection", "reading events.lhe"]


def test_hostile_arguments_stay_inert(env, tiny_image, tmp_path):
    hostile = ["$(touch /tmp/pwned); rm -rf /", "`touch pwned`", "a; touch pwned2", "x' && touch pwned3 '", "*"]
    outcome = env.run(job(tmp_path, tiny_image, [
        "python3", "-c", "import json, os, sys; json.dump([sys.argv[1:], os.listdir('/tmp'), os.listdir('.')], "
                         "open('argv.json', 'w'))", *hostile]))
    assert outcome.exit_code == 0
    argv, tmp_listing, cwd_listing = json.loads((tmp_path / "out" / "argv.json").read_text())
    assert argv == hostile, "each element arrives as one argument, unexpanded"
    assert not any("pwned" in name for name in tmp_listing) and cwd_listing == []
    assert sorted(os.listdir(tmp_path / "out")) == ["argv.json"]


def test_hostile_command_name_is_refused_not_run(env, tiny_image, tmp_path):
    with pytest.raises(ExecutionError, match=r"step probe: the Docker engine could not run '\$\(touch /tmp/pwned\)' "
                                             r"in image 'tiny' .*(no such file|executable file not found)"):
        env.run(job(tmp_path, tiny_image, ["$(touch /tmp/pwned)", "x"], run_id="test-badcmd"))
    assert api().containers(all=True, filters={"label": "recast.run=test-badcmd"}) == []


def test_missing_image_says_to_build_it(env, tiny_image, tmp_path):
    unbuilt = ImageRef(name="selection", tag="recast/wh1lbb-selection:9.9.9", id=None)
    with pytest.raises(ExecutionError, match=r"step probe: image 'selection' .*recast images build"):
        env.run(job(tmp_path, unbuilt, ["true"]))
    gone = ImageRef(name="stats", tag="recast/wh1lbb-stats:9.9.9", id="sha256:" + "0" * 64)
    with pytest.raises(ExecutionError, match=r"image 'stats' .* not in this Docker engine: run `recast images build"):
        env.run(job(tmp_path, gone, ["true"]))


def test_missing_input_is_reported_before_anything_runs(env, tiny_image, tmp_path):
    with pytest.raises(ExecutionError, match=r"step probe: input .*absent\.lhe does not exist"):
        env.run(job(tmp_path, tiny_image, ["true"], read_only=[tmp_path / "absent.lhe"]))


def test_sigterm_removes_the_container(tiny_image, tmp_path):
    """Executors cancel a job with SIGTERM: its container must not outlive it."""
    run_id = f"test-sigterm-{os.getpid()}"
    script = textwrap.dedent(f"""
        from pathlib import Path
        from recast.environments import ImageRef, Job
        from recast.environments.docker import DockerEnvironment
        image = ImageRef({tiny_image.name!r}, {tiny_image.tag!r}, {tiny_image.id!r})
        DockerEnvironment().run(Job(run_id={run_id!r}, step="s", argv=["sleep", "60"],
                                    outdir=Path({str(tmp_path / 'out')!r}), read_only=[], image=image))
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT)
    label = f"recast.run={run_id}"
    deadline = time.monotonic() + 20
    while not api().containers(filters={"label": label}) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert api().containers(filters={"label": label}), "the job's container never started"
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(20) == -signal.SIGTERM
    assert api().containers(all=True, filters={"label": label}) == []


def test_engine_available_is_cheap_and_honest(monkeypatch):
    require_engine()
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    started = time.monotonic()
    assert engine_available() is False
    assert time.monotonic() - started < 3
    with pytest.raises(ExecutionError, match="no Docker engine answers.*containers/engine.sh"):
        DockerEnvironment().run(Job(run_id="r", step="s", argv=["true"], outdir=Path("/tmp/unused-out"),
                                    read_only=[], image=ImageRef("x", "x:1", "sha256:" + "1" * 64)))
