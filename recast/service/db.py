"""The service's tables (SQLAlchemy 2), its engine and sessions, and its schema migrations.

The schema is owned by Alembic (``migrations/``): :func:`open_database` applies
every migration at start, in server and worker alike, so a schema change never
loses a stored request. SQLite (the embedded default) runs in WAL mode with a
busy timeout, so that a server and several workers share one file; PostgreSQL
is used as is.

Times are stored as naive UTC (SQLite has no time zones); :func:`utcnow` is the
one clock.
"""

from __future__ import annotations

import contextlib
import fcntl
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

from sqlalchemy import (JSON, Boolean, DateTime, ForeignKey, Integer, String, Text, UniqueConstraint, create_engine,
                        event, text)
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship, sessionmaker

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
POOL_SIZE = 40  # connections at most per process: the server runs sync endpoints in 40 threads


def utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


def iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.replace(tzinfo=timezone.utc).isoformat(timespec="seconds")


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)

    # Loaded when used (in a session): not with every request's owner, which needs only the name.
    roles: Mapped[list[Role]] = relationship(back_populates="user", cascade="all, delete-orphan", lazy="select")


class Role(Base):
    """``requester``; ``maintainer`` of one analysis, or of all (``analysis_id`` NULL); ``admin``."""

    __tablename__ = "roles"
    __table_args__ = (UniqueConstraint("user_id", "role", "analysis_id", name="uq_roles_user_role_analysis"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    role: Mapped[str] = mapped_column(String(16))
    analysis_id: Mapped[str | None] = mapped_column(String(128), nullable=True)

    user: Mapped[User] = relationship(back_populates="roles")


class Token(Base):
    """An API token: ``recast_<id>_<secret>``; only the sha256 of the secret is stored."""

    __tablename__ = "tokens"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    secret_sha256: Mapped[str] = mapped_column(String(64))
    description: Mapped[str] = mapped_column(String(256), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)

    user: Mapped[User] = relationship(lazy="joined")


class Request(Base):
    """A reinterpretation request: the document as submitted, its files, where it is in its lifecycle."""

    __tablename__ = "requests"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    analysis_id: Mapped[str] = mapped_column(String(128), index=True)
    analysis_version: Mapped[str] = mapped_column(String(64))
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    title: Mapped[str] = mapped_column(String(200), default="")
    document: Mapped[dict] = mapped_column(JSON)  # {"schema", "analysis", "parameters"} as checked
    digest: Mapped[str] = mapped_column(String(80))  # recast.request.Request.digest
    status: Mapped[str] = mapped_column(String(16), index=True)
    reason: Mapped[str] = mapped_column(Text, default="")  # why it was rejected
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    lease_owner: Mapped[str | None] = mapped_column(String(200), nullable=True)
    lease_expires_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    run_dir: Mapped[str] = mapped_column(String(1024), default="")
    progress: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    results: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    provenance: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    error: Mapped[str] = mapped_column(Text, default="")

    owner: Mapped[User] = relationship(lazy="joined")
    files: Mapped[list[RequestFile]] = relationship(cascade="all, delete-orphan", lazy="selectin",
                                                    order_by="RequestFile.name")


class RequestFile(Base):
    """A file of a request: its relative name in the request, and its content in ``DATA/files/`` by sha256."""

    __tablename__ = "request_files"
    __table_args__ = (UniqueConstraint("request_id", "name", name="uq_request_files_request_name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    request_id: Mapped[int] = mapped_column(ForeignKey("requests.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(1024))
    sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(Integer)


class Audit(Base):
    """Who did what, when: every lifecycle transition (from, to) and every administrative act."""

    __tablename__ = "audit"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, index=True)
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    actor: Mapped[str] = mapped_column(String(200))  # a user's name, or "worker HOST:PID"
    action: Mapped[str] = mapped_column(String(32))  # transition, tick, untick, user, role, token, ...
    request_id: Mapped[int | None] = mapped_column(ForeignKey("requests.id", ondelete="CASCADE"), nullable=True,
                                                   index=True)
    from_status: Mapped[str | None] = mapped_column(String(16), nullable=True)
    to_status: Mapped[str | None] = mapped_column(String(16), nullable=True)
    comment: Mapped[str] = mapped_column(Text, default="")


class Checklist(Base):
    """The review checklist of an analysis, kept by the service until analysis specs can declare one."""

    __tablename__ = "checklists"

    analysis_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    items: Mapped[list] = mapped_column(JSON)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class ChecklistTick(Base):
    __tablename__ = "checklist_ticks"
    __table_args__ = (UniqueConstraint("request_id", "item", name="uq_checklist_ticks_request_item"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    request_id: Mapped[int] = mapped_column(ForeignKey("requests.id", ondelete="CASCADE"), index=True)
    item: Mapped[str] = mapped_column(String(512))
    ticked_by: Mapped[int] = mapped_column(ForeignKey("users.id"))
    ticked_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class Setting(Base):
    """Service-wide values every process shares, e.g. the key that signs session cookies."""

    __tablename__ = "settings"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


# -- engine, migrations, sessions -------------------------------------------------------


def is_sqlite(engine_or_url: Engine | str) -> bool:
    url = engine_or_url.url if isinstance(engine_or_url, Engine) else make_url(engine_or_url)
    return url.get_backend_name() == "sqlite"


def make_engine(url: str) -> Engine:
    if is_sqlite(url):
        # As many pooled connections as the server has threads for sync endpoints (anyio's 40): past the
        # pool's size each checkout opened a new connection (and its pragmas) and closed it after.
        engine = create_engine(url, connect_args={"timeout": 60, "check_same_thread": False},
                               pool_size=POOL_SIZE, max_overflow=0, pool_timeout=60)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(connection, _record):
            cursor = connection.cursor()
            # WAL: readers never block the writer; busy_timeout: writers queue instead of failing.
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA busy_timeout=60000")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=POOL_SIZE - 10, pool_timeout=60)


def alembic_config(connection=None):
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


@contextlib.contextmanager
def _migration_lock(engine: Engine) -> Iterator[Any]:
    """One process migrates at a time (a server and its workers may start together)."""
    if is_sqlite(engine):
        database = engine.url.database
        lock_path = Path(database + ".migrate.lock") if database and database != ":memory:" else None
        if lock_path is None:
            with engine.begin() as connection:
                yield connection
            return
        with open(lock_path, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                with engine.begin() as connection:
                    yield connection
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)
    else:
        with engine.begin() as connection:
            connection.execute(text("SELECT pg_advisory_xact_lock(7215013001)"))
            yield connection


def migrate(engine: Engine, revision: str = "head") -> None:
    from alembic import command

    with _migration_lock(engine) as connection:
        command.upgrade(alembic_config(connection), revision)


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


class Database:
    """An engine with its schema up to date, and a session factory."""

    def __init__(self, url: str):
        self.url = url
        self.engine = make_engine(url)
        migrate(self.engine)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)

    @property
    def sqlite(self) -> bool:
        return is_sqlite(self.engine)

    def session(self) -> Session:
        return self.sessions()

    def dispose(self) -> None:
        self.engine.dispose()


def open_database(url: str) -> Database:
    return Database(url)
