"""Hostile submissions: every one refused with a clear answer, and nothing stored (no row, no file)."""

from __future__ import annotations

import gzip
import io

import pytest
import yaml

from recast.service.db import Request

from .conftest import leftover_uploads, make_service, stored_files, submit, toy_document, toy_files


def nothing_stored(service) -> bool:
    from sqlalchemy import func, select

    with service.db.session() as session:
        rows = session.scalar(select(func.count()).select_from(Request))
    return rows == 0 and stored_files(service) == [] and leftover_uploads(service) == []


def problems(answer) -> list[tuple[str, str]]:
    return [(p["field"], p["message"]) for p in answer.json()["detail"]["problems"]]


def test_a_bad_request_names_every_bad_field_and_stores_nothing(client, service, people, catalog):
    document = yaml.safe_dump({"analysis": "toy", "parameters": {"offset": "high", "colour": "red", "points": [
        {"x": "one", "label": "a", "events": "data/a.txt"},
        {"x": 2, "events": "data/b.txt"}]}})
    answer = submit(client, people, "alice", catalog, document=document)
    assert answer.status_code == 422, answer.text
    fields = [f for f, _ in problems(answer)]
    assert "parameters.offset" in fields and "parameters.points[0].x" in fields
    assert any("colour" in m for _, m in problems(answer))
    assert any(f.startswith("parameters.points[1]") for f in fields)
    assert nothing_stored(service)


@pytest.mark.parametrize("name", ["../a.txt", "/etc/passwd", "data/../../a.txt", "a\\b.txt", "a\x00b.txt",
                                  "data/\x1b[31mred.txt", ""])
def test_hostile_file_names_are_refused(client, service, people, catalog, name):
    files = {**toy_files(catalog), name: b"x\n"}
    answer = submit(client, people, "alice", catalog, files=files)
    assert answer.status_code in (400, 422), answer.text
    assert nothing_stored(service)


def test_files_the_request_does_not_name_or_lacks_are_refused(client, service, people, catalog):
    extra = submit(client, people, "alice", catalog, files={**toy_files(catalog), "data/c.txt": b"c\n"})
    assert extra.status_code == 422 and problems(extra) == [
        ("files", "'data/c.txt' is uploaded but the request does not refer to it")]
    missing = submit(client, people, "alice", catalog, files={"data/a.txt": b"a\n"})
    assert missing.status_code == 422
    assert [f for f, _ in problems(missing)] == ["parameters.points[1].events"]
    assert "the uploaded files" in problems(missing)[0][1] and str(service.config.data) not in missing.text
    assert nothing_stored(service)


def test_wrong_types_are_refused(client, service, people, catalog):
    exe = yaml.safe_dump({"parameters": {"points": [{"x": 1, "label": "a", "events": "a.exe"}]}})
    wrong_suffix = submit(client, people, "alice", catalog, document=exe, files={"a.exe": b"MZ\x90\x00"})
    assert wrong_suffix.status_code == 422 and "ending in .txt" in wrong_suffix.text
    not_a_mapping = submit(client, people, "alice", catalog, document="- just\n- a list\n", files={})
    assert not_a_mapping.status_code == 422
    not_yaml = submit(client, people, "alice", catalog, document="parameters: [unclosed\n", files={})
    assert not_yaml.status_code == 422 and "malformed YAML" in not_yaml.text
    binary = submit(client, people, "alice", catalog, document="\udcff".encode("utf-8", "surrogateescape"), files={})
    assert binary.status_code == 422
    no_document = client.post("/api/analyses/toy/requests", files=[("file", ("a.txt", b"a", "text/plain"))],
                              headers=people.headers("alice"))
    assert no_document.status_code == 422 and "no request document" in no_document.text
    not_multipart = client.post("/api/analyses/toy/requests", json={"parameters": {}}, headers=people.headers("alice"))
    assert not_multipart.status_code == 415
    assert nothing_stored(service)


