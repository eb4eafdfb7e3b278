"""What people can do with requests, and who may do it: shared by the API and the web pages.

Each action takes the acting :class:`~recast.service.auth.Principal` (None:
anonymous), checks what it may do, and raises the service's errors: 401 for
nobody signed in, 404 for a request this user may not see (not told apart
from a missing one), 403 for one they may see but not act on, 409 for the
wrong state, 422 (:class:`recast.errors.RequestError`) for a bad request.

Seeing a request: its owner, a maintainer of its analysis, an admin.
Cancelling: the same people. Ticking the checklist, approving, rejecting,
re-running: a maintainer of its analysis, or an admin.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from threading import Lock

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from recast import catalog as catalog_mod
from recast.errors import RecastError, RequestError
from recast.model import Analysis
from recast.service import lifecycle, uploads
from recast.service.auth import Principal, Sessions, secret_key
from recast.service.config import ServiceConfig
from recast.service.db import ChecklistTick, Checklist, Database, Request, RequestFile, User, iso, open_database, utcnow
from recast.service.errors import Conflict, Forbidden, NotFound, Unauthenticated
from recast.validate import SPEC_FILE

MAX_COMMENT = 4000


class CatalogView:
    """The catalog as the service shows it: analyses loaded once, reloaded when their spec changes."""

    def __init__(self, root: Path | None):
        self.root = catalog_mod.resolve(root)
        self._cache: dict[str, tuple[int, Analysis]] = {}
        self._lock = Lock()
        self._listed: tuple[float, list[dict]] | None = None

    def get(self, analysis_id: str) -> Analysis:
        spec_path = self.root / analysis_id / SPEC_FILE
        try:
            stamp = spec_path.stat().st_mtime_ns if catalog_mod._ID.match(analysis_id) else None
        except OSError:
            stamp = None
        if stamp is None:
            raise NotFound(f"no analysis {analysis_id!r} in the catalog")
        with self._lock:
            cached = self._cache.get(analysis_id)
            if cached and cached[0] == stamp:
                return cached[1]
        try:
            analysis = catalog_mod.load(self.root, analysis_id)
        except RecastError as exc:
            raise NotFound(f"analysis {analysis_id!r} cannot be loaded: {exc}") from None
        with self._lock:
            self._cache[analysis_id] = (stamp, analysis)
        return analysis

    def list(self) -> list[dict]:
        now = time.monotonic()
        if self._listed and now - self._listed[0] < 30:
            return self._listed[1]
        found = []
        for entry in catalog_mod.entries(self.root):
            try:
                found.append(summary(self.get(entry.name)))
            except NotFound:
                continue
        self._listed = (now, found)
        return found


def summary(analysis: Analysis) -> dict:
    found = catalog_mod.summary(analysis)
    found.pop("path", None)  # where the server keeps its catalog is its own business
    found["description"] = analysis.description
    return found


def describe_parameters(analysis: Analysis) -> dict:
    def one(p) -> dict:
        doc = {"type": p.type, "description": p.description, **p.schema}
        if p.has_default:
            doc["default"] = p.default
        if p.items is not None:
            doc["items"] = one(p.items)
        if p.properties:
            doc["properties"] = {k: one(v) for k, v in p.properties.items()}
            doc["required"] = list(p.required)
        return doc

    return {name: one(p) for name, p in analysis.request_parameters.items()}


@dataclass
class Service:
    """One server's or worker's view of the service: configuration, database, catalog, session signer."""

    config: ServiceConfig
    db: Database
    catalog: CatalogView
    sessions: Sessions

    @classmethod
    def open(cls, config: ServiceConfig) -> Service:
        config.ensure()
        db = open_database(config.url)
        with db.session() as session:
            key = secret_key(session)
        return cls(config, db, CatalogView(config.catalog), Sessions(key, config.session_hours * 3600))


# -- seeing ------------------------------------------------------------------------------


def require_user(principal: Principal | None) -> Principal:
    if principal is None:
        raise Unauthenticated("sign in: send an API token as 'Authorization: Bearer TOKEN'")
    return principal


def may_see(principal: Principal, request: Request) -> bool:
    return request.owner_id == principal.user_id or principal.maintains(request.analysis_id)


def get_request(session: Session, principal: Principal | None, request_id: int) -> Request:
    principal = require_user(principal)
    request = session.get(Request, request_id)
    if request is None or not may_see(principal, request):
        raise NotFound(f"no request {request_id}")
    return request


def require_maintainer(principal: Principal, request: Request) -> None:
    if not principal.maintains(request.analysis_id):
        raise Forbidden(f"only a maintainer of {request.analysis_id} may do this")


def list_requests(session: Session, principal: Principal | None, mine: bool = False, status: str | None = None,
                  analysis_id: str | None = None, limit: int = 200) -> list[Request]:
    principal = require_user(principal)
    query = select(Request)
    if mine or not principal.is_maintainer:
        query = query.where(Request.owner_id == principal.user_id)
    elif not principal.maintains_all:
        query = query.where(or_(Request.owner_id == principal.user_id,
                                Request.analysis_id.in_(sorted(principal.maintained))))
    if status:
        query = query.where(Request.status == status)
    if analysis_id:
        query = query.where(Request.analysis_id == analysis_id)
    return list(session.scalars(query.order_by(Request.id.desc()).limit(max(1, min(limit, 1000)))))


def review_queue(session: Session, principal: Principal | None) -> list[Request]:
    principal = require_user(principal)
    if not principal.is_maintainer:
        raise Forbidden("the review queue is for maintainers")
    query = select(Request).where(Request.status == "submitted")
    if not principal.maintains_all:
        query = query.where(Request.analysis_id.in_(sorted(principal.maintained)))
    return list(session.scalars(query.order_by(Request.id)))


def describe(session: Session, service: Service, request: Request, full: bool = True) -> dict:
    doc = {
        "id": request.id, "analysis": request.analysis_id, "analysis_version": request.analysis_version,
        "owner": request.owner.name, "title": request.title, "status": request.status,
        "created": iso(request.created_at), "updated": iso(request.updated_at), "digest": request.digest,
        "attempts": request.attempts, "progress": request.progress, "error": request.error or None,
        "reason": request.reason or None,
    }
    if full:
        doc["document"] = request.document
        doc["files"] = [{"name": f.name, "sha256": f.sha256, "size": f.size} for f in request.files]
        doc["history"] = lifecycle.history(session, request.id)
        doc["checklist"] = checklist_state(session, service, request)
        doc["lease"] = {"owner": request.lease_owner, "expires": iso(request.lease_expires_at)} \
            if request.status == "running" else None
        doc["has_results"] = request.results is not None
    return doc


# -- checklists -----------------------------------------------------------------------------


def checklist_items(session: Session, service: Service, analysis_id: str) -> list[str]:
    """The analysis's review checklist: from its spec (``review.checklist``) once specs may declare one,
    else the one the service keeps for it, else none."""
    try:
        declared = (service.catalog.get(analysis_id).document.get("review") or {}).get("checklist")
    except NotFound:
        declared = None
    if declared:
        return [str(item) for item in declared]
    row = session.get(Checklist, analysis_id)
    return list(row.items) if row else []


def set_checklist(session: Session, service: Service, principal: Principal | None, analysis_id: str,
                  items: list[str]) -> list[str]:
    principal = require_user(principal)
    service.catalog.get(analysis_id)
    if not principal.maintains(analysis_id):
        raise Forbidden(f"only a maintainer of {analysis_id} may change its checklist")
    items = list(dict.fromkeys(i.strip() for i in items if i.strip()))
    if any(len(i) > 500 for i in items) or len(items) > 100:
        raise RequestError([("checklist", "items", "at most 100 items of at most 500 characters")])
    row = session.get(Checklist, analysis_id)
    if row is None:
        session.add(Checklist(analysis_id=analysis_id, items=items, updated_at=utcnow()))
    else:
        row.items, row.updated_at = items, utcnow()
    from recast.service.auth import audit

    audit(session, principal, "checklist", f"checklist of {analysis_id}: {len(items)} item(s)")
    session.commit()
    return items


def checklist_state(session: Session, service: Service, request: Request) -> list[dict]:
    ticks = {t.item: t for t in session.scalars(select(ChecklistTick).where(ChecklistTick.request_id == request.id))}
    names = {u.id: u.name for u in session.scalars(select(User).where(User.id.in_({t.ticked_by for t in ticks.values()})))}
    return [{"item": item, "ticked": item in ticks,
             "by": names.get(ticks[item].ticked_by) if item in ticks else None,
             "at": iso(ticks[item].ticked_at) if item in ticks else None}
            for item in checklist_items(session, service, request.analysis_id)]


def tick(session: Session, service: Service, principal: Principal | None, request_id: int, item: str,
         ticked: bool = True) -> list[dict]:
    request = get_request(session, principal, request_id)
    require_maintainer(principal, request)
    if request.status != "submitted":
        raise Conflict(f"request {request.id} is {request.status}: its checklist is closed")
    if item not in checklist_items(session, service, request.analysis_id):
        raise RequestError([("checklist", "item", f"{item!r} is not an item of {request.analysis_id}'s checklist")])
    existing = session.scalar(select(ChecklistTick).where(ChecklistTick.request_id == request.id,
                                                          ChecklistTick.item == item))
    from recast.service.auth import audit

    if ticked and existing is None:
        session.add(ChecklistTick(request_id=request.id, item=item, ticked_by=principal.user_id, ticked_at=utcnow()))
        audit(session, principal, "tick", item, request_id=request.id)
    elif not ticked and existing is not None:
        session.delete(existing)
        audit(session, principal, "untick", item, request_id=request.id)
    session.commit()
    return checklist_state(session, service, request)


# -- the lifecycle ----------------------------------------------------------------------------


def submit(session: Session, service: Service, principal: Principal | None, analysis_id: str,
           upload: uploads.Upload, title: str = "") -> Request:
    """Check an upload as a request for ``analysis_id``; store it, or refuse it with nothing stored."""
    principal = require_user(principal)
    analysis = service.catalog.get(analysis_id)
    if not analysis.runnable:
        raise RequestError([("request", "analysis", f"{analysis_id} is a likelihood-only entry: it has no workflow "
                                                    "to run on a request")])
    document, checked = uploads.check(upload, analysis, service.config.limits)
    title = (title or upload.field("title")).strip()[:200]
    stored_files = uploads.store(upload, service.config)
    now = utcnow()
    request = Request(analysis_id=analysis.id, analysis_version=analysis.version, owner_id=principal.user_id,
                      title=title, document=document, digest=checked.digest, status="submitted", reason="",
                      created_at=now, updated_at=now, attempts=0, run_dir="", error="")
    request.files = [RequestFile(name=f.name, sha256=f.sha256, size=f.size) for f in stored_files]
    session.add(request)
    session.flush()
    request.run_dir = str(service.config.runs_dir / str(request.id))
    lifecycle.record(session, request.id, None, "submitted", principal.name, principal.user_id, title)
    session.commit()
    return request


def _comment(text: str | None) -> str:
    text = (text or "").strip()
    if len(text) > MAX_COMMENT:
        raise RequestError([("comment", "comment", f"longer than {MAX_COMMENT} characters")])
    return text


def cancel(session: Session, principal: Principal | None, request_id: int, comment: str = "") -> Request:
    request = get_request(session, principal, request_id)
    lifecycle.move(session, request, "cancelled", principal.name, principal.user_id, _comment(comment))
    session.commit()
    return request


def approve(session: Session, service: Service, principal: Principal | None, request_id: int,
            comment: str = "") -> Request:
    request = get_request(session, principal, request_id)
    require_maintainer(principal, request)
    missing = [c["item"] for c in checklist_state(session, service, request) if not c["ticked"]]
    if request.status == "submitted" and missing:
        raise Conflict("tick every item of the review checklist first; not ticked: " + "; ".join(missing))
    lifecycle.move(session, request, "approved", principal.name, principal.user_id, _comment(comment))
    lifecycle.move(session, request, "queued", principal.name, principal.user_id, "waiting for a worker")
    session.commit()
    return request


def reject(session: Session, principal: Principal | None, request_id: int, reason: str) -> Request:
    request = get_request(session, principal, request_id)
    require_maintainer(principal, request)
    reason = _comment(reason)
    if not reason:
        raise RequestError([("reject", "reason", "say why the request is rejected")])
    lifecycle.move(session, request, "rejected", principal.name, principal.user_id, reason, reason=reason)
    session.commit()
    return request


def rerun(session: Session, service: Service, principal: Principal | None, request_id: int, comment: str = "",
          refresh: bool = False) -> Request:
    """Queue a finished request again: into its own run folder (incremental: only what changed runs), or,
    with ``refresh``, when its analysis changed since, into a new folder beside it (``recast refresh``)."""
    request = get_request(session, principal, request_id)
    require_maintainer(principal, request)
    values = {"results": None, "provenance": None, "error": "", "progress": None, "lease_owner": None,
              "lease_expires_at": None}
    comment = _comment(comment)
    if refresh:
        from recast import refresh as refresh_mod

        analysis = service.catalog.get(request.analysis_id)
        try:
            stored = refresh_mod.load_run(request.run_dir)
        except RecastError:
            raise Conflict(f"request {request.id} has no finished run to refresh") from None
        reasons = refresh_mod.stale(stored, analysis)
        if not reasons:
            raise Conflict(f"request {request.id}'s results are up to date with {analysis.id} {analysis.version}")
        values.update(run_dir=str(refresh_mod.refreshed_dir(stored, analysis)), analysis_version=analysis.version)
        comment = "; ".join(filter(None, [comment, "refresh: " + ", ".join(reasons)]))
    lifecycle.move(session, request, "queued", principal.name, principal.user_id, comment or "re-run",
                   allowed=lifecycle.FINISHED, **values)
    session.commit()
    return request


# -- results and files ------------------------------------------------------------------------


def results(session: Session, principal: Principal | None, request_id: int) -> dict:
    request = get_request(session, principal, request_id)
    if request.results is None:
        raise Conflict(f"request {request.id} is {request.status}: no results yet")
    return request.results


def provenance(session: Session, principal: Principal | None, request_id: int) -> dict:
    request = get_request(session, principal, request_id)
    if request.provenance is None:
        raise Conflict(f"request {request.id} is {request.status}: no provenance yet")
    return request.provenance


def files(session: Session, principal: Principal | None, request_id: int) -> dict:
    request = get_request(session, principal, request_id)
    outputs = (request.results or {}).get("files", {})
    return {"inputs": [{"name": f.name, "sha256": f.sha256, "size": f.size} for f in request.files],
            "outputs": [{"name": k, "path": v["path"], "sha256": v["sha256"]} for k, v in sorted(outputs.items())]}


def input_file(session: Session, service: Service, principal: Principal | None, request_id: int,
               name: str) -> tuple[Path, str]:
    request = get_request(session, principal, request_id)
    for f in request.files:
        if f.name == name:
            return uploads.content_path(service.config, f.sha256), Path(f.name).name
    raise NotFound(f"request {request.id} has no file {name!r}")


def output_file(session: Session, principal: Principal | None, request_id: int, key: str) -> tuple[Path, str, str]:
    """A result file: (run folder, its path in the run folder, its recorded sha256). Read it with
    :func:`recast.files.open_regular`, which follows no link."""
    request = get_request(session, principal, request_id)
    entry = ((request.results or {}).get("files") or {}).get(key)
    if entry is None:
        raise NotFound(f"request {request.id} has no result file {key!r}")
    return Path(request.run_dir), entry["path"], entry["sha256"]
