"""The HTTP API (``/api``) and the ASGI app that serves it beside the web pages.

Authentication: ``Authorization: Bearer TOKEN``, or the browser's session
cookie (then every request that changes something must carry the session's
CSRF value in ``X-CSRF-Token``). The OpenAPI document is at ``/openapi.json``.
Refusals are JSON ``{"detail": ...}``; a bad request (HTTP 422) lists every
problem as ``{"file", "field", "message"}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
from typing import AsyncIterator, Iterator

from fastapi import APIRouter, Depends, FastAPI, Query
from fastapi import Request as HttpRequest
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import MutableHeaders

import recast
from recast.errors import RecastError, RequestError
from recast.service import actions, auth, lifecycle, uploads
from recast.service.actions import Service
from recast.service.auth import Principal
from recast.service.config import ServiceConfig
from recast.service.db import Token, User, iso
from recast.service.errors import Forbidden, NotFound, ServiceError, Unauthenticated

SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


# -- dependencies ------------------------------------------------------------------------------


def service_of(http: HttpRequest) -> Service:
    return http.app.state.service


async def database(http: HttpRequest) -> AsyncIterator[Session]:
    """A session for one request. Made and closed on the event loop (no database work: the connection
    is taken on first use, in the endpoint's thread): a thread hop less on entry, and on exit unless
    a transaction is still open (closing it returns the connection, a database call)."""
    session = service_of(http).db.session()
    try:
        yield session
    finally:
        if session.in_transaction():
            await run_in_threadpool(session.close)
        else:
            session.close()


def principal(http: HttpRequest, session: Session = Depends(database)) -> Principal | None:
    """Who is asking: a bearer token, else a session cookie (with its CSRF value on every change), else nobody."""
    try:
        return who_is_asking(http, session)
    finally:
        # Give the connection back to the pool now (the session stays usable), not when the response is
        # done: else an upload being received or an event stream holds one throughout, and 15 uploads
        # that each open a second session wait for each other until the pool times out (HTTP 500).
        session.close()


def who_is_asking(http: HttpRequest, session: Session) -> Principal | None:
    header = http.headers.get("authorization")
    if header:
        scheme, _, token = header.partition(" ")
        found = auth.authenticate(session, token.strip()) if scheme.lower() == "bearer" else None
        if found is None:
            raise Unauthenticated("the API token is unknown, revoked or expired")
        return found
    data = service_of(http).sessions.read(http.cookies.get(auth.SESSION_COOKIE))
    if data is None:
        return None
    found = auth.principal_for_token_id(session, data["t"])
    if found is not None and http.method not in SAFE_METHODS \
            and not auth.same_secret(http.headers.get("x-csrf-token"), data["c"]):
        raise Forbidden("missing or wrong X-CSRF-Token for this session")
    return found


def admin(who: Principal | None = Depends(principal)) -> Principal:
    who = actions.require_user(who)
    if not who.is_admin:
        raise Forbidden("only an admin may do this")
    return who


# -- bodies ----------------------------------------------------------------------------------


class CommentBody(BaseModel):
    comment: str = Field("", max_length=actions.MAX_COMMENT)


class RejectBody(BaseModel):
    reason: str = Field(..., min_length=1, max_length=actions.MAX_COMMENT)


class RerunBody(BaseModel):
    comment: str = Field("", max_length=actions.MAX_COMMENT)
    refresh: bool = False


class TickBody(BaseModel):
    item: str = Field(..., max_length=500)
    ticked: bool = True


class ChecklistBody(BaseModel):
    items: list[str] = Field(..., max_length=100)


class NewUserBody(BaseModel):
    name: str = Field(..., max_length=64)
    role: str = Field(..., max_length=16)
    analysis: str | None = Field(None, max_length=128)
    token_days: float | None = Field(90, gt=0, le=3650)


class RoleBody(BaseModel):
    role: str = Field(..., max_length=16)
    analysis: str | None = Field(None, max_length=128)


class NewTokenBody(BaseModel):
    days: float | None = Field(90, gt=0, le=3650)
    description: str = Field("", max_length=256)


# -- the routes ---------------------------------------------------------------------------------

router = APIRouter(prefix="/api")


@router.get("/health", include_in_schema=False)
async def health():
    """Static liveness answer (no database, no authentication): for load balancers and as a benchmark baseline.
    Operational, not part of the API document (so not in test_authorization's matrix of API routes)."""
    return {"status": "ok", "version": recast.__version__}


@router.get("/analyses", tags=["catalog"])
def list_analyses(http: HttpRequest, who: Principal | None = Depends(principal)):
    """The catalog (public)."""
    return {"analyses": service_of(http).catalog.list()}


@router.get("/analyses/{analysis_id}", tags=["catalog"])
def show_analysis(analysis_id: str, http: HttpRequest, session: Session = Depends(database),
                  who: Principal | None = Depends(principal)):
    """One analysis (public): its summary, request parameters, examples and review checklist."""
    service = service_of(http)
    analysis = service.catalog.get(analysis_id)
    return {**actions.summary(analysis), "metadata": analysis.metadata,
            "parameters": actions.describe_parameters(analysis),
            "checklist": actions.checklist_items(session, service, analysis.id)}


@router.put("/analyses/{analysis_id}/checklist", tags=["review"])
def put_checklist(analysis_id: str, body: ChecklistBody, http: HttpRequest, session: Session = Depends(database),
                  who: Principal | None = Depends(principal)):
    """Set an analysis's review checklist (maintainers of it; until specs can declare one)."""
    return {"checklist": actions.set_checklist(session, service_of(http), who, analysis_id, body.items)}


@router.post("/analyses/{analysis_id}/requests", status_code=201, tags=["requests"],
             openapi_extra={"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
                 "type": "object", "required": ["request"],
                 "properties": {"request": {"type": "string", "format": "binary",
                                            "description": "the request document (YAML or JSON)"},
                                "file": {"type": "array", "items": {"type": "string", "format": "binary"},
                                         "description": "its files, each named by its path in the request"},
                                "title": {"type": "string"}}}}}}})
