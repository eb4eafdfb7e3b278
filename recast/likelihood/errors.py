"""Errors of the likelihood engine: each names the file, the signal point and what was expected."""

from __future__ import annotations

from recast.errors import RecastError


class LikelihoodError(RecastError):
    """A published likelihood (workspace, patch, patchset or archive) cannot be used as given."""


class WorkspaceError(LikelihoodError):
    """A background-only workspace is unreadable or fails pyhf's workspace schema."""


class PatchError(LikelihoodError):
    """A signal patch is unreadable, fails pyhf's schema, does not apply, or a digest does not match."""


class FitError(LikelihoodError):
    """A maximum-likelihood fit did not converge, or a limit lies outside the POI range."""


class ArchiveError(LikelihoodError):
    """An archive is truncated, malicious (unsafe member paths, links, oversized members) or unreadable."""
