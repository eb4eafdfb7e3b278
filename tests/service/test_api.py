"""The API in-process (TestClient): submit, review, lifecycle, results, users and tokens."""

from __future__ import annotations

from recast.service import worker as worker_mod
from recast.service.db import Audit, Request

from .conftest import submit, toy_document


def transitions(service, request_id: int) -> list[tuple]:
    from sqlalchemy import select

    with service.db.session() as session:
        return [(a.from_status, a.to_status, a.actor) for a in session.scalars(
            select(Audit).where(Audit.request_id == request_id, Audit.action == "transition").order_by(Audit.id))]


def test_openapi_and_catalog_are_public(client):
    spec = client.get("/openapi.json").json()
    assert "/api/analyses/{analysis_id}/requests" in spec["paths"]
    assert [a["id"] for a in client.get("/api/analyses").json()["analyses"]] == ["toy"]
    toy = client.get("/api/analyses/toy").json()
    assert toy["parameters"]["points"]["items"]["properties"]["events"]["type"] == "file"
    assert "path" not in toy
    assert client.get("/api/analyses/nosuch").status_code == 404
    assert client.get("/api/analyses/..%2F..%2Fetc").status_code == 404


def test_submit_review_approve_and_lifecycle(client, service, people, catalog):
    answer = submit(client, people, "alice", catalog, title="my first")
    assert answer.status_code == 201, answer.text
    request = answer.json()
    assert request["status"] == "submitted" and request["owner"] == "alice" and request["title"] == "my first"
    assert {f["name"] for f in request["files"]} == {"data/a.txt", "data/b.txt"}
    assert request["document"]["parameters"]["points"][0]["events"] == "data/a.txt"
    rid = request["id"]

    # A checklist (kept by the service) must be ticked in full before approval.
    maria = people.headers("maria")
    assert client.put("/api/analyses/toy/checklist", json={"items": ["signal files look sane", "cross sections cited"]},
                      headers=maria).status_code == 200
    refused = client.post(f"/api/requests/{rid}/approve", json={"comment": "ok"}, headers=maria)
    assert refused.status_code == 409 and "signal files look sane" in refused.json()["detail"]
    assert client.post(f"/api/requests/{rid}/checklist", json={"item": "nonsense"}, headers=maria).status_code == 422
    for item in ("signal files look sane", "cross sections cited"):
        ticked = client.post(f"/api/requests/{rid}/checklist", json={"item": item}, headers=maria)
        assert ticked.status_code == 200
    assert all(c["ticked"] and c["by"] == "maria" for c in ticked.json()["checklist"])
    approved = client.post(f"/api/requests/{rid}/approve", json={"comment": "looks good"}, headers=maria)
    assert approved.status_code == 200, approved.text
    assert approved.json()["status"] == "queued"
    assert client.post(f"/api/requests/{rid}/approve", headers=maria).status_code == 409
    assert client.post(f"/api/requests/{rid}/checklist", json={"item": "cross sections cited", "ticked": False},
                       headers=maria).status_code == 409

    worker = worker_mod.Worker(service, environment="host", lease_seconds=30)
    assert worker.run(once=True) == 1
    shown = client.get(f"/api/requests/{rid}", headers=people.headers("alice")).json()
    assert shown["status"] == "succeeded", shown["error"]
    assert shown["progress"]["done"] == 4 and shown["progress"]["total"] == 4
    moves = [h for h in shown["history"] if h["action"] == "transition"]
    assert [h["comment"] for h in shown["history"] if h["action"] == "tick"] == [
        "signal files look sane", "cross sections cited"]
    assert [(h["from"], h["to"]) for h in moves] == [
        (None, "submitted"), ("submitted", "approved"), ("approved", "queued"), ("queued", "running"),
        ("running", "succeeded")]
    assert moves[1]["actor"] == "maria" and moves[1]["comment"] == "looks good"

    results = client.get(f"/api/requests/{rid}/results", headers=people.headers("alice")).json()
    assert results["values"]["total"] == 21.25 and results["values"]["squares"] == [2.0, 6.0, 13.25]
    provenance = client.get(f"/api/requests/{rid}/provenance", headers=people.headers("alice"))
    assert provenance.headers["content-disposition"].startswith("attachment")
    assert provenance.json()["environment"] == "host"
    listing = client.get(f"/api/requests/{rid}/files", headers=people.headers("alice")).json()
    assert [o["name"] for o in listing["outputs"]] == ["total"]
    total = client.get(f"/api/requests/{rid}/files/outputs/total", headers=people.headers("alice"))
    assert total.status_code == 200 and b"21.25" in total.content
    a_txt = client.get(f"/api/requests/{rid}/files/inputs/data/a.txt", headers=people.headers("alice"))
    assert a_txt.content == (catalog / "toy" / "requests" / "data" / "a.txt").read_bytes()
    assert client.get(f"/api/requests/{rid}/files/inputs/../../etc/passwd",
                      headers=people.headers("alice")).status_code == 404

    # Re-run: the same run folder, nothing left to do, one result again.
    assert client.post(f"/api/requests/{rid}/cancel", headers=people.headers("alice")).status_code == 409
    rerun = client.post(f"/api/requests/{rid}/rerun", json={"comment": "again"}, headers=maria)
    assert rerun.status_code == 200 and rerun.json()["status"] == "queued"
    assert client.post(f"/api/requests/{rid}/rerun", json={"refresh": True}, headers=maria).status_code == 409
    assert worker.run(once=True) == 1
    again = client.get(f"/api/requests/{rid}", headers=maria).json()
    assert again["status"] == "succeeded" and again["attempts"] == 2
    events = client.get(f"/api/requests/{rid}/events", headers=maria)
    assert events.headers["content-type"].startswith("text/event-stream")
    assert '"status": "succeeded"' in events.text and "event: end" in events.text


