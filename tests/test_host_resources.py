"""Host resources (CVMFS-like folders) and credentials (a grid proxy) a template declares by name.

The operator maps names to this machine in RECAST_RESOURCES; a job gets the
folder read-only and a private read-only copy of the credential, named by its
variable; neither the credential's content nor its host path is recorded.
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

SECRET = "SECRET-PROXY-CONTENT-5f0c"

GRID = """\
schema: recast/template/1.1.0
name: grid
parameters:
  label: {type: string}
process:
  kind: script
  interpreter: bash
  script: |
    set -eu
    printf '%s' {label} > {outdir}/label.txt
    wc -c < "$X509_USER_PROXY" > {outdir}/proxy_bytes.txt
    if [ -w "$X509_USER_PROXY" ]; then echo writable > {outdir}/proxy_writable.txt; fi
    if [ -d /cvmfs ]; then
      cat /cvmfs/sw/release.txt > {outdir}/release.txt
      if touch /cvmfs/sw/tampered 2>/dev/null; then echo tampered > {outdir}/cvmfs_writable.txt; fi
    fi
environment:
  kind: image
  image: toy
  resources: {cores: 1, memory: 256MiB, time_limit: 60s}
  host_resources: [cvmfs]
  credentials: [grid_proxy]
outputs:
  files: {label: label.txt, proxy_bytes: proxy_bytes.txt}
"""


@pytest.fixture
def provided(tmp_path, monkeypatch):
    """A machine that provides cvmfs (a folder with a release file) and grid_proxy (a 0600 file)."""
    cvmfs = tmp_path / "host" / "cvmfs"
    (cvmfs / "sw").mkdir(parents=True)
    (cvmfs / "sw" / "release.txt").write_text("release 21.2.4")
    proxy = tmp_path / "host" / "x509up"
    proxy.write_text(SECRET)
    proxy.chmod(0o600)
    config = tmp_path / "host" / "resources.yaml"
    config.write_text(yaml.safe_dump({"host_resources": {"cvmfs": {"path": str(cvmfs), "mount": "/cvmfs"}},
                                      "credentials": {"grid_proxy": {"file": str(proxy), "env": "X509_USER_PROXY"}}}))
    monkeypatch.setenv("RECAST_RESOURCES", str(config))
    return {"cvmfs": cvmfs, "proxy": proxy}


@pytest.fixture
def grid(toy):
    (toy / "templates" / "grid.yaml").write_text(GRID)
    spec = yaml.safe_load((toy / "analysis.yaml").read_text())
    spec["templates"]["grid"] = "templates/grid.yaml"
    spec["workflow"]["stages"].append({"name": "grid", "template": "grid", "scatter": {"over": "$request.points"},
                                       "bind": {"label": "$item.label"}})
    spec["results"]["files"]["proxy_bytes"] = "$steps.grid.proxy_bytes"
    (toy / "analysis.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    return toy


def run(toy, run_dir: Path, environment: str):
    analysis = load_analysis(toy)
    if environment == "docker":
        images.build(analysis)
        analysis = load_analysis(toy)
    return execution.run(analysis, request_mod.load(analysis, analysis.examples["default"].request), run_dir,
                         environment=environment, cores=2)


@pytest.mark.parametrize("environment", ["host", pytest.param("docker", marks=pytest.mark.docker)])
def test_a_job_gets_its_host_resources_read_only_and_its_credential_unrecorded(grid, provided, tmp_path, environment):
    assert check(grid)[1] == []
    before = set(Path("/tmp").glob("recast-credentials-*"))
    run_dir = tmp_path / "run"
    run(grid, run_dir, environment)
    step = run_dir / "steps" / "grid__0"
    assert (step / "proxy_bytes.txt").read_text().strip() == str(len(SECRET))
    if environment == "docker":
        assert (step / "release.txt").read_text() == "release 21.2.4"
        assert not (step / "cvmfs_writable.txt").exists() and not (provided["cvmfs"] / "sw" / "tampered").exists()
        assert not (step / "proxy_writable.txt").exists(), "the credential is mounted read-only"
        assert set(Path("/tmp").glob("recast-credentials-*")) == before, "the private copy is gone after the job"
    record = json.loads((run_dir / "logs" / "grid__0.json").read_text())
    assert record["credentials"] == ["grid_proxy"] and record["host_resources"] == ["cvmfs"]
    for path in run_dir.rglob("*"):
        if path.is_file() and not path.is_symlink():
            text = path.read_bytes()
            assert SECRET.encode() not in text, path
            assert str(provided["proxy"]).encode() not in text, f"{path} names the credential's host path"


def test_a_need_the_machine_does_not_provide_fails_validation_and_the_run(grid, tmp_path, monkeypatch):
    monkeypatch.delenv("RECAST_RESOURCES", raising=False)
    found = [f"{where}: {message}" for _, where, message in check(grid)[1]]
    assert any(p.startswith("environment.host_resources[0]: host resource 'cvmfs' is not provided on this machine: "
                            "an operator maps it to a host folder in the YAML file named by RECAST_RESOURCES")
               for p in found), found
    assert any(p.startswith("environment.credentials[0]: credential 'grid_proxy' is not provided on this machine")
               for p in found), found
    config = tmp_path / "resources.yaml"
    config.write_text("host_resources:\n  cvmfs: {path: relative/path}\n")
    monkeypatch.setenv("RECAST_RESOURCES", str(config))
    found = [f"{where}: {message}" for _, where, message in check(grid)[1]]
    assert any("host_resources.cvmfs: expected {path: ABSOLUTE_HOST_FOLDER" in p for p in found), found