async def submit(analysis_id: str, http: HttpRequest, who: Principal | None = Depends(principal)):
    """Submit a request: multipart form with the document (``request``) and its files (``file``, named as
    the document names them). Refused with 422 naming every bad field, and then nothing is stored."""
    service = service_of(http)
    actions.require_user(who)
    await run_in_threadpool(service.catalog.get, analysis_id)
    upload = await uploads.receive(http.headers, http.stream(), service.config)
    try:
        def store():
            with service.db.session() as session:
                request = actions.submit(session, service, who, analysis_id, upload)
                return actions.describe(session, service, request)

        return await run_in_threadpool(store)
    finally:
        upload.discard()


@router.get("/requests", tags=["requests"])
def list_requests(http: HttpRequest, mine: bool = False, status: str | None = Query(None, max_length=16),
                  analysis: str | None = Query(None, max_length=128), session: Session = Depends(database),
                  who: Principal | None = Depends(principal)):
    """Requests this user may see (their own; a maintainer's: also those of their analyses). ``mine``: own only."""
    service = service_of(http)
    found = actions.list_requests(session, who, mine=mine, status=status, analysis_id=analysis)
    return {"requests": [actions.describe(session, service, r, full=False) for r in found]}


@router.get("/review", tags=["review"])
def review(http: HttpRequest, session: Session = Depends(database), who: Principal | None = Depends(principal)):
    """Submitted requests waiting for review by this maintainer."""
    service = service_of(http)
    return {"requests": [actions.describe(session, service, r) for r in actions.review_queue(session, who)]}


@router.get("/requests/{request_id}", tags=["requests"])
async def show_request(request_id: int, http: HttpRequest):
    """A request, its history, checklist and progress: what clients poll. Who is asking and what they
    may see are the same as everywhere, in one session and one trip to a worker thread (three with
    dependencies: each a wait for a thread, then for the event loop, which adds up under load)."""
    service = service_of(http)

    def look():
        with service.db.session() as session:
            who = who_is_asking(http, session)
            return actions.describe(session, service, actions.get_request(session, who, request_id))

    return await run_in_threadpool(look)


