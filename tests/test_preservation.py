"""Images outlive registries: archives with sha256, restored into the engine; `recast catalog check`."""

from __future__ import annotations

import json

import docker
import pytest
from click.testing import CliRunner

from recast import catalog, execution, images, preservation
from recast import request as request_mod
from recast.cli import cli
from recast.errors import RecastError
from recast.validate import load_analysis

pytestmark = pytest.mark.docker


def run(analysis, run_dir):
    req = request_mod.load(analysis, analysis.examples["default"].request)
    execution.run(analysis, req, run_dir, environment="docker")
    return json.loads((run_dir / "results.json").read_text())["values"]


def test_image_removed_from_engine_is_restored_from_its_archive(toy, tmp_path):
    analysis = load_analysis(toy)
    # A tag of its own, so that removing it cannot disturb other tests' images.
    spec = (toy / "analysis.yaml").read_text().replace("recast/toy:1.0.0", "recast/toy-preserve:1.0.0")
    (toy / "analysis.yaml").write_text(spec)
    analysis = load_analysis(toy)
    built = images.build(analysis)["toy"]
    before = run(analysis, tmp_path / "before")

    manifest = preservation.save_images(analysis)
    archive = toy / "preserved" / "images" / "toy.tar"
    assert manifest["images"]["toy"]["id"] == built.id
    assert manifest["images"]["toy"]["sha256"] == preservation.sha256_file(archive)

    client = docker.from_env()
    client.images.remove(built.id, force=True)
    with pytest.raises(RecastError, match=r"not in this Docker engine: run `recast images build toy`"):
        run(analysis, tmp_path / "gone")

    result = CliRunner().invoke(cli, ["images", "load", "toy", "--catalog", str(toy.parent)])
    assert result.exit_code == 0, result.output
    assert client.images.get("recast/toy-preserve:1.0.0").id == built.id
    assert run(load_analysis(toy), tmp_path / "after") == before


def test_damaged_archive_is_refused_before_loading(toy, tmp_path):
    analysis = load_analysis(toy)
    images.build(analysis)
    preservation.save_images(analysis)
    archive = toy / "preserved" / "images" / "toy.tar"
    data = archive.read_bytes()
    archive.write_bytes(data[: len(data) // 2])
    with pytest.raises(RecastError, match=r"damaged or truncated: sha256 .* expected"):
        preservation.load_images(analysis)
    outcomes = {o.name: o for o in catalog.check_entry(toy)}
    assert outcomes["image toy available"].passed, "the engine still has the image"

    (toy / "preserved" / "images.json").write_text("{not json")
    with pytest.raises(RecastError, match="unreadable image manifest"):
        preservation.load_images(analysis)


def test_catalog_check_needs_pins_and_detects_changed_files(toy):
    runner = CliRunner()
    analysis = load_analysis(toy)
    images.build(analysis)
    result = runner.invoke(cli, ["catalog", "check", "--catalog", str(toy.parent), "--json"])
    assert result.exit_code == 1
    failed = {c["name"] for c in json.loads(result.stdout)[0]["checks"] if not c["passed"]}
    assert "file code/square.py" in failed and not any(n.startswith("image") for n in failed)

    assert runner.invoke(cli, ["catalog", "pin", "toy", "--catalog", str(toy.parent)]).exit_code == 0
    result = runner.invoke(cli, ["catalog", "check", "--catalog", str(toy.parent)])
    assert result.exit_code == 0, result.output

    (toy / "requests" / "data" / "a.txt").write_text("tampered\n")
    result = runner.invoke(cli, ["catalog", "check", "--catalog", str(toy.parent), "--json"])
    assert result.exit_code == 1
    bad = [c for c in json.loads(result.stdout)[0]["checks"] if not c["passed"]]
    assert [c["name"] for c in bad] == ["file requests/data/a.txt"]
    assert "sha256 differs" in bad[0]["message"]

    (toy / "requests" / "default.results.json").unlink()
    result = runner.invoke(cli, ["catalog", "check", "--catalog", str(toy.parent)])
    assert result.exit_code == 1 and "invalid" not in result.output and "FAIL" in result.output
