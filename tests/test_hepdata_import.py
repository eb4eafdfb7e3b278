"""``recast import hepdata``: both published layouts, downloads over loopback HTTP, hostile archives refused."""

from __future__ import annotations

import functools
import hashlib
import http.server
import io
import json
import tarfile
import threading
from pathlib import Path

import pytest
import yaml
from likelihood_helpers import (  # noqa: F401
    ONELBB_ARCHIVE,
    ONELBB_SHA256,
    REFERENCE_CLS,
    SBOTTOM_ARCHIVE,
    SBOTTOM_SHA256,
    assert_close,
    onelbb_dir,
    sbottom_dir,
)

from recast import spec
from recast.hepdata import import_hepdata, safe_extract
from recast.likelihood import ArchiveError, PatchError, cls
from recast.likelihood.entry import load_entry


@pytest.fixture(scope="module")
def catalog(tmp_path_factory):
    return tmp_path_factory.mktemp("catalog")


@pytest.fixture(scope="module")
def sbottom_entry(catalog):
    return import_hepdata(str(SBOTTOM_ARCHIVE), catalog, entry_id="atlas-susy-2018-31", inspire_id=1748602,
                          hepdata_record=89408, collaboration="ATLAS", luminosity_fb=139, sqrt_s_tev=13, progress=False)


def test_per_file_layout_with_three_regions(sbottom_entry, catalog):
    assert sbottom_entry["archive"] == {"name": SBOTTOM_ARCHIVE.name, "sha256": SBOTTOM_SHA256, "size_bytes": SBOTTOM_ARCHIVE.stat().st_size}
    assert [(w["name"], w["layout"], w["points"]) for w in sbottom_entry["workspaces"]] == [
        ("RegionA", "files", 217), ("RegionB", "files", 218), ("RegionC", "files", 215)]
    entry = catalog / "atlas-susy-2018-31"
    document = yaml.safe_load((entry / "analysis.yaml").read_text())
    spec.validate_document(document, "analysis", entry / "analysis.yaml")
    block = document["likelihood"]
    assert [p["name"] for p in block["parameters"]] == ["msb", "mn2", "mn1"]  # from the archive's README
    assert block["source"]["inspire_id"] == 1748602 and block["source"]["archive"]["sha256"] == SBOTTOM_SHA256
    point = next(p for p in block["points"] if p["name"] == "sbottom_1300_205_60" and p["workspace"] == "RegionA")
    assert point == {"name": "sbottom_1300_205_60", "workspace": "RegionA", "values": [1300, 205, 60],
                     "patch": "RegionA/patch.sbottom_1300_205_60.json"}
    assert (entry / point["patch"]).is_file() and (entry / "RegionB" / "BkgOnly.json").is_file()
    assert document["metadata"]["signal_regions"] == ["SR_meff", "SR_cuts", "SR_metsigST"]


def test_entry_gives_the_published_numbers(sbottom_entry, catalog):
    region, point, cls_obs, _ = REFERENCE_CLS[3]
    likelihood = load_entry("atlas-susy-2018-31", catalog, region=region)
    assert likelihood.labels == ["msb", "mn2", "mn1"]
    result = cls(likelihood, point, backend="jax")
    assert result["values"] == {"msb": 1400.0, "mn2": 550.0, "mn1": 60.0}
    assert_close(result["cls_obs"], cls_obs, 1e-5, "entry CLs_obs")


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def http_root(tmp_path_factory):
    """A local HTTP server on 127.0.0.1 serving a folder."""
    root = tmp_path_factory.mktemp("www")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_patchset_layout_downloaded_over_http(http_root, catalog):
    root, url = http_root
    (root / ONELBB_ARCHIVE.name).write_bytes(ONELBB_ARCHIVE.read_bytes())
    summary = import_hepdata(f"{url}/{ONELBB_ARCHIVE.name}", catalog, progress=False, expected_sha256=ONELBB_SHA256)
    assert summary["id"] == "1lbb-likelihoods"
    assert summary["archive"] == {"name": ONELBB_ARCHIVE.name, "sha256": ONELBB_SHA256,
                                  "size_bytes": ONELBB_ARCHIVE.stat().st_size, "url": f"{url}/{ONELBB_ARCHIVE.name}"}
    assert summary["workspaces"] == [{"name": "BkgOnly", "layout": "patchset", "points": 125, "parameters": ["m1", "m2"]}]
    document = yaml.safe_load((catalog / "1lbb-likelihoods" / "analysis.yaml").read_text())
    workspace = document["likelihood"]["workspaces"][0]
    assert workspace["digest"] == "2563672e1a165384faf49f1431e921d88c9c07ec10f150d5045576564f98f820"  # the patchset's
    assert document["metadata"]["inspire_id"] == "1755298"  # from the patchset's references (ins1755298)
    likelihood = load_entry("1lbb-likelihoods", catalog)
    assert len(likelihood.points) == 125 and likelihood.point("C1N2_Wh_hbb_900_250").values == {"m1": 900.0, "m2": 250.0}


def test_download_errors(http_root, catalog):
    root, url = http_root
    with pytest.raises(ArchiveError, match=r"/missing.tar.gz: HTTP 404"):
        import_hepdata(f"{url}/missing.tar.gz", catalog, progress=False)
    (root / "sbottom.tar.gz").write_bytes(SBOTTOM_ARCHIVE.read_bytes())
    with pytest.raises(ArchiveError, match=rf"sha256 is {SBOTTOM_SHA256}, expected 0000"):
        import_hepdata(f"{url}/sbottom.tar.gz", catalog, progress=False, expected_sha256="0" * 64)


