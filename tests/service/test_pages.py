"""The web pages, in-process: signing in, forms with CSRF values, the request page, review, admin."""

from __future__ import annotations

import re

import pytest

from recast.service import worker as worker_mod

from .conftest import toy_files


def csrf_of(html: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', html).group(1)


def sign_in(client, token: str) -> str:
    page = client.get("/signin")
    answer = client.post("/signin", data={"token": token, "csrf": csrf_of(page.text)}, follow_redirects=False)
    assert answer.status_code == 303, answer.text
    cookie = answer.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("samesite", "SameSite") and "Path=/" in cookie
    return csrf_of(client.get("/requests").text)


@pytest.fixture
def database_url():
    """The pages share the API's database code, tested on both databases: here SQLite is enough."""
    return None


def test_pages_from_catalog_to_results(client, service, people, catalog):
    assert "toy" in client.get("/").text
    analysis = client.get("/analyses/toy").text
    assert "Sign in" in analysis and 'name="p.points"' not in analysis
    assert client.get("/requests", follow_redirects=False).status_code == 401

    csrf = sign_in(client, people.tokens["alice"])
    form = client.get("/analyses/toy").text
    assert 'name="p.points"' in form and 'name="p.offset"' in form
    points = "- {x: 1, label: one, events: a.txt}\n- {x: 2, label: two, events: b.txt}\n" \
             "- {x: 3.5, label: three, events: a.txt}"
    data = toy_files(catalog)
    files = [("file", ("a.txt", data["data/a.txt"], "text/plain")), ("file", ("b.txt", data["data/b.txt"], "text/plain"))]
    no_csrf = client.post("/analyses/toy/requests", data={"p.points": points}, files=files, follow_redirects=False)
    assert no_csrf.status_code == 403 and service.config.files_dir.exists() and not any(
        service.config.files_dir.iterdir())
    bad = client.post("/analyses/toy/requests", data={"csrf": csrf, "p.points": points, "p.offset": "lots"},
                      files=files, follow_redirects=False)
    assert bad.status_code == 422 and "parameters.offset" in bad.text
    # Whatever is typed stays inside its own parameter.
    sneaky = client.post("/analyses/toy/requests", data={"csrf": csrf, "p.points": "[]\nanalysis: other"},
                         files=[("file", ("", b"", "application/octet-stream"))], follow_redirects=False)
    assert sneaky.status_code == 422 and "analysis" not in re.findall(r"<code>([^<]*)</code>", sneaky.text)
    made = client.post("/analyses/toy/requests", data={"csrf": csrf, "title": "from the form", "p.points": points,
                                                       "p.offset": "0"}, files=files, follow_redirects=False)
    assert made.status_code == 303, made.text
    page_path = made.headers["location"]
    page = client.get(page_path).text
    assert "from the form" in page and "submitted" in page and "/static/live.js" in page
    rid = int(page_path.rsplit("/", 1)[1])

    # The API with a session cookie: reads freely, changes only with the session's CSRF value.
    assert client.get(f"/api/requests/{rid}").status_code == 200
    assert client.post(f"/api/requests/{rid}/cancel").status_code == 403
    assert client.get("/admin").status_code == 403

    client.cookies.clear()
    csrf = sign_in(client, people.tokens["maria"])
    assert f'href="/requests/{rid}"' in client.get("/review").text
    assert client.post(f"/requests/{rid}/approve", data={"csrf": "wrong"}).status_code == 403
    assert client.post(f"/requests/{rid}/approve", data={"csrf": csrf}, follow_redirects=False).status_code == 303
    assert worker_mod.Worker(service, environment="host").run(once=True) == 1
    done = client.get(f"/requests/{rid}").text
    assert "succeeded" in done and "21.25" in done and "provenance.json" in done and "4/4 jobs done" in done
    assert "submitted → approved" in done or "submitted &rarr; approved" in done
    assert client.get("/static/live.js").headers["content-type"].startswith("text/javascript")

    client.cookies.clear()
    sign_in(client, people.tokens["bob"])
    assert client.get(f"/requests/{rid}").status_code == 404


def test_admin_page_and_revoked_sessions(client, service, people):
    csrf = sign_in(client, people.tokens["root"])
    assert "alice" in client.get("/admin").text
    made = client.post("/admin/users", data={"csrf": csrf, "name": "carol", "role": "maintainer", "analysis": "toy"})
    token = re.search(r"shown only now: <code>(recast_[^<]+)</code>", made.text).group(1)
    assert client.get("/api/me", headers={"Authorization": f"Bearer {token}"}).json()["name"] == "carol"
    assert token not in client.get("/admin").text, "a token is shown once"

    client.cookies.clear()
    sign_in(client, token)
    assert client.get("/review").status_code == 200
    from recast.service import auth
    from recast.service.db import Token

    with service.db.session() as session:
        for row in session.query(Token).all():
            if row.user.name == "carol":
                auth.revoke_token(session, row, None)
        session.commit()
    assert client.get("/review", follow_redirects=False).status_code == 401, "revoking the token ends the session"
    bad = client.get("/signin")
    assert client.post("/signin", data={"token": "recast_nonsense", "csrf": csrf_of(bad.text)}).status_code == 401
    assert client.post("/signin", data={"token": token, "csrf": "forged"}).status_code == 403


def test_html_is_escaped(client, service, people, catalog):
    from .conftest import submit, toy_document

    title = '<script>alert(1)</script>'
    rid = submit(client, people, "alice", catalog, title=title,
                 document=toy_document(label="<img src=x onerror=alert(1)>")).json()["id"]
    sign_in(client, people.tokens["alice"])
    page = client.get(f"/requests/{rid}")
    assert "<script>alert(1)</script>" not in page.text and "&lt;script&gt;" in page.text
    assert "<img src=x" not in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]


def test_result_tables_put_name_masses_and_inputs_before_results_as_the_cli_does():
    from recast.service.pages import _result_tables

    values = {"points": [{"cls_exp": [0.1] * 5, "cls_obs": 0.2, "cross_section_pb": 0.05, "m_C1N2": 300,
                          "m_N1": 0, "name": "p300"}], "total": 3}
    parameters = {"signals": [{"name": "p300", "m_C1N2": 300, "m_N1": 0, "cross_section_pb": 0.05}]}
    tables = _result_tables(values, parameters)
    assert tables[0] == {"name": "values", "columns": ["value", "result"], "rows": [["total", "3"]]}
    assert tables[1]["columns"] == ["name", "m_C1N2", "m_N1", "cross_section_pb", "cls_obs", "cls_exp"]
