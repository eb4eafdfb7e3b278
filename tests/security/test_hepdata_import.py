"""``recast import hepdata`` against hostile archives and servers (the security issue's attacks).

Each attack is reproduced here and must end in one clear error naming the
archive or URL and the member, never a traceback, with the catalog and the
temporary folder left as they were. Archives are built in ``tmp_path``; the
servers listen on 127.0.0.1 only; limits are lowered where the default would
make a test slow or large.
"""

from __future__ import annotations

import gzip
import http.server
import io
import json
import os
import tarfile
import tempfile
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from likelihood_helpers import sbottom_dir  # noqa: F401

from recast.cli import cli
from recast.errors import RecastError
from recast.hepdata import import_hepdata, safe_extract

POINT = "patch.sbottom_1300_205_60.json"


# --- archives ----------------------------------------------------------------------------------


def _tar(path: Path, members, fmt=tarfile.PAX_FORMAT) -> Path:
    """A .tar.gz of (TarInfo, bytes or None), written as given (tarfile checks nothing when writing)."""
    with tarfile.open(path, "w:gz", format=fmt) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def _file(name: str, data: bytes = b"{}"):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


def _folder(name: str):
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    return info, None


def _region(sbottom_dir, folder="RegionA"):  # noqa: F811
    """A small valid region: the published RegionA workspace and one of its patches."""
    return [_file(f"{folder}/BkgOnly.json", (sbottom_dir / "RegionA" / "BkgOnly.json").read_bytes()),
            _file(f"{folder}/{POINT}", (sbottom_dir / "RegionA" / POINT).read_bytes())]


def _zero_bomb(path: Path, names: list[str], mib: int) -> Path:
    """A .tar.gz whose members are ``mib`` MiB of zeros each, about 1 KB per MiB.

    Built from one compressed MiB repeated (gzip allows concatenated
    streams), so the test compresses 1 MiB, not the whole bomb.
    """
    zeros = gzip.compress(bytes(1 << 20), 9)
    with open(path, "wb") as out:
        for name in names:
            info = tarfile.TarInfo(name)
            info.size = mib << 20
            out.write(gzip.compress(info.tobuf(tarfile.USTAR_FORMAT)))
            for _ in range(mib):
                out.write(zeros)
        out.write(gzip.compress(bytes(2 * tarfile.BLOCKSIZE)))  # end of archive
    return path


# --- the refusal, through the library and the CLI ------------------------------------------------


@pytest.fixture
def world(tmp_path, monkeypatch):
    """A catalog with one entry and a private temporary folder, to check a refusal changes neither."""
    catalog = tmp_path / "catalog"
    (catalog / "kept").mkdir(parents=True)
    (catalog / "kept" / "analysis.yaml").write_text("id: kept\n")
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    return catalog


def _snapshot(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*"))


def _refused(source: str, catalog: Path, message: str, cli_args=(), regex: bool = False, **limits) -> None:
    """``source`` is refused with ``message`` by the library and by the CLI; nothing is left behind."""
    import re

    root = catalog.parent
    before = _snapshot(root)
    with pytest.raises(RecastError) as info:
        import_hepdata(source, catalog, progress=False, **limits)
    if regex:
        assert re.fullmatch(message, str(info.value)), str(info.value)
    else:
        assert str(info.value) == message
    assert _snapshot(root) == before  # no half-written entry, no staging or scratch folder, nothing beside them

    result = CliRunner().invoke(cli, ["import", "hepdata", source, "--catalog", str(catalog), "--no-progress", *cli_args])
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit), result.exception  # a ClickException, not a traceback
    assert "Traceback" not in result.output
    printed = result.output.removeprefix("Error: ").rstrip("\n")
    assert result.output.startswith("Error: ") and (re.fullmatch(message, printed) if regex else printed == message), result.output
    assert _snapshot(root) == before


# --- the member tree: a file and a folder of the same name, duplicates, names --------------------


