"""Building images with a real Docker engine, the lock of their IDs, and `recast images build`.

Fails (never skips) without an engine: CI starts one. The example analysis's
images are built too (cached after `recast images build wh1lbb`, about 80 s
from nothing) and run the way the workflow runs them.
"""

from __future__ import annotations

import json
import time

import docker
import pytest
from click.testing import CliRunner

from recast import images
from recast.cli.images import images as images_cli
from recast.environments import Job
from recast.environments.docker import DockerEnvironment, engine_available
from recast.errors import RecastError
from recast.model import Analysis, ImageSpec

from conftest import ROOT

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module", autouse=True)
def engine():
    if not engine_available():
        pytest.fail("no Docker engine answers (DOCKER_HOST or /var/run/docker.sock): "
                    "start one with `bash containers/engine.sh`; docker tests must not be skipped")
    images.ensure_base()


def analysis_with(root, dockerfiles: dict[str, str], version="1", context=None, dockerfile_paths=None) -> Analysis:
    root.mkdir(parents=True, exist_ok=True)
    specs = {}
    for name, text in dockerfiles.items():
        path = root / f"Dockerfile.{name}"
        path.write_text(text)
        specs[name] = ImageSpec(name=name, tag=f"recast/test-{name}:{version}", context=root, dockerfile=path)
    for name, path in (dockerfile_paths or {}).items():
        specs[name] = ImageSpec(name=name, tag=f"recast/test-{name}:{version}", context=context, dockerfile=path)
    return Analysis(id="imgtest", version=version, title="", description="", root=root,
                    spec_path=root / "analysis.yaml", document={}, metadata={}, images=specs, templates={},
                    stages=(), request_parameters={}, results={}, examples={})


def test_build_pins_ids_in_the_lock_and_resolve_reads_them(tmp_path):
    analysis = analysis_with(tmp_path, {
        "one": "ARG BASE=python:3.11-slim\nFROM ${BASE}\nRUN echo one > /built.txt\n",
        "two": "ARG BASE=python:3.11-slim\nFROM ${BASE}\nRUN echo two > /built.txt\n",
    })
    assert images.resolve(analysis, "one").id is None, "nothing built yet"
    lines = []
    built = images.build(analysis, progress=lambda name, line: lines.append((name, line)))

    api = docker.from_env().api
    lock = json.loads((tmp_path / "images.lock.json").read_text())
    assert lock["analysis"] == "imgtest" and lock["version"] == "1"
    base_id = api.inspect_image(images.DEFAULT_BASE)["Id"]
    for name in ("one", "two"):
        entry = lock["images"][name]
        info = api.inspect_image(f"recast/test-{name}:1")
        assert entry["id"] == info["Id"] == built[name].id == images.resolve(analysis, name).id
        assert entry["tag"] == f"recast/test-{name}:1"
        assert entry["base"] == images.DEFAULT_BASE and entry["base_id"] == base_id
        assert len(entry["dockerfile_sha256"]) == 64 and entry["built_at"].endswith("+00:00")
        assert info["Config"]["Labels"]["recast.analysis"] == "imgtest"
        assert info["Config"]["Labels"]["recast.image"] == name
    assert {name for name, _ in lines} == {"one", "two"} and any("Successfully built" in l for _, l in lines)

    # The lock belongs to one version of the entry, and to the tag it was built as.
    assert images.resolve(analysis_with(tmp_path / "v2", {"one": "FROM x\n"}, version="2"), "one").id is None
    with pytest.raises(RecastError, match=r"analysis imgtest has no image 'three' \(it has: one, two\)"):
        images.resolve(analysis, "three")


def test_build_failure_names_the_image_and_shows_the_log_tail(tmp_path):
    analysis = analysis_with(tmp_path, {
        "good": "ARG BASE\nFROM ${BASE}\n",
        "broken": "ARG BASE\nFROM ${BASE}\nRUN echo marker-before-failure && exit 3\n",
    })
    with pytest.raises(RecastError) as err:
        images.build(analysis)
    message = str(err.value)
    assert "image 'broken' (recast/test-broken:1) of analysis imgtest" in message
    assert str(tmp_path / "Dockerfile.broken") in message
    assert "returned a non-zero code: 3" in message and "marker-before-failure" in message
    lock = json.loads((tmp_path / "images.lock.json").read_text())
    assert list(lock["images"]) == ["good"], "what was built before the failure stays recorded"


