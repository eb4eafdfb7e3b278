"""The web pages: server-rendered (Jinja2, ``templates/``), usable without JavaScript.

Only the request page's live view (status, progress, log tail) uses a little
script, ``/static/live.js``, fed by the API's Server-Sent Events; without it the
page shows the same state as of loading.

Signing in: a form takes an API token once and sets a session cookie (signed,
HttpOnly, SameSite=strict, naming the token, so revoking the token ends the
session). Every form carries the session's CSRF value, checked in constant
time; the sign-in form, before there is a session, uses a CSRF cookie of its own.
"""

from __future__ import annotations

import json
import re
import secrets
from pathlib import Path

from fastapi import APIRouter, Depends, Form
from fastapi import Request as HttpRequest
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from recast.errors import RecastError, RequestError
from recast.service import actions, auth, uploads
from recast.service.db import Token, User, iso
from recast.service.errors import Forbidden, Unauthenticated

TEMPLATES = Jinja2Templates(directory=str(Path(__file__).resolve().parent / "templates"))
PRE_CSRF_COOKIE = "recast_signin_csrf"
_NUMBER = re.compile(r"^-?(\d{1,30})(\.\d{1,30})?([eE][-+]?\d{1,3})?$")

router = APIRouter(include_in_schema=False)


def _service(http: HttpRequest):
    return http.app.state.service


def _database(http: HttpRequest):
    with _service(http).db.session() as session:
        yield session


class Visitor:
    """Who is looking at a page: a principal (or None) and the session's CSRF value."""

    def __init__(self, principal: auth.Principal | None, csrf: str):
        self.principal, self.csrf = principal, csrf

    @property
    def name(self) -> str | None:
        return self.principal.name if self.principal else None


def visitor(http: HttpRequest, session: Session = Depends(_database)) -> Visitor:
    data = _service(http).sessions.read(http.cookies.get(auth.SESSION_COOKIE))
    if data is None:
        return Visitor(None, "")
    return Visitor(auth.principal_for_token_id(session, data["t"]), data["c"])


def _form_checked(found: Visitor, csrf: str) -> auth.Principal:
    if found.principal is None:
        raise Unauthenticated("sign in first")
    if not auth.same_secret(csrf, found.csrf):
        raise Forbidden("this form has expired or did not come from this site: reload the page and try again")
    return found.principal


def render(http: HttpRequest, template: str, found: Visitor | None, status: int = 200, **context) -> HTMLResponse:
    return TEMPLATES.TemplateResponse(http, template, {"me": found, **context}, status_code=status)


def error_page(http: HttpRequest, status: int, message: str, problems: list | None = None) -> HTMLResponse:
    return TEMPLATES.TemplateResponse(http, "error.html", {"me": None, "status": status, "message": message,
                                                           "problems": problems or []}, status_code=status)


def _back(path: str) -> RedirectResponse:
    return RedirectResponse(path, status_code=303)


@router.get("/static/live.js")
def live_js():
    return Response((Path(__file__).resolve().parent / "templates" / "live.js").read_text(),
                    media_type="text/javascript", headers={"Cache-Control": "max-age=300"})


@router.get("/favicon.ico")
def favicon():
    """No icon: an empty answer rather than a 404 in every browser's console."""
    return Response(status_code=204, headers={"Cache-Control": "max-age=86400"})


# -- catalog ----------------------------------------------------------------------------------


@router.get("/", response_class=HTMLResponse)
def catalog_page(http: HttpRequest, found: Visitor = Depends(visitor)):
    return render(http, "catalog.html", found, analyses=_service(http).catalog.list())