@pytest.mark.parametrize("members,member,problem", [
    # tar would turn the checked file x into a folder; the old code stopped half-way with a traceback
    ([_file("x"), _file("x/y")], "x/y", "is inside 'x', which is a file in the archive"),
    ([_file("x"), _folder("x/sub")], "x/sub", "is inside 'x', which is a file in the archive"),
    ([_file("x/y"), _file("x")], "x", "is both a folder and a file in the archive"),
    ([_folder("x"), _file("x")], "x", "is both a folder and a file in the archive"),
    ([_file("x"), _folder("x")], "x", "is both a file and a folder in the archive"),
    # the second copy would replace what was checked (and read) first
    ([_file("RegionA/./BkgOnly.json", b"[]")], "RegionA/./BkgOnly.json", "appears twice in the archive"),
    ([_file(POINT), _file(POINT)], POINT, "appears twice in the archive"),
    ([_file("é\x00x.json")], "é\x00x.json", r"has a control character ('\x00') in its name"),
    ([_file("a\nb.json")], "a\nb.json", r"has a control character ('\n') in its name"),
    ([_file("RegionA\\BkgOnly.json")], "RegionA\\BkgOnly.json", "has a backslash in its name"),
])
def test_member_tree_conflicts_are_refused(tmp_path, world, sbottom_dir, members, member, problem):  # noqa: F811
    archive = _tar(tmp_path / "evil.tar.gz", _region(sbottom_dir) + members)
    _refused(str(archive), world, f"{archive}: member {member!r} {problem}; nothing was extracted")


def test_folder_members_may_repeat_and_name_the_root(tmp_path, world, sbottom_dir):  # noqa: F811
    """What tar itself writes ("./", a folder listed twice) is still accepted."""
    archive = _tar(tmp_path / "fine.tar.gz", [_folder("."), _folder("RegionA"), _folder("RegionA/")] + _region(sbottom_dir))
    assert import_hepdata(str(archive), world, progress=False, labels=["msb", "mn2", "mn1"])["points"] == 1


# --- how much an archive may hold ---------------------------------------------------------------


def test_too_many_members(tmp_path, world):
    archive = tmp_path / "many.tar.gz"
    with tarfile.open(archive, "w:gz", format=tarfile.USTAR_FORMAT) as tar:
        for index in range(20_001):
            tar.addfile(tarfile.TarInfo(f"m{index}"))
    message = f"{archive}: more than 20000 members (published likelihoods have a few hundred); nothing was extracted"
    _refused(str(archive), world, message)
    target = tmp_path / "out"
    with pytest.raises(RecastError, match="more than 5 members"):
        safe_extract(archive, target, max_members=5)
    assert not target.exists()


def test_compression_bomb_is_refused_by_default_before_writing(tmp_path, world):
    """Two 500 MiB members from a 1 MB archive: the default total (512 MiB) refuses it from the headers."""
    archive = _zero_bomb(tmp_path / "bomb.tar.gz", ["RegionA/BkgOnly.json", "RegionA/patchset.json"], 500)
    assert archive.stat().st_size < 1_200_000
    target = tmp_path / "out"
    with pytest.raises(RecastError) as info:
        safe_extract(archive, target)
    assert str(info.value) == (
        f"{archive}: member 'RegionA/patchset.json' takes the expanded archive past the limit of 536870912 bytes "
        "(refused as a likely compression bomb; raise --max-total-mb for a larger likelihood); nothing was extracted"
    )
    assert not target.exists()


def test_compression_bomb_with_lowered_limits(tmp_path, world):
    archive = _zero_bomb(tmp_path / "bomb.tar.gz", ["a.json", "b.json"], 1)
    message = (f"{archive}: member 'b.json' takes the expanded archive past the limit of 1048576 bytes "
               "(refused as a likely compression bomb; raise --max-total-mb for a larger likelihood); nothing was extracted")
    _refused(str(archive), world, message, cli_args=["--max-total-mb", "1"], max_total_bytes=1 << 20)