@router.post("/requests/{request_id}/cancel", tags=["requests"])
def cancel(request_id: int, http: HttpRequest, body: CommentBody | None = None, session: Session = Depends(database),
           who: Principal | None = Depends(principal)):
    request = actions.cancel(session, who, request_id, body.comment if body else "")
    return actions.describe(session, service_of(http), request)


@router.post("/requests/{request_id}/checklist", tags=["review"])
def tick(request_id: int, body: TickBody, http: HttpRequest, session: Session = Depends(database),
         who: Principal | None = Depends(principal)):
    return {"checklist": actions.tick(session, service_of(http), who, request_id, body.item, body.ticked)}


@router.post("/requests/{request_id}/approve", tags=["review"])
def approve(request_id: int, http: HttpRequest, body: CommentBody | None = None, session: Session = Depends(database),
            who: Principal | None = Depends(principal)):
    request = actions.approve(session, service_of(http), who, request_id, body.comment if body else "")
    return actions.describe(session, service_of(http), request)


@router.post("/requests/{request_id}/reject", tags=["review"])
def reject(request_id: int, body: RejectBody, http: HttpRequest, session: Session = Depends(database),
           who: Principal | None = Depends(principal)):
    return actions.describe(session, service_of(http), actions.reject(session, who, request_id, body.reason))


@router.post("/requests/{request_id}/rerun", tags=["review"])
def rerun(request_id: int, http: HttpRequest, body: RerunBody | None = None, session: Session = Depends(database),
          who: Principal | None = Depends(principal)):
    body = body or RerunBody()
    request = actions.rerun(session, service_of(http), who, request_id, body.comment, body.refresh)
    return actions.describe(session, service_of(http), request)


@router.get("/requests/{request_id}/results", tags=["results"])
def results(request_id: int, session: Session = Depends(database), who: Principal | None = Depends(principal)):
    """The run's results.json."""
    return actions.results(session, who, request_id)


@router.get("/requests/{request_id}/provenance", tags=["results"])
def provenance(request_id: int, session: Session = Depends(database), who: Principal | None = Depends(principal)):
    """The run's provenance.json, as a download."""
    document = actions.provenance(session, who, request_id)
    return Response(json.dumps(document, indent=1, sort_keys=True), media_type="application/json",
                    headers={"Content-Disposition": f'attachment; filename="request-{request_id}-provenance.json"'})


@router.get("/requests/{request_id}/files", tags=["results"])
def list_files(request_id: int, session: Session = Depends(database), who: Principal | None = Depends(principal)):
    """The request's uploaded files (``inputs``) and the run's result files (``outputs``)."""
    return actions.files(session, who, request_id)


@router.get("/requests/{request_id}/files/inputs/{name:path}", tags=["results"])
def input_file(request_id: int, name: str, http: HttpRequest, session: Session = Depends(database),
               who: Principal | None = Depends(principal)):
    path, filename = actions.input_file(session, service_of(http), who, request_id, name)
    return FileResponse(path, media_type="application/octet-stream", filename=filename)


@router.get("/requests/{request_id}/files/outputs/{key:path}", tags=["results"])
def output_file(request_id: int, key: str, session: Session = Depends(database),
                who: Principal | None = Depends(principal)):
    from recast import files as files_mod

    run_dir, relative, _ = actions.output_file(session, who, request_id, key)
    try:
        data = files_mod.read_bytes(run_dir, relative, max_bytes=1 << 30)
    except (OSError, RecastError):
        raise NotFound(f"result file {key!r} is no longer in the run folder") from None
    filename = relative.rsplit("/", 1)[-1]
    return Response(data, media_type="application/octet-stream",
                    headers={"Content-Disposition": f'attachment; filename="{filename}"'})


