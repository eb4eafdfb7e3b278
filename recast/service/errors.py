"""The service's refusals, each with the HTTP status it is answered with."""

from __future__ import annotations

from recast.errors import RecastError


class ServiceError(RecastError):
    status = 400


class Unauthenticated(ServiceError):
    """No valid token or session (HTTP 401)."""

    status = 401


class Forbidden(ServiceError):
    """Signed in, allowed to see this, not allowed to do that (HTTP 403)."""

    status = 403


class NotFound(ServiceError):
    """No such thing, or not one this user may see (HTTP 404: the two are not told apart)."""

    status = 404


class Conflict(ServiceError):
    """The request is not in a state that allows this (HTTP 409)."""

    status = 409
