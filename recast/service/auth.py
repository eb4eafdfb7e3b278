"""Who is asking, and what they may do: users, roles, API tokens, browser sessions.

An API token is ``recast_<id>_<secret>``: ``id`` finds the row, the secret is
compared with the stored sha256 in constant time (secrets are 256 random bits,
so a plain hash is as good as a slow one here). The token is shown once, when
issued; it may expire and may be revoked.

A browser signs in with a token once and gets a session cookie: signed
(itsdangerous, with a key kept in the database so every server process
agrees), HttpOnly, SameSite=strict, naming the token it came from, so revoking
the token ends the session too. The session carries a CSRF value that every
form must send back.

Roles: ``requester`` (submit; see and cancel their own requests),
``maintainer`` of one analysis or of all (review, approve, reject, re-run,
see every request of their analyses), ``admin`` (users, roles, tokens; and
everything a maintainer of all analyses may do).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from recast.errors import RecastError
from recast.service.db import Audit, Role, Setting, Token, User, utcnow

ROLES = ("requester", "maintainer", "admin")
TOKEN_PREFIX = "recast_"
_TOKEN = re.compile(r"^recast_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$")
_USER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_DUMMY_HASH = hashlib.sha256(b"no such token").hexdigest()
SESSION_COOKIE = "recast_session"


@dataclass(frozen=True)
class Principal:
    """A signed-in user and their roles; ``token_id`` is the token (or session's token) they came with."""

    user_id: int
    name: str
    roles: tuple[tuple[str, str | None], ...] = field(default_factory=tuple)
    token_id: str = ""

    @property
    def is_admin(self) -> bool:
        return any(role == "admin" for role, _ in self.roles)

    def maintains(self, analysis_id: str) -> bool:
        return self.is_admin or any(role == "maintainer" and scope in (None, analysis_id) for role, scope in self.roles)

    @property
    def maintains_all(self) -> bool:
        return self.is_admin or ("maintainer", None) in self.roles

    @property
    def maintained(self) -> set[str]:
        return {scope for role, scope in self.roles if role == "maintainer" and scope is not None}

    @property
    def is_maintainer(self) -> bool:
        return self.is_admin or any(role == "maintainer" for role, _ in self.roles)


def principal_of(user: User, token_id: str = "") -> Principal:
    return Principal(user.id, user.name, tuple(sorted(((r.role, r.analysis_id) for r in user.roles),
                                                      key=lambda r: (r[0], r[1] or ""))), token_id)


def _sha256(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


# -- users and roles ---------------------------------------------------------------------


def check_user_name(name: str) -> str:
    if not _USER.match(name or ""):
        raise RecastError(f"user name {name!r}: expected letters, digits, '.', '_' or '-' (at most 64)")
    return name


def check_role(role: str, analysis_id: str | None) -> None:
    if role not in ROLES:
        raise RecastError(f"role {role!r}: expected one of {', '.join(ROLES)}")
    if analysis_id is not None and role != "maintainer":
        raise RecastError(f"only a maintainer's role is per analysis, not {role!r}")


def audit(session: Session, actor: Principal | None, action: str, comment: str, **fields) -> None:
    session.add(Audit(actor_id=actor.user_id if actor else None, actor=actor.name if actor else "system",
                      action=action, comment=comment, at=utcnow(), **fields))


def create_user(session: Session, name: str, role: str, analysis_id: str | None = None,
                actor: Principal | None = None) -> User:
    check_user_name(name)
    check_role(role, analysis_id)
    if session.scalar(select(User).where(User.name == name)) is not None:
        raise RecastError(f"user {name!r} exists already")
    user = User(name=name, created_at=utcnow(), disabled=False)
    user.roles.append(Role(role=role, analysis_id=analysis_id))
    session.add(user)
    session.flush()
    audit(session, actor, "user", f"created user {name} as {role}" + (f" of {analysis_id}" if analysis_id else ""))
    return user


def grant(session: Session, user: User, role: str, analysis_id: str | None, actor: Principal | None) -> None:
    check_role(role, analysis_id)
    if any(r.role == role and r.analysis_id == analysis_id for r in user.roles):
        return
    user.roles.append(Role(role=role, analysis_id=analysis_id))
    audit(session, actor, "role", f"granted {role}" + (f" of {analysis_id}" if analysis_id else "") + f" to {user.name}")


def revoke_role(session: Session, user: User, role: str, analysis_id: str | None, actor: Principal | None) -> bool:
    for r in list(user.roles):
        if r.role == role and r.analysis_id == analysis_id:
            user.roles.remove(r)
            audit(session, actor, "role",
                  f"revoked {role}" + (f" of {analysis_id}" if analysis_id else "") + f" from {user.name}")
            return True
    return False


# -- tokens ------------------------------------------------------------------------------


def issue_token(session: Session, user: User, days: float | None = 90, description: str = "",
                actor: Principal | None = None) -> tuple[Token, str]:
    """A new token for ``user``: the row, and the token text (shown once; only its hash is kept)."""
    token_id = secrets.token_hex(8)
    secret = secrets.token_urlsafe(32)
    now = utcnow()
    row = Token(id=token_id, user_id=user.id, secret_sha256=_sha256(secret), description=description[:256],
                created_at=now, expires_at=now + timedelta(days=days) if days else None)
    session.add(row)
    audit(session, actor, "token", f"issued token {token_id} to {user.name}"
          + (f", expires {row.expires_at:%Y-%m-%d}" if row.expires_at else ", no expiry"))
    return row, f"{TOKEN_PREFIX}{token_id}_{secret}"


def revoke_token(session: Session, token: Token, actor: Principal | None) -> None:
    if token.revoked_at is None:
        token.revoked_at = utcnow()
        audit(session, actor, "token", f"revoked token {token.id} of {token.user.name}")


def token_usable(token: Token | None, now: datetime | None = None) -> bool:
    now = now or utcnow()
    return (token is not None and token.revoked_at is None and not token.user.disabled
            and (token.expires_at is None or token.expires_at > now))


def _lookup(session: Session, token_id: str) -> tuple[str, Principal, datetime | None] | None:
    """A usable token's stored hash, the principal it stands for and when it was last used, in one query
    (token, user and roles joined; no ORM objects: this runs on every authenticated request). None when
    unknown or unusable."""
    rows = session.execute(
        select(Token.secret_sha256, Token.expires_at, Token.revoked_at, User.id, User.name, User.disabled,
               Token.last_used_at, Role.role, Role.analysis_id)
        .join(User, User.id == Token.user_id).outerjoin(Role, Role.user_id == User.id)
        .where(Token.id == token_id)).all()
    if not rows:
        return None
    secret, expires, revoked, user_id, name, disabled = rows[0][:6]
    if revoked is not None or disabled or (expires is not None and expires <= utcnow()):
        return None
    roles = tuple(sorted({(r.role, r.analysis_id) for r in rows if r.role is not None},
                         key=lambda r: (r[0], r[1] or "")))
    return secret, Principal(user_id, name, roles, token_id), rows[0].last_used_at


def authenticate(session: Session, text: str | None) -> Principal | None:
    """The principal a token stands for, or None (unknown, malformed, wrong secret, revoked, expired)."""
    match = _TOKEN.match(text or "")
    found = _lookup(session, match.group(1)) if match else None
    secret = match.group(2) if match else ""
    # Compare even when there is no such token, so that timing tells nothing.
    same = hmac.compare_digest(_sha256(secret), found[0] if found is not None else _DUMMY_HASH)
    if not (same and found is not None):
        return None
    now = utcnow()
    if found[2] is None or now - found[2] > timedelta(minutes=1):  # a write at most once a minute per token
        session.execute(update(Token).where(Token.id == found[1].token_id).values(last_used_at=now)
                        .execution_options(synchronize_session=False))
        session.commit()
    return found[1]


def principal_for_token_id(session: Session, token_id: str) -> Principal | None:
    """For a session cookie that names its token: the principal while the token is still usable."""
    found = _lookup(session, token_id) if isinstance(token_id, str) else None
    return found[1] if found is not None else None


# -- sessions -----------------------------------------------------------------------------


def secret_key(session: Session) -> str:
    """The key that signs session cookies, made once and shared through the database."""
    row = session.get(Setting, "session_key")
    if row is None:
        session.add(Setting(key="session_key", value=secrets.token_urlsafe(48)))
        try:
            session.commit()
        except IntegrityError:  # another process made it first: use theirs
            session.rollback()
        row = session.get(Setting, "session_key")
    return row.value


class Sessions:
    """Signed session cookies: ``{"t": token id, "c": csrf value}``, valid for ``max_age`` seconds."""

    def __init__(self, key: str, max_age: float):
        from itsdangerous import URLSafeTimedSerializer

        self.serializer = URLSafeTimedSerializer(key, salt="recast-session")
        self.max_age = max_age

    def make(self, token_id: str) -> tuple[str, str]:
        csrf = secrets.token_urlsafe(24)
        return self.serializer.dumps({"t": token_id, "c": csrf}), csrf

    def read(self, cookie: str | None) -> dict | None:
        from itsdangerous import BadSignature

        if not cookie:
            return None
        try:
            data = self.serializer.loads(cookie, max_age=self.max_age)
        except BadSignature:
            return None
        return data if isinstance(data, dict) and isinstance(data.get("t"), str) and isinstance(data.get("c"), str) \
            else None


def same_secret(a: str | None, b: str | None) -> bool:
    return bool(a) and bool(b) and hmac.compare_digest(str(a).encode(), str(b).encode())