@router.get("/requests/{request_id}/events", tags=["requests"])
async def events(request_id: int, http: HttpRequest, who: Principal | None = Depends(principal)):
    """Server-Sent Events: the request's status and progress whenever they change, until it is finished."""
    service = service_of(http)

    def snapshot():
        with service.db.session() as session:
            request = actions.get_request(session, who, request_id)
            return actions.describe(session, service, request, full=False)

    first = await run_in_threadpool(snapshot)  # a 401/404 before the stream starts
    return StreamingResponse(_stream(http, snapshot, first), media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


async def _stream(http: HttpRequest, snapshot, first: dict, seconds: float = 3600, every: float = 1.0):
    last = None
    state = first
    loop = asyncio.get_running_loop()
    ends = loop.time() + seconds
    while True:
        text = json.dumps(state, sort_keys=True)
        if text != last:
            yield f"event: request\ndata: {text}\n\n"
            last = text
        if state["status"] in lifecycle.FINISHED + ("rejected",) or loop.time() > ends:
            yield "event: end\ndata: {}\n\n"
            return
        await asyncio.sleep(every)
        if await http.is_disconnected():
            return
        state = await run_in_threadpool(snapshot)


# -- who, users, tokens (admin) -------------------------------------------------------------------


def _user_doc(user: User, tokens: list[Token] | None = None) -> dict:
    doc = {"id": user.id, "name": user.name, "disabled": user.disabled, "created": iso(user.created_at),
           "roles": [{"role": r.role, "analysis": r.analysis_id} for r in user.roles]}
    if tokens is not None:
        doc["tokens"] = [{"id": t.id, "description": t.description, "created": iso(t.created_at),
                          "expires": iso(t.expires_at), "revoked": iso(t.revoked_at),
                          "last_used": iso(t.last_used_at)} for t in tokens]
    return doc


@router.get("/me", tags=["users"])
def me(session: Session = Depends(database), who: Principal | None = Depends(principal)):
    who = actions.require_user(who)
    return {**_user_doc(session.get(User, who.user_id)), "token": who.token_id}


@router.get("/users", tags=["users"])
def users(session: Session = Depends(database), who: Principal = Depends(admin)):
    found = session.scalars(select(User).order_by(User.name))
    return {"users": [_user_doc(u, list(session.scalars(select(Token).where(Token.user_id == u.id)
                                                          .order_by(Token.created_at)))) for u in found]}


def _user(session: Session, user_id: int) -> User:
    user = session.get(User, user_id)
    if user is None:
        raise NotFound(f"no user {user_id}")
    return user


@router.post("/users", status_code=201, tags=["users"])
def create_user(body: NewUserBody, session: Session = Depends(database), who: Principal = Depends(admin)):
    """A new user with one role, and a first token (shown only in this answer)."""
    user = auth.create_user(session, body.name, body.role, body.analysis, actor=who)
    _, token = auth.issue_token(session, user, body.token_days, "first token", actor=who)
    session.commit()
    return {**_user_doc(user), "token": token}


@router.post("/users/{user_id}/roles", tags=["users"])
def grant(user_id: int, body: RoleBody, session: Session = Depends(database), who: Principal = Depends(admin)):
    user = _user(session, user_id)
    auth.grant(session, user, body.role, body.analysis, who)
    session.commit()
    return _user_doc(user)


@router.delete("/users/{user_id}/roles", tags=["users"])
def revoke_role(user_id: int, body: RoleBody, session: Session = Depends(database), who: Principal = Depends(admin)):
    user = _user(session, user_id)
    if not auth.revoke_role(session, user, body.role, body.analysis, who):
        raise NotFound(f"user {user.name} has no such role")
    session.commit()
    return _user_doc(user)


@router.post("/users/{user_id}/tokens", status_code=201, tags=["users"])
def new_token(user_id: int, body: NewTokenBody, session: Session = Depends(database), who: Principal = Depends(admin)):
    """A new token for a user (shown only in this answer)."""
    user = _user(session, user_id)
    row, token = auth.issue_token(session, user, body.days, body.description, actor=who)
    session.commit()
    return {"id": row.id, "user": user.name, "expires": iso(row.expires_at), "token": token}


@router.delete("/tokens/{token_id}", tags=["users"])
def revoke_token(token_id: str, session: Session = Depends(database), who: Principal | None = Depends(principal)):
    """Revoke a token: an admin any token, a user their own."""
    who = actions.require_user(who)
    token = session.get(Token, token_id)
    if token is None or not (who.is_admin or token.user_id == who.user_id):
        raise NotFound(f"no token {token_id}")
    auth.revoke_token(session, token, who)
    session.commit()
    return {"id": token.id, "revoked": iso(token.revoked_at)}


# -- the app -----------------------------------------------------------------------------------------


def _problems(exc: RequestError) -> list[dict]:
    return [{"file": f, "field": w, "message": m} for f, w, m in exc.problems]


_heap_frozen = False


@contextlib.asynccontextmanager
async def _lifespan(app: FastAPI):
    """At start, once per process: what is loaded by then (modules, the app, the catalog) is kept out of
    the garbage collector's full collections (``gc.freeze``). Each of those walked the whole heap with
    every thread stopped: 65-130 ms pauses, measured, that were the status endpoint's p95 under load."""
    global _heap_frozen
    if not _heap_frozen:
        _heap_frozen = True
        gc.collect()
        gc.freeze()
    yield


def create_app(config: ServiceConfig | None = None, service: Service | None = None) -> FastAPI:
    """The ASGI app: the API under ``/api``, the web pages under ``/``; stateless beside its database."""
    from recast.service import pages

    service = service or Service.open(config or ServiceConfig())
    app = FastAPI(title="recast request service", version=recast.__version__, lifespan=_lifespan,
                  description="Submit reinterpretation requests, review them, follow their runs, fetch results.")
    app.state.service = service
    app.include_router(router)
    app.include_router(pages.router)

    def wants_html(http: HttpRequest) -> bool:
        return not http.url.path.startswith("/api") and http.url.path != "/openapi.json"

    @app.exception_handler(ServiceError)
    async def _service_error(http: HttpRequest, exc: ServiceError):
        if wants_html(http):
            return pages.error_page(http, exc.status, str(exc))
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return JSONResponse({"detail": str(exc)}, status_code=exc.status, headers=headers)

    @app.exception_handler(uploads.UploadRefused)
    async def _refused(http: HttpRequest, exc: uploads.UploadRefused):
        if wants_html(http):
            return pages.error_page(http, exc.status, str(exc))
        return JSONResponse({"detail": str(exc)}, status_code=exc.status, headers={"Connection": "close"})

    @app.exception_handler(RequestError)
    async def _bad_request(http: HttpRequest, exc: RequestError):
        if wants_html(http):
            return pages.error_page(http, 422, "the request is not valid", problems=_problems(exc))
        return JSONResponse({"detail": {"message": "the request is not valid", "problems": _problems(exc)}},
                            status_code=422)

    @app.exception_handler(RecastError)
    async def _recast_error(http: HttpRequest, exc: RecastError):
        if wants_html(http):
            return pages.error_page(http, 400, str(exc))
        return JSONResponse({"detail": str(exc)}, status_code=400)

    app.add_middleware(_SecurityHeaders)
    return app


class _SecurityHeaders:
    """Security headers on every answer (those it does not set itself). Plain ASGI: Starlette's
    ``@app.middleware("http")`` runs each request through extra tasks and streams, a measured cost."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope.get("path", "")
        html = not path.startswith(("/api", "/docs")) and path != "/openapi.json"

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers.setdefault("X-Content-Type-Options", "nosniff")
                headers.setdefault("X-Frame-Options", "DENY")
                headers.setdefault("Referrer-Policy", "same-origin")
                if html:
                    headers.setdefault("Content-Security-Policy",
                                       "default-src 'self'; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'")
            await send(message)

        await self.app(scope, receive, send_with_headers)