def test_reject_needs_a_reason_and_cancel_is_recorded(client, service, people, catalog):
    first = submit(client, people, "alice", catalog).json()["id"]
    second = submit(client, people, "alice", catalog).json()["id"]
    maria = people.headers("maria")
    assert client.post(f"/api/requests/{first}/reject", json={"reason": ""}, headers=maria).status_code == 422
    rejected = client.post(f"/api/requests/{first}/reject", json={"reason": "cross sections missing"}, headers=maria)
    assert rejected.json()["status"] == "rejected" and rejected.json()["reason"] == "cross sections missing"
    assert client.post(f"/api/requests/{first}/approve", headers=maria).status_code == 409
    cancelled = client.post(f"/api/requests/{second}/cancel", json={"comment": "wrong masses"},
                            headers=people.headers("alice"))
    assert cancelled.json()["status"] == "cancelled"
    assert transitions(service, second)[-1] == ("submitted", "cancelled", "alice")
    mine = client.get("/api/requests", headers=people.headers("alice")).json()["requests"]
    assert [r["id"] for r in mine] == [second, first]
    assert client.get("/api/requests", headers=people.headers("bob")).json()["requests"] == []
    assert client.get("/api/review", headers=maria).json()["requests"] == []


def test_a_failing_run_is_failed_with_its_error(client, service, people, catalog):
    rid = submit(client, people, "alice", catalog, document=toy_document(label="fail")).json()["id"]
    assert client.post(f"/api/requests/{rid}/approve", headers=people.headers("maria")).status_code == 200
    assert worker_mod.Worker(service, environment="host").run(once=True) == 1
    shown = client.get(f"/api/requests/{rid}", headers=people.headers("alice")).json()
    assert shown["status"] == "failed" and "asked to fail" in shown["error"]
    assert shown["progress"]["failed"] == ["square__1"]
    assert client.get(f"/api/requests/{rid}/results", headers=people.headers("alice")).status_code == 409


def test_tokens_are_shown_once_hashed_and_revocable(client, service, people):
    root = people.headers("root")
    made = client.post("/api/users", json={"name": "carol", "role": "requester"}, headers=root)
    assert made.status_code == 201
    token = made.json()["token"]
    assert client.get("/api/me", headers={"Authorization": f"Bearer {token}"}).json()["name"] == "carol"
    listed = client.get("/api/users", headers=root).json()["users"]
    carol = next(u for u in listed if u["name"] == "carol")
    assert token not in str(listed) and len(carol["tokens"]) == 1
    from sqlalchemy import select

    from recast.service.db import Token
    with service.db.session() as session:
        stored = [t.secret_sha256 for t in session.scalars(select(Token))]
    assert all(token.split("_")[-1] not in s for s in stored)
    token_id = carol["tokens"][0]["id"]
    assert client.delete(f"/api/tokens/{token_id}", headers=root).status_code == 200
    assert client.get("/api/me", headers={"Authorization": f"Bearer {token}"}).status_code == 401
    assert client.get("/api/me", headers={"Authorization": f"Bearer {token[:-1]}x"}).status_code == 401
    assert client.get("/api/analyses", headers={"Authorization": "Bearer nonsense"}).status_code == 401
    assert client.post("/api/users", json={"name": "carol", "role": "requester"}, headers=root).status_code == 400
    assert client.post("/api/users", json={"name": "../x", "role": "requester"}, headers=root).status_code == 400
    assert client.post("/api/users", json={"name": "dave", "role": "god"}, headers=root).status_code == 400


def test_expired_tokens_are_refused(client, service, people):
    from datetime import timedelta

    from recast.service import auth
    from recast.service.db import User, utcnow

    with service.db.session() as session:
        user = session.get(User, people.ids["bob"])
        row, token = auth.issue_token(session, user, days=1)
        row.expires_at = utcnow() - timedelta(seconds=1)
        session.commit()
    assert client.get("/api/me", headers={"Authorization": f"Bearer {token}"}).status_code == 401