def test_yaml_bombs_and_huge_numbers_are_refused(client, service, people, catalog):
    bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
    for level in "bcdefghij":
        previous = chr(ord(level) - 1)
        bomb += f"{level}: &{level} [*{previous}, *{previous}, *{previous}, *{previous}, *{previous}, " \
                f"*{previous}, *{previous}, *{previous}, *{previous}, *{previous}]\n"
    bomb += "parameters: {points: *j}\n"
    answer = submit(client, people, "alice", catalog, document=bomb, files={})
    assert answer.status_code == 422, answer.text
    digits = "9" * 5000
    huge = submit(client, people, "alice", catalog, files=toy_files(catalog),
                  document=toy_document().replace("x: 1\n", f"x: {digits}\n"))
    assert huge.status_code == 422 and len(huge.text) < 5000
    big_float = submit(client, people, "alice", catalog, files=toy_files(catalog),
                       document=toy_document().replace("x: 1\n", f"x: {digits}.5\n"))
    assert big_float.status_code == 422
    recursive = submit(client, people, "alice", catalog, document="parameters: &p {points: [*p]}\n", files={})
    assert recursive.status_code == 422
    nested = submit(client, people, "alice", catalog, document="parameters: " + "[" * 5000 + "]" * 5000, files={})
    assert nested.status_code == 422
    assert nothing_stored(service)


def test_oversized_uploads_and_compressed_bodies_are_refused(tmp_path, catalog, database_url):
    from fastapi.testclient import TestClient

    from recast.service.api import create_app
    from recast.service import auth

    service = make_service(tmp_path, catalog, database_url, file_bytes=1000, total_bytes=3000, document_bytes=2000)
    with service.db.session() as session:
        user = auth.create_user(session, "alice", "requester")
        _, token = auth.issue_token(session, user)
        session.commit()
    headers = {"Authorization": f"Bearer {token}"}
    with TestClient(create_app(service=service)) as client:
        def post(document, files, extra=None):
            parts = [("request", ("request.yaml", document, "text/yaml"))]
            parts += [("file", (n, d, "application/octet-stream")) for n, d in files.items()]
            return client.post("/api/analyses/toy/requests", files=parts, headers={**headers, **(extra or {})})

        big = post(toy_document(), {"data/a.txt": b"a\n" * 600, "data/b.txt": b"b\n"})
        assert big.status_code == 413 and "data/a.txt" in big.text
        total = post(toy_document(), {f"data/{i}.txt": b"x" * 900 for i in range(5)})
        assert total.status_code == 413
        document = post("parameters: {}\n" + "#" * 3000, {})
        assert document.status_code == 413
        # A gzip bomb named as text: refused unread (nothing uploaded is ever decompressed).
        bomb = gzip.compress(b"\0" * 900_000, compresslevel=9)
        assert len(bomb) < 1000
        gz = post(toy_document(), {"data/a.txt": bomb, "data/b.txt": b"b\n"})
        assert gz.status_code == 422 and "gzip" in gz.text
        # A compressed body: refused before it is read.
        body = io.BytesIO()
        with gzip.GzipFile(fileobj=body, mode="wb") as out:
            out.write(b"--x\r\n")
        compressed = client.post("/api/analyses/toy/requests", content=body.getvalue(),
                                 headers={**headers, "Content-Encoding": "gzip",
                                          "Content-Type": "multipart/form-data; boundary=x"})
        assert compressed.status_code == 415
        liar = client.post("/api/analyses/toy/requests", content=b"x" * 10,
                           headers={**headers, "Content-Length": str(10**12),
                                    "Content-Type": "multipart/form-data; boundary=x"})
        assert liar.status_code in (400, 413)
        ok = post(toy_document(), toy_files(catalog))
        assert ok.status_code == 201, ok.text
    from sqlalchemy import func, select

    with service.db.session() as session:
        assert session.scalar(select(func.count()).select_from(Request)) == 1
    assert len(stored_files(service)) == 2 and leftover_uploads(service) == []
    service.db.dispose()


def test_files_are_content_addressed(client, service, people, catalog):
    import hashlib

    first = submit(client, people, "alice", catalog)
    second = submit(client, people, "bob", catalog)
    assert first.status_code == second.status_code == 201
    data = toy_files(catalog)
    expected = sorted(hashlib.sha256(d).hexdigest() for d in data.values())
    assert sorted(p.name for p in stored_files(service)) == expected
    assert {f["sha256"] for f in first.json()["files"]} == set(expected)
