"""``recast serve`` (the request service's server, and its admin commands) and ``recast worker``.

The service's own packages (FastAPI, SQLAlchemy, ...) are the ``service``
extra: they are imported only when one of these commands runs.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import sys
import threading
from pathlib import Path

import click

from recast.cli.common import catalog_option, emit_json, err_console, json_option
from recast.cli.executor import executor_options
from recast.errors import RecastError

ENVIRONMENTS = ("docker", "host")


def _service_options(command):
    command = click.option("--database-url", envvar="RECAST_DATABASE_URL",
                           help="PostgreSQL (postgresql+psycopg://USER:PASSWORD@HOST/DB); default: SQLite in --data. "
                                "Env RECAST_DATABASE_URL.")(command)
    command = click.option("--data", "data_dir", type=click.Path(file_okay=False), envvar="RECAST_DATA",
                           default="recast-data", show_default=True,
                           help="Data folder: uploaded files, run folders, and the SQLite database. Env RECAST_DATA.")(
        command)
    return catalog_option(command)


def _config(data_dir, database_url, catalog_dir):
    try:
        from recast.service.config import ServiceConfig
    except ImportError as exc:  # pragma: no cover - depends on the installation
        raise RecastError(f"the request service needs the 'service' extra: pip install 'recast[service]' ({exc})")
    return ServiceConfig(data=Path(data_dir), database_url=database_url,
                         catalog=Path(catalog_dir) if catalog_dir else None)


def _open(data_dir, database_url, catalog_dir):
    try:
        from recast.service.actions import Service
    except ImportError as exc:  # pragma: no cover - depends on the installation
        raise RecastError(f"the request service needs the 'service' extra: pip install 'recast[service]' ({exc})")
    return Service.open(_config(data_dir, database_url, catalog_dir))


def _default_environment() -> str:
    from recast.environments.docker import engine_available

    return "docker" if engine_available() else "host"


@click.group(invoke_without_command=True)
@_service_options
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True)
@click.option("--with-worker", is_flag=True,
              help="Also run a worker in this process, and print an admin token: a one-command demo.")
@click.option("--environment", type=click.Choice(ENVIRONMENTS),
              help="The demo worker's environment (default: docker when an engine answers, else host).")
@click.option("--cores", type=click.IntRange(min=1), default=1, show_default=True, help="The demo worker's cores.")
@click.option("--secure-cookies", is_flag=True, help="Mark the session cookie Secure (when served behind HTTPS).")
@click.pass_context
def serve(ctx, data_dir, database_url, catalog_dir, host, port, with_worker, environment, cores, secure_cookies):
    """Serve the request service: the API (/api, OpenAPI at /openapi.json) and the web pages."""
    if ctx.invoked_subcommand is not None:
        ctx.obj = {"data_dir": data_dir, "database_url": database_url, "catalog_dir": catalog_dir}
        return
    import dataclasses

    import uvicorn

    from recast.service.actions import Service
    from recast.service.api import create_app

    config = dataclasses.replace(_config(data_dir, database_url, catalog_dir), secure_cookies=secure_cookies)
    service = Service.open(config)
    app = create_app(service=service)
    shown_host = f"[{host}]" if ":" in host else host
    worker = None
    if with_worker:
        from recast.service import worker as worker_mod

        environment = environment or _default_environment()
        token = _demo_admin(service)
        worker = worker_mod.Worker(service, environment=environment, cores=cores)
        threading.Thread(target=worker.run, name="recast-worker", daemon=True).start()
        err_console.print(f"worker: {worker.name}, environment {environment}", highlight=False)
        click.echo(f"admin token (shown once): {token}", err=True)  # one line, never wrapped
    click.echo(f"recast service on http://{shown_host}:{port}/  (data {config.data}, "
               f"database {'SQLite' if service.db.sqlite else 'PostgreSQL'})", err=True)
    try:
        uvicorn.run(app, host=host, port=port, log_level="info", proxy_headers=False)
    finally:
        if worker is not None:
            worker.stop.set()


def _demo_admin(service) -> str:
    from sqlalchemy import select

    from recast.service import auth
    from recast.service.db import User

    with service.db.session() as session:
        user = session.scalar(select(User).where(User.name == "admin"))
        if user is None:
            user = auth.create_user(session, "admin", "admin")
        _, token = auth.issue_token(session, user, days=7, description="recast serve --with-worker")
        session.commit()
    return token


@serve.group()
def admin():
    """Users, roles and tokens, straight in the database (the first admin is made here)."""


def _admin_service(ctx):
    return _open(**ctx.find_object(dict))


@admin.command("create-user")
@click.argument("name")
@click.option("--role", type=click.Choice(["requester", "maintainer", "admin"]), required=True)
@click.option("--analysis", help="For a maintainer: the analysis they maintain (default: all).")
@click.option("--days", type=click.FloatRange(min=0, min_open=True), default=90, show_default=True,
              help="The first token's lifetime.")
@json_option
@click.pass_context
def create_user(ctx, name, role, analysis, days, as_json):
    """Create a user with one role and print their first token (shown only now)."""
    from recast.service import auth

    service = _admin_service(ctx)
    with service.db.session() as session:
        user = auth.create_user(session, name, role, analysis)
        row, token = auth.issue_token(session, user, days, "first token")
        session.commit()
        _print_token(as_json, user.name, row, token)


def _print_token(as_json, name, row, token):
    from recast.service.db import iso

    if as_json:
        emit_json({"user": name, "token_id": row.id, "expires": iso(row.expires_at), "token": token})
    else:
        err_console.print(f"token {row.id} for {name}, expires {iso(row.expires_at) or 'never'} (shown only now):",
                          highlight=False)
        click.echo(token)


@admin.command("issue-token")
@click.argument("name")
@click.option("--days", type=click.FloatRange(min=0, min_open=True), default=90, show_default=True)
@click.option("--description", default="", help="What the token is for.")
@json_option
@click.pass_context
def issue_token(ctx, name, days, description, as_json):
    """Issue another token for a user (shown only now)."""
    from sqlalchemy import select

    from recast.service import auth
    from recast.service.db import User

    service = _admin_service(ctx)
    with service.db.session() as session:
        user = session.scalar(select(User).where(User.name == name))
        if user is None:
            raise RecastError(f"no user {name!r}")
        row, token = auth.issue_token(session, user, days, description)
        session.commit()
        _print_token(as_json, user.name, row, token)


@admin.command("revoke-token")
@click.argument("token_id")
@click.pass_context
def revoke_token(ctx, token_id):
    """Revoke a token by its id (the 16 hex digits after recast_)."""
    from recast.service import auth
    from recast.service.db import Token

    service = _admin_service(ctx)
    with service.db.session() as session:
        token = session.get(Token, token_id)
        if token is None:
            raise RecastError(f"no token {token_id!r}")
        auth.revoke_token(session, token, None)
        session.commit()
    err_console.print(f"token {token_id} revoked", highlight=False)


@admin.command("users")
@json_option
@click.pass_context
def users(ctx, as_json):
    """The users, their roles and tokens."""
    from sqlalchemy import select

    from recast.cli.common import console, table
    from recast.service.db import Token, User, iso

    service = _admin_service(ctx)
    with service.db.session() as session:
        rows = []
        for user in session.scalars(select(User).order_by(User.name)):
            tokens = [t for t in session.scalars(select(Token).where(Token.user_id == user.id))
                      if t.revoked_at is None]
            rows.append({"name": user.name, "roles": [f"{r.role}" + (f":{r.analysis_id}" if r.analysis_id else "")
                                                      for r in user.roles],
                         "tokens": [{"id": t.id, "expires": iso(t.expires_at)} for t in tokens]})
    if as_json:
        emit_json(rows)
    else:
        console.print(table(None, ["user", "roles", "active tokens"],
                            [[r["name"], r["roles"], [t["id"] for t in r["tokens"]]] for r in rows]))


@click.command()
@_service_options
@click.option("--environment", type=click.Choice(ENVIRONMENTS), default="docker", show_default=True,
              help="How each job runs: in its preserved image, or on this machine's Python.")
@click.option("--cores", type=click.IntRange(min=1), default=1, show_default=True, help="Jobs at once, per run.")
@click.option("--lease-seconds", type=click.FloatRange(min=1), default=60, show_default=True,
              help="How long a claim holds without a heartbeat; a dead worker's request is taken again after it.")
@click.option("--poll-seconds", type=click.FloatRange(min=0.1), default=2, show_default=True,
              help="How often to look for work when there is none.")
@click.option("--once", is_flag=True, help="Run what is queued, then stop.")
@executor_options()
def worker(data_dir, database_url, catalog_dir, environment, cores, lease_seconds, poll_seconds, once, executor):
    """Claim approved requests and run them, one at a time, until stopped (SIGTERM, Ctrl-C)."""
    import signal

    from recast.service import worker as worker_mod

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    service = _open(data_dir, database_url, catalog_dir)
    settings = dataclasses.asdict(executor.settings) if executor.settings is not None else {}
    found = worker_mod.Worker(service, environment=environment, cores=cores, lease_seconds=lease_seconds,
                              poll_seconds=poll_seconds, executor=executor.name, executor_settings=settings)
    err_console.print(f"{found.name} (pid {os.getpid()}): environment {environment}, executor {executor.name}, "
                      f"lease {lease_seconds:g} s, "
                      f"database {'SQLite in ' + str(service.config.data) if service.db.sqlite else 'PostgreSQL'}",
                      highlight=False)

    def _stop(*_):
        found.stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    count = found.run(once=once)
    err_console.print(f"{found.name}: stopped after {count} run(s)", highlight=False)