@router.get("/analyses/{analysis_id}", response_class=HTMLResponse)
def analysis_page(analysis_id: str, http: HttpRequest, found: Visitor = Depends(visitor),
                  session: Session = Depends(_database)):
    service = _service(http)
    analysis = service.catalog.get(analysis_id)
    parameters = actions.describe_parameters(analysis)
    example = None
    if analysis.examples:
        from recast import spec

        first = sorted(analysis.examples.values(), key=lambda e: e.name)[0]
        try:
            document = spec.load_document(first.request)
        except RecastError:  # an example that cannot be read only loses its pre-filled form
            document = None
        example = document.get("parameters") if isinstance(document, dict) else None
    fields = [_field(name, p, (example or {}).get(name)) for name, p in parameters.items()]
    return render(http, "analysis.html", found, analysis=actions.summary(analysis), metadata=analysis.metadata,
                  fields=fields, checklist=actions.checklist_items(session, service, analysis.id),
                  runnable=analysis.runnable)


def _field(name: str, param: dict, example) -> dict:
    import yaml

    simple = param["type"] in ("string", "number", "integer", "boolean", "file")
    value = _uploaded_names(param, example) if example is not None else param.get("default")
    if not simple:
        value = yaml.safe_dump(value, default_flow_style=None, sort_keys=False, allow_unicode=True).strip() \
            if value is not None else ""
    return {"name": name, "type": param["type"], "description": param.get("description", ""),
            "required": "default" not in param, "simple": simple, "value": "" if value is None else value,
            "parts": _parts(param), "schema": json.dumps(param, sort_keys=True, ensure_ascii=False)}


def _uploaded_names(param: dict, value):
    """An example's value with its files named as a browser uploads them: by their base names
    (``samples/a.lhe.gz`` -> ``a.lhe.gz``), so that the pre-filled form is valid once the files are chosen."""
    kind = param.get("type")
    if kind == "file" and isinstance(value, str):
        return value.rsplit("/", 1)[-1]
    if kind == "list" and isinstance(value, list) and isinstance(param.get("items"), dict):
        return [_uploaded_names(param["items"], v) for v in value]
    if isinstance(value, dict) and isinstance(param.get("properties"), dict):
        return {k: _uploaded_names(param["properties"].get(k, {}), v) for k, v in value.items()}
    return value


def _parts(param: dict) -> list[dict]:
    """The fields of a structured parameter (of each of its items, for a list), to list under its text box."""
    shape = param.get("items") if param.get("type") == "list" else param
    if not isinstance(shape, dict) or not isinstance(shape.get("properties"), dict):
        return []
    required = set(shape.get("required") or ())
    return [{"name": k, "type": v.get("type", ""), "required": k in required,
             "unit": v.get("unit", ""), "suffixes": v.get("suffixes") or [], "description": v.get("description", "")}
            for k, v in shape["properties"].items()]


def _document_from_form(fields: dict[str, list[str]], parameters: dict) -> str:
    """The form's values as a request document (YAML text), read afterwards by the same loader and checks as
    an uploaded document: strings are JSON-quoted, numbers must look like numbers, structured values are
    indented under their name so that nothing typed can leave its own parameter."""
    lines = ["parameters:"]
    for name, param in parameters.items():
        raw = (fields.get(f"p.{name}") or [""])[0]
        kind = param["type"]
        if kind == "boolean":
            lines.append(f"  {name}: {'true' if raw in ('on', 'true') else 'false'}")
            continue
        if raw.strip() == "":
            continue
        if kind in ("string", "file"):
            lines.append(f"  {name}: {json.dumps(raw)}")
        elif kind in ("number", "integer"):
            if not _NUMBER.match(raw.strip()):
                raise RequestError([("request", f"parameters.{name}", f"{raw[:40]!r}: expected a number")])
            lines.append(f"  {name}: {raw.strip()}")
        else:
            lines.append(f"  {name}:")
            lines.extend("    " + line for line in raw.replace("\r\n", "\n").split("\n"))
    return "\n".join(lines) + "\n"


@router.post("/analyses/{analysis_id}/requests")
async def submit_form(analysis_id: str, http: HttpRequest):
    service = _service(http)
    found = await run_in_threadpool(_visitor_now, http)
    if found.principal is None:
        raise Unauthenticated("sign in first")
    analysis = await run_in_threadpool(service.catalog.get, analysis_id)
    upload = await uploads.receive(http.headers, http.stream(), service.config)
    try:
        _form_checked(found, upload.field("csrf"))
        if upload.document is None or not upload.document.strip():
            upload.document = _document_from_form(upload.fields, actions.describe_parameters(analysis)).encode()
            upload.document_name = "form.yaml"

        def store():
            with service.db.session() as session:
                return actions.submit(session, service, found.principal, analysis_id, upload).id

        request_id = await run_in_threadpool(store)
    finally:
        upload.discard()
    return _back(f"/requests/{request_id}")


