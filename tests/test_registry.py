"""Images by registry digest, against a real registry on loopback (Debian's docker-registry, scripts/registry.sh).

The toy's image is made unique to each test (a label), so that deleting it
from the engine never touches an image another test uses.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess

import docker
import pytest

from conftest import ROOT
from recast import execution, images
from recast import request as request_mod
from recast.errors import RecastError
from recast.validate import load_analysis
from test_slurm import slurm  # noqa: F401  (the one-node cluster, for the remote path)

pytestmark = pytest.mark.docker


@pytest.fixture
def registry(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    state = tmp_path / "registry"
    started = subprocess.run(["bash", str(ROOT / "scripts" / "registry.sh"), str(port), str(state)],
                             capture_output=True, text=True, timeout=600)
    if started.returncode != 0:
        message = f"no registry could be started: {started.stderr.strip()}"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    address = started.stdout.strip()
    yield f"{address}/recast-test"
    os.kill(int((state / "registry.pid").read_text()), signal.SIGTERM)
    client = docker.from_env()
    for image in client.images.list():
        for tag in image.tags:
            if tag.startswith(f"{address}/"):
                client.images.remove(tag)  # the push's tag only; the image stays as it was


@pytest.fixture
def own_toy(toy):
    """The toy analysis with an image of its own (its own tag, and an ID no other test shares)."""
    unique = secrets.token_hex(4)
    (toy / "Dockerfile").write_text((toy / "Dockerfile").read_text() + f"LABEL recast.test=registry-{unique}\n")
    spec = toy / "analysis.yaml"
    spec.write_text(spec.read_text().replace("tag: recast/toy:1.0.0", f"tag: recast/toy-{unique}:1.0.0"))
    images.build(load_analysis(toy))
    analysis = load_analysis(toy)
    yield analysis
    client = docker.from_env()
    for image in client.images.list(filters={"label": f"recast.test=registry-{unique}"}):
        client.images.remove(image.id, force=True)


def run(analysis, run_dir):
    request = request_mod.load(analysis, analysis.examples["default"].request)
    return execution.run(analysis, request, run_dir, environment="docker", cores=2)


def test_pushed_image_is_pulled_by_digest_where_missing_with_the_same_results(own_toy, registry, tmp_path):
    from click.testing import CliRunner

    from recast.cli import cli

    pinned = images.resolve(own_toy, "toy").id
    before = run(own_toy, tmp_path / "before")

    result = CliRunner().invoke(cli, ["images", "push", "toy", "--registry", registry, "--catalog",
                                      str(own_toy.root.parent), "--json", "-q"])
    assert result.exit_code == 0, result.output
    [row] = json.loads(result.stdout)
    repository = f"{registry}/{own_toy.images['toy'].tag.split('/')[-1].split(':')[0]}"
    assert row["registry_ref"].startswith(f"{repository}@sha256:") and row["id"] == pinned
    lock = json.loads((own_toy.root / "images.lock.json").read_text())["images"]["toy"]
    assert (lock["id"], lock["registry_ref"]) == (pinned, row["registry_ref"]), "the lock keeps the local ID too"

    client = docker.from_env()
    client.images.remove(pinned, force=True)
    with pytest.raises(docker.errors.ImageNotFound):
        client.images.get(pinned)

    # Where an image can be pulled from is not what runs: the jobs keep their digests, nothing re-runs.
    assert run(load_analysis(own_toy.root), tmp_path / "before").jobs_run == []

    after = run(load_analysis(own_toy.root), tmp_path / "after")
    assert client.images.get(pinned).id == pinned, "the image pulled by digest is the pinned one"
    a, b = (json.loads((o.run_dir / "results.json").read_text()) for o in (before, after))
    assert a["values"] == b["values"]
    provenance = json.loads((after.run_dir / "provenance.json").read_text())
    assert provenance["images"]["total"] == {"name": "toy", "tag": own_toy.images["toy"].tag, "id": pinned,
                                             "registry": row["registry_ref"]}


def test_anything_but_the_pinned_image_is_refused(own_toy, registry, tmp_path):
    pinned = images.resolve(own_toy, "toy").id
    [pushed] = images.push(own_toy, registry).values()
    client = docker.from_env()
    client.images.remove(pinned, force=True)

    # Another image under the same repository: its digest is real, but it is not the pinned image.
    other = client.images.build(fileobj=__import__("io").BytesIO(
        f"FROM {images.DEFAULT_BASE}\nLABEL recast.test=registry-other-{secrets.token_hex(4)}\n".encode()),
        rm=True)[0]
    repository = pushed.split("@")[0]
    other.tag(repository, "other")
    client.images.push(repository, tag="other")
    other_ref = f"{repository}@{client.images.get_registry_data(f'{repository}:other').id}"
    try:
        lock_path = own_toy.root / "images.lock.json"
        lock = json.loads(lock_path.read_text())
        for wrong, why in ((other_ref, f"is image {other.id}, not the pinned {pinned}: refused"),
                           (f"{repository}:other", "is not REPOSITORY@sha256:DIGEST")):
            lock["images"]["toy"]["registry_ref"] = wrong
            lock_path.write_text(json.dumps(lock))
            with pytest.raises(RecastError, match=why):
                run(load_analysis(own_toy.root), tmp_path / "run")
            with pytest.raises(docker.errors.ImageNotFound):
                client.images.get(pinned)
    finally:
        client.images.remove(other.id, force=True)


@pytest.mark.slurm
def test_a_slurm_job_pulls_the_pinned_image_itself(own_toy, registry, slurm, tmp_path):
    """The remote path: no broker on a Slurm node; the job's own process pulls the image by digest."""
    from test_slurm import SLURM, recast, record

    pinned = images.resolve(own_toy, "toy").id
    images.push(own_toy, registry)
    docker.from_env().images.remove(pinned, force=True)
    result = recast("run", "toy", "--catalog", str(own_toy.root.parent), "--example", "default", "--cores", "2",
                    "--workdir", str(tmp_path / "run"), *SLURM)
    assert result.returncode == 0, result.stderr
    assert docker.from_env().images.get(pinned).id == pinned
    job = record(tmp_path / "run", "square__0")
    assert job["container_broker"] is False and job["details"]["image"] == pinned
    assert json.loads((tmp_path / "run" / "results.json").read_text())["values"]["total"] == 21.25
