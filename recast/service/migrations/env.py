"""Alembic's entry point: migrations run on the connection recast.service.db hands over."""

from __future__ import annotations

from alembic import context

from recast.service.db import Base, make_engine

config = context.config
target_metadata = Base.metadata


def run() -> None:
    connection = config.attributes.get("connection")
    if connection is None:  # the alembic command line: alembic -x url=... upgrade head
        url = context.get_x_argument(as_dictionary=True)["url"]
        with make_engine(url).begin() as connection:
            _migrate(connection)
    else:
        _migrate(connection)


def _migrate(connection) -> None:
    context.configure(connection=connection, target_metadata=target_metadata,
                      render_as_batch=connection.dialect.name == "sqlite")
    with context.begin_transaction():
        context.run_migrations()


run()
