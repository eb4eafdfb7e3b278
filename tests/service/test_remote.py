"""`recast serve`, `recast serve admin`, `recast worker` and `recast remote`, as processes, against a real
uvicorn on 127.0.0.1 (a free port; every step bounded in time)."""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import sys
import time

import pytest
import requests

from conftest import ROOT
from .conftest import wait_for


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Recast:
    def __init__(self, tmp_path, catalog, database_url):
        self.data = tmp_path / "data"
        self.catalog = catalog
        self.database_url = database_url
        self.env = {**os.environ, "RECAST_REMOTE_CONFIG": str(tmp_path / "remote.json"), "PYTHONUNBUFFERED": "1"}
        self.env.pop("RECAST_TOKEN", None)
        self.env.pop("RECAST_URL", None)

    def service_options(self) -> list[str]:
        found = ["--data", str(self.data), "--catalog", str(self.catalog)]
        return found + (["--database-url", self.database_url] if self.database_url else [])

    def __call__(self, *args, env=None, timeout=120, check=True) -> subprocess.CompletedProcess:
        done = subprocess.run([sys.executable, "-m", "recast", *args], cwd=ROOT, capture_output=True, text=True,
                              env={**self.env, **(env or {})}, timeout=timeout)
        if check:
            assert done.returncode == 0, (args, done.stdout, done.stderr)
        return done

    def json(self, *args, **kwargs):
        return json.loads(self(*args, "--json", **kwargs).stdout)

    def create_user(self, name, role, analysis=None) -> str:
        extra = ["--analysis", analysis] if analysis else []
        return self.json("serve", *self.service_options(), "admin", "create-user", name, "--role", role, *extra)["token"]


@pytest.fixture
def recast(tmp_path, catalog, database_url):
    return Recast(tmp_path, catalog, database_url)


@pytest.fixture
def server(recast):
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "recast", "serve", *recast.service_options(), "--port", str(port)],
                               cwd=ROOT, env=recast.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"

    def up():
        try:
            return requests.get(f"{url}/api/analyses", timeout=2).status_code == 200
        except requests.RequestException:
            return process.poll() is not None

    assert wait_for(up, 60, every=0.2) and process.poll() is None, process.communicate(timeout=10)[0]
    yield url
    process.send_signal(signal.SIGTERM)
    try:
        process.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()


def test_remote_client_against_a_real_server(recast, server, tmp_path, catalog):
    root = recast.create_user("root", "admin")
    alice = recast.create_user("alice", "requester")
    maria = recast.create_user("maria", "maintainer", "toy")
    assert root.startswith("recast_") and alice != maria
    assert requests.get(f"{server}/openapi.json", timeout=10).json()["info"]["title"] == "recast request service"

    login = recast.json("remote", "login", server, "--token", alice)
    assert login["user"] == "alice"
    config = tmp_path / "remote.json"
    assert stat.S_IMODE(config.stat().st_mode) == 0o600 and alice in config.read_text()

    request_file = catalog / "toy" / "requests" / "default.yaml"
    submitted = recast.json("remote", "submit", "toy", "--request", str(request_file), "--title", "three points")
    rid = submitted["id"]
    assert submitted["status"] == "submitted" and len(submitted["files"]) == 2

    bad = tmp_path / "bad" / "request.yaml"
    bad.parent.mkdir()
    bad.write_text("parameters: {points: [{x: one, label: a, events: missing.txt}]}\n")
    refused = recast("remote", "submit", "toy", "--request", str(bad), check=False)
    assert refused.returncode != 0 and "missing.txt" in refused.stderr, refused.stderr

    as_maria = {"RECAST_TOKEN": maria, "RECAST_URL": server}
    mine = recast.json("remote", "status", env=as_maria)
    assert [r["id"] for r in mine] == [rid]
    cannot = recast("remote", "approve", str(rid), check=False)  # alice may not approve
    assert cannot.returncode != 0 and "403" in cannot.stderr
    approved = recast.json("remote", "approve", str(rid), "--comment", "fine", env=as_maria)
    assert approved["status"] == "queued"

    recast("worker", *recast.service_options(), "--environment", "host", "--once", "--lease-seconds", "30",
           timeout=180)
    finished = recast.json("remote", "wait", str(rid), "--timeout", "60", "--every", "0.5")
    assert finished["status"] == "succeeded"
    results = recast.json("remote", "results", str(rid))
    assert results["values"]["total"] == 21.25
    assert "21.25" in recast("remote", "results", str(rid)).stdout
    written = recast.json("remote", "download", str(rid), "--to", str(tmp_path / "got"))
    assert sorted(os.path.relpath(p, tmp_path / "got") for p in written) == [
        "provenance.json", "results.json", "steps/total/total.json"]
    assert json.loads((tmp_path / "got" / "results.json").read_text())["values"]["total"] == 21.25
    late = recast("remote", "cancel", str(rid), check=False)
    assert late.returncode != 0 and "409" in late.stderr

    second = recast.json("remote", "submit", "toy", "--request", str(request_file))["id"]
    rejected = recast.json("remote", "reject", str(second), "--reason", "duplicate", env=as_maria)
    assert rejected["status"] == "rejected" and rejected["reason"] == "duplicate"
    shown = recast("remote", "status", str(second))
    assert "rejected: duplicate" in shown.stdout
    assert recast("remote", "wait", str(second), "--timeout", "5", check=False).returncode == 1

    # A revoked token is refused at once.
    tokens = recast.json("serve", *recast.service_options(), "admin", "users")
    alice_token = next(u for u in tokens if u["name"] == "alice")["tokens"][0]["id"]
    recast("serve", *recast.service_options(), "admin", "revoke-token", alice_token)
    assert "401" in recast("remote", "status", check=False).stderr


def test_serve_with_worker_is_a_one_command_demo(tmp_path, catalog):
    port = free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen([sys.executable, "-m", "recast", "serve", "--data", str(tmp_path / "demo"),
                                "--catalog", str(catalog), "--port", str(port), "--with-worker",
                                "--environment", "host"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    lines = []
    try:
        ends = time.monotonic() + 60
        while time.monotonic() < ends and not any("recast service on http://" in line for line in lines):
            line = process.stdout.readline()
            if not line:
                break
            lines.append(line)
        output = "".join(lines)
        token = next(line.split(": ", 1)[1].strip() for line in lines if line.startswith("admin token"))
        assert f"http://127.0.0.1:{port}/" in output
        url = f"http://127.0.0.1:{port}"
        assert wait_for(lambda: _answers(url), 30, every=0.2)
        assert requests.get(f"{url}/api/me", headers={"Authorization": f"Bearer {token}"},
                            timeout=10).json()["name"] == "admin"
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()


def _answers(url) -> bool:
    try:
        return requests.get(f"{url}/api/analyses", timeout=2).status_code == 200
    except requests.RequestException:
        return False
