"""recast export reana: the exported workflow reproduces `recast run` value for value.

The exported rules run in `docker://REPOSITORY@sha256:...` on REANA; here the
folder is run by plain Snakemake without a container runtime (Snakemake then
ignores `container:`), so each command runs on this machine's Python: the
toy's commands need only python3. reana-client checks reana.yaml offline when
it can be installed (in a venv of its own: its pins are not ours).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from recast import execution, images
from recast import request as request_mod
from recast.errors import RecastError
from recast.export.reana import export
from recast.validate import load_analysis
from test_registry import registry  # noqa: F401  (a loopback registry)

pytestmark = pytest.mark.docker

REANA_VENV = Path(os.environ.get("RECAST_REANA_VENV", "/tmp/recast-reana-client"))


def reana_client() -> str | None:
    found = shutil.which("reana-client") or (REANA_VENV / "bin" / "reana-client")
    if Path(found).is_file():
        return str(found)
    made = subprocess.run([sys.executable, "-m", "venv", str(REANA_VENV)], capture_output=True, timeout=300)
    if made.returncode == 0:
        subprocess.run([str(REANA_VENV / "bin" / "pip"), "install", "-q", "reana-client"], capture_output=True,
                       timeout=900)
    return str(REANA_VENV / "bin" / "reana-client") if (REANA_VENV / "bin" / "reana-client").is_file() else None


def test_export_refuses_images_not_pushed(toy, tmp_path):
    analysis = load_analysis(toy)
    images.build(analysis)
    request = request_mod.load(analysis, analysis.examples["default"].request)
    with pytest.raises(RecastError, match="no registry digest.*images push"):
        export(load_analysis(toy), request, tmp_path / "out")


def test_exported_workflow_reproduces_recast_run(toy, registry, tmp_path):  # noqa: F811
    template = toy / "templates" / "square.yaml"
    template.write_text(template.read_text().replace("time_limit: 60s}", "time_limit: 60s, retries: 2}"))
    analysis = load_analysis(toy)
    images.build(analysis)
    [pushed] = images.push(analysis, registry).values()
    analysis = load_analysis(toy)
    request = request_mod.load(analysis, analysis.examples["default"].request)
    execution.run(analysis, request, tmp_path / "run", environment="docker", cores=2)

    out = export(analysis, request, tmp_path / "reana")
    reana = yaml.safe_load((out / "reana.yaml").read_text())
    assert reana["workflow"] == {"type": "snakemake", "file": "Snakefile"}
    assert reana["outputs"]["files"] == ["results.json", "provenance.json"]
    assert {"inputs/data/a.txt", "inputs/data/b.txt", "entry/code/square.py", "entry/code/total.py"} \
        <= set(reana["inputs"]["files"])
    assert all((out / f).is_file() for f in reana["inputs"]["files"])
    snakefile = (out / "Snakefile").read_text()
    assert snakefile.count(f'container: "docker://{pushed}"') == 3  # square, total, results
    assert 'output: "steps/square__{branch}/square.json"' in snakefile  # branches as a wildcard
    assert snakefile.count("    retries: 2\n") == 1, "the square template's retries, and only its"
    assert 'resources: mem_mb=256, runtime=1, kubernetes_memory_limit="256Mi", kubernetes_job_timeout=60' in snakefile
    stages = json.dumps(json.loads((out / "recast-export.json").read_text())["stages"])
    assert str(tmp_path) not in snakefile + stages, "commands and inputs are relative to the folder"

    ran = subprocess.run(["timeout", "-s", "KILL", "300", sys.executable, "-m", "snakemake", "--cores", "2", "-q"],
                         cwd=out, capture_output=True, text=True)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    exported = json.loads((out / "results.json").read_text())
    recast_run = json.loads((tmp_path / "run" / "results.json").read_text())
    assert exported["values"] == recast_run["values"]
    assert exported["files"] == recast_run["files"]
    provenance = json.loads((out / "provenance.json").read_text())
    assert set(provenance["images"].values()) == {pushed}
    assert provenance["inputs"]["inputs/data/a.txt"] == recast_run_input_digest(tmp_path / "run", "data/a.txt")

    client = reana_client()
    if client is None:
        if os.environ.get("CI") == "true":
            pytest.fail("reana-client could not be installed from PyPI")
        pytest.skip("reana-client could not be installed")
    checked = subprocess.run([client, "validate", "-f", "reana.yaml"], cwd=out, capture_output=True, text=True,
                             timeout=300)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "Valid REANA specification file" in checked.stdout + checked.stderr


def recast_run_input_digest(run_dir: Path, name: str) -> str:
    import hashlib

    return hashlib.sha256((run_dir / "inputs" / name).read_bytes()).hexdigest()
