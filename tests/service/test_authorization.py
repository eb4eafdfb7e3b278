"""The authorization matrix: every endpoint, asked by everyone, answers as it should.

Everyone: anonymous; alice, the requester who owns the request; bob, another
requester; maria, maintainer of the request's analysis (toy); mike, maintainer
of another analysis; root, an admin. 401: not signed in; 404: may not see it
(not told apart from missing); 403: may see it, may not do that.
"""

from __future__ import annotations

import json

import pytest

from recast.service.db import Request, Token, User

from .conftest import submit

WHO = (None, "alice", "bob", "maria", "mike", "root")


def codes(anonymous, alice, bob, maria, mike, root) -> dict:
    return dict(zip(WHO, (anonymous, alice, bob, maria, mike, root)))


PUBLIC = codes(200, 200, 200, 200, 200, 200)
SIGNED_IN = codes(401, 200, 200, 200, 200, 200)
SEE = codes(401, 200, 404, 200, 404, 200)  # the owner, maintainers of the analysis, admins
MAINTAIN = codes(401, 403, 404, 200, 404, 200)  # maintainers of the analysis, admins
ADMIN = codes(401, 403, 403, 403, 403, 200)


def a_request(client, people, catalog, service, status="submitted") -> int:
    answer = submit(client, people, "alice", catalog)
    assert answer.status_code == 201, answer.text
    rid = answer.json()["id"]
    if status != "submitted":
        with service.db.session() as session:
            request = session.get(Request, rid)
            request.status = status
            if status == "succeeded":
                run_dir = service.config.runs_dir / str(rid)
                (run_dir / "steps" / "total").mkdir(parents=True)
                (run_dir / "steps" / "total" / "total.json").write_text('{"total": 1}')
                request.results = {"values": {"total": 1},
                                   "files": {"total": {"path": "steps/total/total.json", "sha256": "0" * 64}}}
                request.provenance = {"schema": "recast/provenance/1.0.0"}
            session.commit()
    return rid


def set_checklist(service, items):
    from recast.service.db import Checklist, utcnow

    with service.db.session() as session:
        session.merge(Checklist(analysis_id="toy", items=items, updated_at=utcnow()))
        session.commit()


def bob_token_id(service, people, who) -> str:
    from recast.service import auth

    with service.db.session() as session:
        row, _ = auth.issue_token(session, session.get(User, people.ids["bob"]), description=f"for {who}")
        session.commit()
        return row.id


# name -> (expected codes, prepare(client, people, catalog, service, who) -> (method, path, kwargs))
CASES = {
    "catalog list": (PUBLIC, lambda c, p, cat, s, w: ("GET", "/api/analyses", {})),
    "catalog show": (PUBLIC, lambda c, p, cat, s, w: ("GET", "/api/analyses/toy", {})),
    "set checklist": (codes(401, 403, 403, 200, 403, 200),
                      lambda c, p, cat, s, w: ("PUT", "/api/analyses/toy/checklist", {"json": {"items": ["a"]}})),
    "submit": ({**SIGNED_IN, **{w: 201 for w in WHO[1:]}}, "submit"),
    "list requests": (SIGNED_IN, lambda c, p, cat, s, w: ("GET", "/api/requests", {})),
    "review queue": (codes(401, 403, 403, 200, 200, 200), lambda c, p, cat, s, w: ("GET", "/api/review", {})),
    "show": (SEE, lambda c, p, cat, s, w: ("GET", f"/api/requests/{a_request(c, p, cat, s)}", {})),
    "cancel": (SEE, lambda c, p, cat, s, w: ("POST", f"/api/requests/{a_request(c, p, cat, s)}/cancel", {})),
    "tick": (MAINTAIN, lambda c, p, cat, s, w: (set_checklist(s, ["looked"]) or "POST",
                                                f"/api/requests/{a_request(c, p, cat, s)}/checklist",
                                                {"json": {"item": "looked"}})),
    "approve": (MAINTAIN, lambda c, p, cat, s, w: ("POST", f"/api/requests/{a_request(c, p, cat, s)}/approve", {})),
    "reject": (MAINTAIN, lambda c, p, cat, s, w: ("POST", f"/api/requests/{a_request(c, p, cat, s)}/reject",
                                                  {"json": {"reason": "no"}})),
    "rerun": (MAINTAIN, lambda c, p, cat, s, w: ("POST",
                                                 f"/api/requests/{a_request(c, p, cat, s, 'cancelled')}/rerun", {})),
    "results": (SEE, lambda c, p, cat, s, w: ("GET", f"/api/requests/{a_request(c, p, cat, s, 'succeeded')}/results",
                                              {})),
    "provenance": (SEE, lambda c, p, cat, s, w: (
        "GET", f"/api/requests/{a_request(c, p, cat, s, 'succeeded')}/provenance", {})),
    "files": (SEE, lambda c, p, cat, s, w: ("GET", f"/api/requests/{a_request(c, p, cat, s, 'succeeded')}/files", {})),
    "input file": (SEE, lambda c, p, cat, s, w: (
        "GET", f"/api/requests/{a_request(c, p, cat, s)}/files/inputs/data/a.txt", {})),
    "output file": (SEE, lambda c, p, cat, s, w: (
        "GET", f"/api/requests/{a_request(c, p, cat, s, 'succeeded')}/files/outputs/total", {})),
    "events": (SEE, lambda c, p, cat, s, w: ("GET", f"/api/requests/{a_request(c, p, cat, s, 'succeeded')}/events",
                                             {})),
    "me": (SIGNED_IN, lambda c, p, cat, s, w: ("GET", "/api/me", {})),
    "users": (ADMIN, lambda c, p, cat, s, w: ("GET", "/api/users", {})),
    "create user": ({**ADMIN, "root": 201}, lambda c, p, cat, s, w: (
        "POST", "/api/users", {"json": {"name": f"new-{w}", "role": "requester"}})),
    "grant role": (ADMIN, lambda c, p, cat, s, w: ("POST", f"/api/users/{p.ids['bob']}/roles",
                                                   {"json": {"role": "maintainer", "analysis": "toy"}})),
    "revoke role": (ADMIN, lambda c, p, cat, s, w: ("DELETE", f"/api/users/{p.ids['mike']}/roles",
                                                    {"json": {"role": "maintainer", "analysis": "other"}})),
    "new token": ({**ADMIN, "root": 201}, lambda c, p, cat, s, w: ("POST", f"/api/users/{p.ids['bob']}/tokens",
                                                                  {"json": {"days": 1}})),
    "revoke token": (codes(401, 404, 200, 404, 404, 200), lambda c, p, cat, s, w: (
        "DELETE", f"/api/tokens/{bob_token_id(s, p, w)}", {})),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_authorization_matrix(client, service, people, catalog, case):
    expected, prepare = CASES[case]
    found = {}
    for who in WHO:
        if prepare == "submit":
            answer = submit(client, people, who, catalog)
        else:
            method, path, kwargs = prepare(client, people, catalog, service, who)
            answer = client.request(method, path, headers=people.headers(who), **kwargs)
        found[who] = answer.status_code
        if answer.status_code >= 400:
            assert "detail" in answer.json(), answer.text
    assert found == expected, json.dumps(found)


def test_every_api_route_is_in_the_matrix(client):
    """A new endpoint must be added to CASES."""
    paths = client.get("/openapi.json").json()["paths"]
    routes = sorted((method, path) for path, methods in paths.items() if path.startswith("/api") for method in methods)
    assert len(routes) == len(CASES), routes
