"""The request service under test: a data folder, a database (SQLite, and PostgreSQL when
RECAST_TEST_POSTGRES_URL is set), the toy catalog, and one user of every kind."""

from __future__ import annotations

import os
import secrets
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import FIXTURES

POSTGRES_ENV = "RECAST_TEST_POSTGRES_URL"

# The toy's square step naps when its label says so: long enough to be killed mid-run.
NAP = '''
if a.label.startswith("nap"):
    time.sleep(float(a.label[3:]))
'''


def postgres_url_or_skip() -> str:
    url = os.environ.get(POSTGRES_ENV)
    if not url:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"{POSTGRES_ENV} is not set: CI must run the service's database tests on PostgreSQL "
                        "(export RECAST_TEST_POSTGRES_URL=$(bash scripts/postgres.sh))")
        pytest.skip(f"{POSTGRES_ENV} is not set (bash scripts/postgres.sh starts one and prints it)")
    return url


@pytest.fixture
def postgres_database():
    """A fresh, empty PostgreSQL database for one test; dropped afterwards."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    url = make_url(postgres_url_or_skip())
    name = f"recast_test_{secrets.token_hex(6)}"
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield url.set(database=name).render_as_string(hide_password=False)
    finally:
        drop_database(admin, name)
        admin.dispose()


def drop_database(admin, name: str, attempts: int = 40) -> None:
    """DROP DATABASE ... WITH (FORCE), again for a while if a backend we may not end is on it.

    FORCE ends our own connections, but not a superuser's: an autovacuum worker
    that happens to be on the new database refuses it (InsufficientPrivilege).
    It leaves within moments.
    """
    import time

    from sqlalchemy import text
    from sqlalchemy.exc import DBAPIError

    for attempt in range(attempts):
        try:
            with admin.connect() as connection:
                connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            return
        except DBAPIError:
            if attempt == attempts - 1:
                raise
            time.sleep(0.25)


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request) -> str | None:
    """None: the embedded default (SQLite in the data folder); else a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return None
    return request.getfixturevalue("postgres_database")


@pytest.fixture
def catalog(tmp_path) -> Path:
    """A catalog holding a copy of the toy analysis, whose square step can nap."""
    root = tmp_path / "catalog"
    shutil.copytree(FIXTURES / "catalog" / "toy", root / "toy")
    code = root / "toy" / "code" / "square.py"
    text = code.read_text()
    code.write_text(text.replace("with open(a.events) as f:", NAP.strip() + "\nwith open(a.events) as f:", 1))
    return root


def make_service(tmp_path: Path, catalog: Path, database_url: str | None, **limits):
    from recast.service.actions import Service
    from recast.service.config import Limits, ServiceConfig

    config = ServiceConfig(data=tmp_path / "data", database_url=database_url, catalog=catalog,
                           limits=Limits(**limits) if limits else Limits())
    return Service.open(config)


@pytest.fixture
def service(tmp_path, catalog, database_url):
    found = make_service(tmp_path, catalog, database_url)
    yield found
    found.db.dispose()


@dataclass
class People:
    tokens: dict[str, str]
    ids: dict[str, int]

    def headers(self, who: str | None) -> dict:
        return {"Authorization": f"Bearer {self.tokens[who]}"} if who else {}


# who -> (role, analysis)
PEOPLE = {
    "alice": ("requester", None),  # the requester of the requests in these tests
    "bob": ("requester", None),  # another requester
    "maria": ("maintainer", "toy"),  # maintainer of this analysis
    "mike": ("maintainer", "other"),  # maintainer of another analysis
    "root": ("admin", None),
}


@pytest.fixture
def people(service) -> People:
    from recast.service import auth

    tokens, ids = {}, {}
    with service.db.session() as session:
        for name, (role, analysis) in PEOPLE.items():
            user = auth.create_user(session, name, role, analysis)
            _, tokens[name] = auth.issue_token(session, user)
            ids[name] = user.id
        session.commit()
    return People(tokens, ids)


@pytest.fixture
def client(service):
    import warnings

    from recast.service.api import create_app

    with warnings.catch_warnings():  # Starlette 1.x would rather test with httpx2; httpx still works
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient

    with TestClient(create_app(service=service), base_url="http://testserver") as found:
        yield found


def toy_files(catalog: Path) -> dict[str, bytes]:
    data = catalog / "toy" / "requests" / "data"
    return {"data/a.txt": (data / "a.txt").read_bytes(), "data/b.txt": (data / "b.txt").read_bytes()}


def toy_document(**points) -> str:
    import yaml

    return yaml.safe_dump({"schema": "recast/request/1.0.0", "analysis": "toy", "parameters": {"points": [
        {"x": 1, "label": "one", "events": "data/a.txt"},
        {"x": 2, "label": points.get("label", "two"), "events": "data/b.txt"},
        {"x": 3.5, "label": "three", "events": "data/a.txt"}]}})


def submit(client, people: People, who: str, catalog: Path, document: str | None = None,
           files: dict[str, bytes] | None = None, analysis: str = "toy", title: str = "test"):
    parts = [("request", ("request.yaml", document if document is not None else toy_document(), "text/yaml"))]
    for name, data in (files if files is not None else toy_files(catalog)).items():
        parts.append(("file", (name, data, "application/octet-stream")))
    return client.post(f"/api/analyses/{analysis}/requests", files=parts, data={"title": title},
                       headers=people.headers(who))


def stored_files(service) -> list[Path]:
    return sorted(p for p in service.config.files_dir.rglob("*") if p.is_file())


def leftover_uploads(service) -> list[Path]:
    return sorted(service.config.uploads_dir.iterdir())


def wait_for(predicate, seconds: float, every: float = 0.1):
    """Poll ``predicate`` until it gives something true, for at most ``seconds``; its last value."""
    ends = time.monotonic() + seconds
    while True:
        value = predicate()
        if value or time.monotonic() > ends:
            return value
        time.sleep(every)
