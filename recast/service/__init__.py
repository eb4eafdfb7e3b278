"""The request service: theorists submit reinterpretation requests, maintainers review them,
workers run them with :func:`recast.execution.run`, everyone follows them live.

One module per part, each a thin layer over the library:

- :mod:`recast.service.config`: where the data folder and the database are, and the limits;
- :mod:`recast.service.db`: the tables (SQLAlchemy 2), sessions, and the Alembic migrations applied at start;
- :mod:`recast.service.auth`: users, roles, API tokens (shown once, stored hashed) and browser sessions;
- :mod:`recast.service.lifecycle`: a request's states, the allowed transitions, and the audit table;
- :mod:`recast.service.uploads`: a submitted request streamed to disk, checked with :func:`recast.request.check`,
  its files stored content-addressed;
- :mod:`recast.service.worker`: claims, leases, runs, progress, results;
- :mod:`recast.service.api` and :mod:`recast.service.pages`: the HTTP API and the web pages of one ASGI app;
- :mod:`recast.service.client`: the API from Python, for ``recast remote``.
"""