def test_base_argument_is_the_build_arg_base(tmp_path):
    first = analysis_with(tmp_path / "a", {"layer": "ARG BASE\nFROM ${BASE}\nRUN echo from-layer > /layer.txt\n"})
    images.build(first)
    second = analysis_with(tmp_path / "b", {"on-top": "ARG BASE\nFROM ${BASE}\nRUN grep -q from-layer /layer.txt\n"})
    built = images.build(second, base="recast/test-layer:1")
    lock = json.loads((tmp_path / "b" / "images.lock.json").read_text())
    assert lock["images"]["on-top"]["base"] == "recast/test-layer:1"
    assert lock["images"]["on-top"]["base_id"] == images.resolve(first, "layer").id
    assert built["on-top"].id


def test_unreachable_registry_base_says_what_to_do(tmp_path):
    analysis = analysis_with(tmp_path, {"pulled": "ARG BASE\nFROM ${BASE}\n"})
    with pytest.raises(RecastError, match=r"(?s)image 'pulled' .* failed: .*the base image "
                                          r"registry\.invalid/nothing:1 is not in this Docker engine.*leave out --base"):
        images.build(analysis, base="registry.invalid/nothing:1")


def test_missing_dockerfile_is_reported(tmp_path):
    analysis = analysis_with(tmp_path, {}, context=tmp_path, dockerfile_paths={"ghost": tmp_path / "Dockerfile.ghost"})
    with pytest.raises(RecastError, match=r"image 'ghost' .*: Dockerfile .*Dockerfile\.ghost does not exist"):
        images.build(analysis)


def test_ensure_base_is_idempotent():
    started = time.monotonic()
    assert images.ensure_base() == docker.from_env().api.inspect_image(images.DEFAULT_BASE)["Id"]
    assert time.monotonic() - started < 5, "an existing base image must not be rebuilt"


def test_cli_builds_a_catalog_entry_and_fails_clearly(toy_catalog):
    runner = CliRunner()
    result = runner.invoke(images_cli, ["build", "toy", "--catalog", str(toy_catalog), "--json", "-q"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [(r["analysis"], r["name"], r["tag"]) for r in rows] == [("toy", "toy", "recast/toy:1.0.0")]
    lock = json.loads((toy_catalog / "toy" / "images.lock.json").read_text())
    assert lock["images"]["toy"]["id"] == rows[0]["id"]

    table = runner.invoke(images_cli, ["build", "--catalog", str(toy_catalog), "-q"])  # every entry
    assert table.exit_code == 0 and "recast/toy:1.0.0" in table.stdout

    missing = runner.invoke(images_cli, ["build", "nope", "--catalog", str(toy_catalog)])
    assert missing.exit_code != 0
    assert isinstance(missing.exception, RecastError) and "no analysis 'nope'" in str(missing.exception)


def test_example_analysis_images_build_and_run_isolated(tmp_path):
    """The wh1lbb Dockerfiles build on the local base and their commands run as a job would."""
    analysis = analysis_with(tmp_path / "entry", {}, context=ROOT, dockerfile_paths={
        "selection": ROOT / "containers/wh1lbb/Dockerfile.selection",
        "stats": ROOT / "containers/wh1lbb/Dockerfile.stats",
    })
    built = images.build(analysis)
    env = DockerEnvironment()
    # The console scripts the job templates call must exist and load (as their first import would).
    load_scripts = ("import shutil; from importlib.metadata import entry_points; "
                    "scripts = {{e.name: e for e in entry_points(group='console_scripts')}}; "
                    "[(shutil.which(n), scripts[n].load()) for n in {names!r}]; ")
    checks = {
        "selection": ["python", "-c", load_scripts.format(names=("wh1lbb-select", "wh1lbb-generate"))
                      + "import pylhe; print('ok')"],
        "stats": ["python", "-c", load_scripts.format(names=("wh1lbb-patch", "wh1lbb-gather", "recast"))
                  + "import pyhf, recast.resources as r, recast.spec as s; from recast.cli import cli; "
                  "assert pyhf.__version__ == '0.7.6', pyhf.__version__; assert cli.get_command(None, 'likelihood') is not None; "
                  "assert all((r.schema_dir(v) / 'result.schema.json').is_file() for v in s.SCHEMA_VERSIONS); print('ok')"],
    }
    for name, argv in checks.items():
        log = tmp_path / f"{name}.log"
        outcome = env.run(Job(run_id="imgtest", step=name, argv=argv, outdir=tmp_path / name, read_only=[],
                              image=built[name], log_path=log, time_limit_s=120))
        assert (outcome.exit_code, log.read_text().strip()) == (0, "ok"), log.read_text()