def _tar(path: Path, members) -> Path:
    """A .tar.gz of (TarInfo, bytes or None)."""
    with tarfile.open(path, "w:gz") as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def _file(name, data=b"{}"):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


def _link(name, target, kind):
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info, None


@pytest.mark.parametrize("members,message", [
    ([_file("ok/BkgOnly.json"), _file("../../etc/evil.json")], r"member '../../etc/evil.json' has '..' in its path"),
    ([_file("/etc/evil.json")], r"member '/etc/evil.json' has an absolute path"),
    ([_link("RegionA/BkgOnly.json", "/etc/passwd", tarfile.SYMTYPE)], r"member 'RegionA/BkgOnly.json' is a symbolic link \(to '/etc/passwd'\)"),
    ([_file("a.json"), _link("b.json", "a.json", tarfile.LNKTYPE)], r"member 'b.json' is a hard link"),
    ([_file("big/BkgOnly.json", b"x" * 5000)], r"member 'big/BkgOnly.json' is 5000 bytes, more than the limit of 4096 bytes"),
])
def test_hostile_archives_are_refused_before_anything_is_written(tmp_path, members, message):
    archive = _tar(tmp_path / "evil.tar.gz", members)
    target = tmp_path / "out"
    with pytest.raises(ArchiveError, match=rf"evil.tar.gz: {message}"):
        safe_extract(archive, target, max_member_bytes=4096)
    assert not target.exists() or not any(target.rglob("*"))
    assert not (tmp_path.parent / "etc").exists()


def test_truncated_archive(tmp_path, catalog):
    data = ONELBB_ARCHIVE.read_bytes()
    truncated = tmp_path / "1Lbb-truncated.tar.gz"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(ArchiveError, match=r"1Lbb-truncated.tar.gz: .*(truncated|corrupt)"):
        import_hepdata(str(truncated), catalog, progress=False)
    assert not (catalog / "1lbb-truncated").exists()
    not_tar = tmp_path / "notes.tar.gz"
    not_tar.write_text("hello")
    with pytest.raises(ArchiveError, match=r"notes.tar.gz: not a readable tar archive"):
        import_hepdata(str(not_tar), catalog, progress=False)


def test_patchset_digest_mismatch_is_refused(tmp_path, onelbb_dir, catalog):
    workspace = json.loads((onelbb_dir / "BkgOnly.json").read_text())
    workspace["observations"][0]["data"][0] += 1.0
    archive = tmp_path / "tampered.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        data = json.dumps(workspace).encode()
        info = tarfile.TarInfo("BkgOnly.json")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
        tar.add(onelbb_dir / "patchset.json", arcname="patchset.json")
    with pytest.raises(PatchError, match=r"patchset.json: metadata.digests.sha256 is 2563672e.*tampered.tar.gz: BkgOnly.json has sha256"):
        import_hepdata(str(archive), catalog, progress=False)
    assert not (catalog / "tampered").exists()


def test_patch_that_does_not_apply_names_archive_and_point(tmp_path, sbottom_dir, catalog):
    archive = tmp_path / "broken.tar.gz"
    ops = json.loads((sbottom_dir / "RegionA" / "patch.sbottom_1300_205_60.json").read_text())
    ops[0]["path"] = "/channels/9/samples/0"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(sbottom_dir / "RegionA" / "BkgOnly.json", arcname="RegionA/BkgOnly.json")
        data = json.dumps(ops).encode()
        info = tarfile.TarInfo("RegionA/patch.sbottom_1300_205_60.json")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    with pytest.raises(PatchError, match=r"point sbottom_1300_205_60\): operation 0 \(add /channels/9/samples/0\) does not apply to \S*broken.tar.gz: RegionA/BkgOnly.json"):
        import_hepdata(str(archive), catalog, progress=False)


def test_existing_entry_needs_force(catalog, tmp_path, sbottom_dir):
    archive = tmp_path / "small.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(sbottom_dir / "RegionA" / "BkgOnly.json", arcname="RegionA/BkgOnly.json")
        tar.add(sbottom_dir / "RegionA" / "patch.sbottom_1300_205_60.json", arcname="RegionA/patch.sbottom_1300_205_60.json")
    first = import_hepdata(str(archive), catalog, progress=False, labels=["msb", "mn2", "mn1"])
    assert first["id"] == "small" and first["points"] == 1
    with pytest.raises(Exception, match=r"small: the entry exists already; use --force"):
        import_hepdata(str(archive), catalog, progress=False)
    assert import_hepdata(str(archive), catalog, progress=False, force=True)["id"] == "small"
    sha = hashlib.sha256(archive.read_bytes()).hexdigest()
    assert yaml.safe_load((catalog / "small" / "analysis.yaml").read_text())["likelihood"]["source"]["archive"]["sha256"] == sha


def test_labels_that_do_not_match_a_patchsets_points_are_an_error_not_a_silent_cut(tmp_path):
    from recast.likelihood import LikelihoodError

    with pytest.raises(LikelihoodError, match=r"1 parameter names \(mass\) but the point name '[^']+' has 2 numbers"):
        import_hepdata(str(ONELBB_ARCHIVE), tmp_path / "catalog", progress=False, labels=["mass"])
    assert not (tmp_path / "catalog").exists() or not any((tmp_path / "catalog").iterdir())
