"""A request's lifecycle, and the audit table that records every step of it.

    submitted -> approved | rejected (reason) | cancelled
    approved  -> queued | cancelled
    queued    -> running | cancelled
    running   -> succeeded | failed | cancelled | queued (its worker's lease expired)
    succeeded | failed | cancelled -> queued (re-run by a maintainer)

Every move is a compare-and-set on the status (``UPDATE ... WHERE status IN
(...)``), so two people or processes acting at once cannot both move a
request, and each move writes one audit row (who, when, from, to, comment) in
the same transaction.
"""

from __future__ import annotations

from sqlalchemy import update
from sqlalchemy.orm import Session

from recast.service.db import Audit, Request, utcnow
from recast.service.errors import Conflict

STATES = ("submitted", "approved", "rejected", "queued", "running", "succeeded", "failed", "cancelled")
FINISHED = ("succeeded", "failed", "cancelled")
ACTIVE = ("approved", "queued", "running")

TRANSITIONS: dict[str, tuple[str, ...]] = {
    "submitted": ("approved", "rejected", "cancelled"),
    "approved": ("queued", "cancelled"),
    "queued": ("running", "cancelled"),
    "running": ("succeeded", "failed", "cancelled", "queued"),
    "rejected": (),
    "succeeded": ("queued",),
    "failed": ("queued",),
    "cancelled": ("queued",),
}


def sources(to: str) -> tuple[str, ...]:
    """The states a request may be in to move to ``to``."""
    return tuple(s for s, targets in TRANSITIONS.items() if to in targets)


def record(session: Session, request_id: int, from_status: str | None, to_status: str, actor: str,
           actor_id: int | None, comment: str = "") -> None:
    session.add(Audit(at=utcnow(), actor=actor, actor_id=actor_id, action="transition", request_id=request_id,
                      from_status=from_status, to_status=to_status, comment=comment))


def move(session: Session, request: Request, to: str, actor: str, actor_id: int | None, comment: str = "",
         allowed: tuple[str, ...] | None = None, **values) -> str:
    """Move ``request`` to ``to`` if it is still in an allowed state; return the state it left.

    Raises :class:`Conflict` when the request is elsewhere. The caller commits.
    """
    allowed = tuple(s for s in (allowed or sources(to)) if to in TRANSITIONS[s])
    from_status = request.status
    if from_status not in allowed:
        raise Conflict(f"request {request.id} is {from_status}: it cannot become {to} "
                       f"(only from {', '.join(allowed) or 'no state'})")
    now = utcnow()
    done = session.execute(update(Request).where(Request.id == request.id, Request.status == from_status)
                           .values(status=to, updated_at=now, **values)
                           .execution_options(synchronize_session=False))
    if done.rowcount != 1:
        session.rollback()
        raise Conflict(f"request {request.id} changed while this was being done: look again")
    record(session, request.id, from_status, to, actor, actor_id, comment)
    session.flush()
    session.refresh(request)
    return from_status


def history(session: Session, request_id: int) -> list[dict]:
    from sqlalchemy import select

    from recast.service.db import iso

    rows = session.scalars(select(Audit).where(Audit.request_id == request_id).order_by(Audit.at, Audit.id))
    return [{"at": iso(a.at), "actor": a.actor, "action": a.action, "from": a.from_status, "to": a.to_status,
             "comment": a.comment} for a in rows]