def test_limits_count_the_bytes_written_not_the_headers(tmp_path, monkeypatch):
    """A reader that yields more than a member's header says is cut off at the limit and nothing is kept.

    tarfile itself never does this; the count is the backstop should a reader ever disagree with the header.
    """
    archive = _tar(tmp_path / "liar.tar.gz", [_file("a.json", b"0" * 10)])
    real = tarfile.TarFile.extractfile
    monkeypatch.setattr(tarfile.TarFile, "extractfile",
                        lambda self, member: io.BytesIO(bytes(1536 << 10)) if real(self, member) else None)
    target = tmp_path / "out"
    with pytest.raises(RecastError) as info:
        safe_extract(archive, target, max_member_bytes=2 << 20, max_total_bytes=1 << 20)
    assert str(info.value) == (
        f"{archive}: member 'a.json' takes the expanded archive past the limit of 1048576 bytes "
        "(refused as a likely compression bomb; raise --max-total-mb for a larger likelihood); nothing was kept"
    )
    assert not target.exists()
    with pytest.raises(RecastError) as info:
        safe_extract(archive, target, max_member_bytes=100 << 10)
    assert str(info.value) == f"{archive}: member 'a.json' expands past the limit of 102400 bytes; nothing was kept"
    assert not target.exists()
    with pytest.raises(RecastError) as info:
        safe_extract(archive, target)  # within the limits, but not what the header said
    assert str(info.value) == (f"{archive}: member 'a.json' is truncated or corrupt (1572864 bytes where its header "
                               "says 10); download the archive again")
    assert not target.exists()


# --- JSON that breaks parsers -------------------------------------------------------------------


def test_deeply_nested_workspace(tmp_path, world):
    deep = b"[" * 200_000 + b"]" * 200_000  # RecursionError in json.loads on the old code
    archive = _tar(tmp_path / "deep.tar.gz", [_file("RegionA/BkgOnly.json", deep)])
    _refused(str(archive), world,
             f"{archive}: RegionA/BkgOnly.json: lists or objects nest more than 64 levels deep; expected a pyhf workspace")


@pytest.mark.parametrize("data", [
    b"[" * 200_000 + b"]" * 200_000,
    # parses, but copy.deepcopy and jsonschema would overflow the stack on it later
    b'[{"op": "add", "path": "/channels/0/samples/0", "value": ' + b"[" * 900 + b"]" * 900 + b"}]",
])
def test_deeply_nested_patch(tmp_path, world, sbottom_dir, data):  # noqa: F811
    archive = _tar(tmp_path / "deep.tar.gz", _region(sbottom_dir) + [_file("RegionA/patch.sbottom_1_2_3.json", data)])
    _refused(str(archive), world, f"{archive}: RegionA/patch.sbottom_1_2_3.json: lists or objects nest more than 64 "
                                  "levels deep; expected a JSON Patch (a list of operations)")


def test_number_too_long_for_python(tmp_path, world, sbottom_dir):  # noqa: F811
    with pytest.raises(ValueError) as python:
        json.loads("1" * 5000)  # Python refuses integers of more than 4300 digits with a ValueError
    archive = _tar(tmp_path / "long.tar.gz", _region(sbottom_dir) + [_file("RegionA/patch.sbottom_1_2_3.json", b"1" * 5000)])
    _refused(str(archive), world, f"{archive}: RegionA/patch.sbottom_1_2_3.json: not valid JSON ({python.value}); "
                                  "expected a JSON Patch (a list of operations)")


def test_deep_json_that_is_not_part_of_the_likelihood_is_ignored(tmp_path, world, sbottom_dir):  # noqa: F811
    archive = _tar(tmp_path / "extra.tar.gz", _region(sbottom_dir) + [_file("notes.json", b"[" * 200_000 + b"]" * 200_000)])
    assert import_hepdata(str(archive), world, progress=False, labels=["msb", "mn2", "mn1"])["points"] == 1


# --- hostile servers ----------------------------------------------------------------------------


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.server.requested.append(self.path)
        self.server.respond(self)

    def log_message(self, *args):
        pass


@pytest.fixture
def serve():
    """``serve(respond)``: the URL of a server on 127.0.0.1 answering every GET with ``respond(handler)``."""
    servers = []

    def start(respond):
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        server.respond, server.requested, server.stop = respond, [], threading.Event()
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return server, f"http://127.0.0.1:{server.server_address[1]}"

    yield start
    for server in servers:
        server.stop.set()
        server.shutdown()
        server.server_close()


def _drip(every: float, length: int = 1000):
    """One byte every ``every`` seconds (a read timeout never fires), until the client leaves."""
    def respond(handler):
        handler.send_response(200)
        handler.send_header("Content-Length", str(length))
        handler.end_headers()
        try:
            for _ in range(length):
                handler.wfile.write(b"x")
                handler.wfile.flush()
                if handler.server.stop.wait(every):
                    return
        except OSError:
            return  # the client gave up
    return respond