def _visitor_now(http: HttpRequest) -> Visitor:
    with _service(http).db.session() as session:
        return visitor(http, session)


# -- requests ------------------------------------------------------------------------------------


@router.get("/requests", response_class=HTMLResponse)
def requests_page(http: HttpRequest, found: Visitor = Depends(visitor), session: Session = Depends(_database)):
    service = _service(http)
    listed = actions.list_requests(session, found.principal)
    return render(http, "requests.html", found, title="Requests",
                  requests=[actions.describe(session, service, r, full=False) for r in listed])


@router.get("/review", response_class=HTMLResponse)
def review_page(http: HttpRequest, found: Visitor = Depends(visitor), session: Session = Depends(_database)):
    service = _service(http)
    queue = actions.review_queue(session, found.principal)
    return render(http, "requests.html", found, title="Review queue",
                  requests=[actions.describe(session, service, r, full=False) for r in queue])


@router.get("/requests/{request_id}", response_class=HTMLResponse)
def request_page(request_id: int, http: HttpRequest, found: Visitor = Depends(visitor),
                 session: Session = Depends(_database)):
    service = _service(http)
    request = actions.get_request(session, found.principal, request_id)
    shown = actions.describe(session, service, request)
    results = request.results or {}
    return render(http, "request.html", found, request=shown, results=results,
                  tables=_result_tables(results.get("values", {}),
                                        (request.document or {}).get("parameters", {})),
                  maintainer=found.principal.maintains(request.analysis_id),
                  owner=request.owner_id == found.principal.user_id,
                  outputs=actions.files(session, found.principal, request_id)["outputs"])


def _result_tables(values: dict, parameters: dict) -> list[dict]:
    """Each result value as a table when it is a list of records (or holds one), else as one row;
    columns as ``recast results`` orders them (name, masses, inputs, then results)."""
    from recast.cli.common import fmt
    from recast.cli.run import column_order, request_fields

    tables, scalars = [], []
    for name, value in values.items():
        rows = value
        if isinstance(rows, dict) and len(rows) == 1:
            rows = next(iter(rows.values()))
        if isinstance(rows, list) and rows and all(isinstance(r, dict) for r in rows):
            columns = column_order(dict.fromkeys(c for r in rows for c in r), request_fields(parameters))
            tables.append({"name": name, "columns": columns,
                           "rows": [[fmt(r.get(c)) for c in columns] for r in rows]})
        else:
            scalars.append([name, fmt(value)])
    if scalars:
        tables.insert(0, {"name": "values", "columns": ["value", "result"], "rows": scalars})
    return tables


@router.post("/requests/{request_id}/{verb}")
def request_action(request_id: int, verb: str, http: HttpRequest, csrf: str = Form(""), comment: str = Form(""),
                   reason: str = Form(""), item: str = Form(""), ticked: str = Form(""), refresh: str = Form(""),
                   found: Visitor = Depends(visitor), session: Session = Depends(_database)):
    principal = _form_checked(found, csrf)
    service = _service(http)
    if verb == "cancel":
        actions.cancel(session, principal, request_id, comment)
    elif verb == "approve":
        actions.approve(session, service, principal, request_id, comment)
    elif verb == "reject":
        actions.reject(session, principal, request_id, reason)
    elif verb == "rerun":
        actions.rerun(session, service, principal, request_id, comment, refresh == "on")
    elif verb == "tick":
        actions.tick(session, service, principal, request_id, item, ticked != "off")
    else:
        return error_page(http, 404, f"no action {verb!r}")
    return _back(f"/requests/{request_id}")


# -- signing in ------------------------------------------------------------------------------------


