"""Errors meant for people: each says where (file, field) and what was expected."""

from __future__ import annotations


class RecastError(Exception):
    """Base of every error recast reports to a user instead of a traceback."""


class SpecError(RecastError):
    """A document (spec, template, request, result) is malformed or inconsistent.

    ``problems`` is a list of ``(file, field_path, message)``; ``str()`` lists
    them one per line, so a user sees every problem at once.
    """

    def __init__(self, problems: list[tuple[str, str, str]]):
        self.problems = list(problems)
        super().__init__("\n".join(f"{f}: {p or '(top level)'}: {m}" for f, p, m in self.problems))


class RequestError(SpecError):
    """A reinterpretation request is invalid; nothing was run or changed."""


class ExecutionError(RecastError):
    """A job of a run failed; the message names the step and ends with its log."""


class Interrupted(RecastError):
    """A run was stopped by SIGINT or SIGTERM; its finished jobs are kept for the next run."""

    def __init__(self, signum: int, kept: int):
        import signal

        self.signum = signum
        self.exit_code = 128 + signum
        name = signal.Signals(signum).name
        super().__init__(f"interrupted ({name}): {kept} finished job{'s' if kept != 1 else ''} kept; "
                         "run the same command to resume")