def test_slow_drip_download_meets_the_deadline(world, serve):
    _, url = serve(_drip(0.5))
    started = time.monotonic()
    message = rf"{url}/a\.tar\.gz: the download took longer than 2 s \(\d+ bytes received\); giving up \(raise --timeout for a slow connection\)"
    _refused(f"{url}/a.tar.gz", world, message, cli_args=["--timeout", "2"], regex=True, deadline=2.0)
    assert time.monotonic() - started < 12  # two imports of about 2 s each


def test_silent_server_meets_the_deadline(world, serve):
    def silent(handler):
        handler.send_response(200)
        handler.send_header("Content-Length", "1000")
        handler.end_headers()
        handler.server.stop.wait(30)
    _, url = serve(silent)
    message = f"{url}/a.tar.gz: the download took longer than 1 s (0 bytes received); giving up (raise --timeout for a slow connection)"
    _refused(f"{url}/a.tar.gz", world, message, cli_args=["--timeout", "1"], deadline=1.0)


@pytest.mark.parametrize("value", ["abc", "-5"])
def test_content_length_that_is_not_a_number(world, serve, value):
    def respond(handler):
        handler.send_response(200)
        handler.send_header("Content-Length", value)
        handler.end_headers()
        handler.wfile.write(b"x" * 10)
    _, url = serve(respond)
    _refused(f"{url}/a.tar.gz", world,
             f"{url}/a.tar.gz: the server sent Content-Length {value!r}, not a number of bytes; refusing the download")


@pytest.mark.parametrize("path,name", [("/sub/..", "archive.tar.gz"), ("/sub/%2e%2e", "archive.tar.gz"),
                                       ("", "archive.tar.gz"), ("/", "archive.tar.gz"),
                                       ("/.hidden.tar.gz?x=/..", "hidden.tar.gz"), ("/a%2fb%00.tar.gz", "a_b_.tar.gz")])
def test_download_name_is_one_safe_component(tmp_path, world, serve, sbottom_dir, path, name):  # noqa: F811
    """The URL's last segment names the download; '..' (the scratch folder's parent) or '' never does."""
    payload = _tar(tmp_path / "payload.tar.gz", _region(sbottom_dir)).read_bytes()

    def respond(handler):
        handler.send_response(200)
        handler.send_header("Content-Length", str(len(payload)))
        handler.end_headers()
        handler.wfile.write(payload)
    _, url = serve(respond)
    before = _snapshot(tmp_path)
    summary = import_hepdata(url + path, world, progress=False, labels=["msb", "mn2", "mn1"])
    assert summary["archive"]["name"] == name
    assert _snapshot(tmp_path / "tmp") == []
    new = set(_snapshot(tmp_path)) - set(before)
    assert new and all(p.startswith(f"catalog/{summary['id']}") for p in new)  # the entry, nothing else


# --- the catalog ----------------------------------------------------------------------------------


def test_force_keeps_the_old_entry_when_the_new_one_cannot_be_put_in_place(tmp_path, world, sbottom_dir, monkeypatch):  # noqa: F811
    archive = _tar(tmp_path / "small.tar.gz", _region(sbottom_dir))
    import_hepdata(str(archive), world, progress=False, labels=["msb", "mn2", "mn1"])
    old = (world / "small" / "analysis.yaml").read_text()
    real = Path.rename

    def rename(self, target):
        if Path(target) == world / "small" and Path(self).name.startswith(".small-") and "-old-" not in Path(self).name:
            raise OSError(28, "No space left on device")
        return real(self, target)
    monkeypatch.setattr(Path, "rename", rename)
    before = _snapshot(tmp_path)
    with pytest.raises(RecastError) as info:
        import_hepdata(str(archive), world, progress=False, labels=["msb", "mn2", "mn1"], force=True)
    assert str(info.value) == (f"{world / 'small'}: the entry cannot be written ([Errno 28] No space left on device); "
                               "the catalog is unchanged")
    assert (world / "small" / "analysis.yaml").read_text() == old
    assert _snapshot(tmp_path) == before
    assert os.listdir(tmp_path / "tmp") == []