@router.get("/signin", response_class=HTMLResponse)
def signin_page(http: HttpRequest, found: Visitor = Depends(visitor)):
    csrf = secrets.token_urlsafe(24)
    response = render(http, "signin.html", found, csrf=csrf)
    response.set_cookie(PRE_CSRF_COOKIE, csrf, httponly=True, samesite="strict", max_age=3600,
                        secure=_service(http).config.secure_cookies, path="/signin")
    return response


@router.post("/signin")
def signin(http: HttpRequest, token: str = Form(..., max_length=200), csrf: str = Form(""),
           session: Session = Depends(_database)):
    if not auth.same_secret(csrf, http.cookies.get(PRE_CSRF_COOKIE)):
        raise Forbidden("this form has expired: reload the sign-in page")
    principal = auth.authenticate(session, token.strip())
    if principal is None:
        found = Visitor(None, "")
        fresh = secrets.token_urlsafe(24)
        response = render(http, "signin.html", found, status=401, csrf=fresh,
                          message="that token is unknown, revoked or expired")
        response.set_cookie(PRE_CSRF_COOKIE, fresh, httponly=True, samesite="strict", max_age=3600,
                            secure=_service(http).config.secure_cookies, path="/signin")
        return response
    service = _service(http)
    cookie, _ = service.sessions.make(principal.token_id)
    response = _back("/requests")
    response.set_cookie(auth.SESSION_COOKIE, cookie, httponly=True, samesite="strict", path="/",
                        max_age=int(service.sessions.max_age), secure=service.config.secure_cookies)
    response.delete_cookie(PRE_CSRF_COOKIE, path="/signin")
    return response


@router.post("/signout")
def signout(csrf: str = Form(""), found: Visitor = Depends(visitor)):
    _form_checked(found, csrf)
    response = _back("/")
    response.delete_cookie(auth.SESSION_COOKIE, path="/")
    return response


# -- admin -----------------------------------------------------------------------------------------


def _admin(found: Visitor) -> auth.Principal:
    if found.principal is None:
        raise Unauthenticated("sign in first")
    if not found.principal.is_admin:
        raise Forbidden("only an admin may see this page")
    return found.principal


def _users(session: Session) -> list[dict]:
    rows = []
    for user in session.scalars(select(User).order_by(User.name)):
        tokens = list(session.scalars(select(Token).where(Token.user_id == user.id).order_by(Token.created_at)))
        rows.append({"id": user.id, "name": user.name,
                     "roles": [r.role + (f" of {r.analysis_id}" if r.analysis_id else "") for r in user.roles],
                     "tokens": [{"id": t.id, "description": t.description, "expires": iso(t.expires_at),
                                 "revoked": iso(t.revoked_at), "last_used": iso(t.last_used_at)} for t in tokens]})
    return rows


@router.get("/admin", response_class=HTMLResponse)
def admin_page(http: HttpRequest, found: Visitor = Depends(visitor), session: Session = Depends(_database)):
    _admin(found)
    return render(http, "admin.html", found, users=_users(session), new_token=None)


@router.post("/admin/users", response_class=HTMLResponse)
def admin_create_user(http: HttpRequest, name: str = Form(..., max_length=64), role: str = Form(..., max_length=16),
                      analysis: str = Form("", max_length=128), csrf: str = Form(""),
                      found: Visitor = Depends(visitor), session: Session = Depends(_database)):
    principal = _form_checked(found, csrf)
    _admin(found)
    user = auth.create_user(session, name.strip(), role, analysis.strip() or None, actor=principal)
    _, token = auth.issue_token(session, user, 90, "first token", actor=principal)
    session.commit()
    return render(http, "admin.html", found, users=_users(session), new_token={"user": user.name, "token": token})


@router.post("/admin/tokens/{token_id}/revoke")
def admin_revoke(token_id: str, csrf: str = Form(""), found: Visitor = Depends(visitor),
                 session: Session = Depends(_database)):
    principal = _form_checked(found, csrf)
    _admin(found)
    token = session.get(Token, token_id)
    if token is not None:
        auth.revoke_token(session, token, principal)
        session.commit()
    return _back("/admin")
