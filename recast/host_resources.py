"""Host resources and credentials: what a template may need from the machine, and where its operator provides it.

A template declares needs by name, never by host path::

    environment:
      host_resources: [cvmfs]           # read-only folders of the host (CVMFS, a conditions database ...)
      credentials: [grid_proxy]         # files supplied at run time (a grid proxy, a Kerberos keytab ...)

The operator maps the names on each machine in the YAML file named by
``RECAST_RESOURCES``::

    host_resources:
      cvmfs: {path: /cvmfs}                      # mounted read-only at the same path (or at `mount`)
    credentials:
      grid_proxy: {file: /home/recast/x509up, env: X509_USER_PROXY}
      kerberos: {file: /etc/recast/krb5.keytab, env: KRB5_KTNAME}

A host resource is bind-mounted read-only. A credential is copied, for the
job's run only, into a private folder readable by the job's user alone,
mounted read-only, and named to the job by its environment variable; its
host path and its content never appear in a plan, a record, provenance or
results (only its name does). A name the machine does not provide fails
``recast validate`` and the run, saying what to configure.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from recast.errors import RecastError

ENV_VARIABLE = "RECAST_RESOURCES"
CREDENTIALS_MOUNT = "/run/recast-credentials"  # where a job finds its credentials under Docker
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_ENV = re.compile(r"^[A-Z_][A-Z0-9_]*$")


@dataclass(frozen=True)
class HostResource:
    name: str
    path: str  # the host folder
    mount: str  # where the job sees it


@dataclass(frozen=True)
class Credential:
    name: str
    file: str  # the host file (never recorded)
    env: str  # the variable that names it to the job


def configured() -> tuple[dict[str, HostResource], dict[str, Credential]]:
    """What this machine provides (nothing when RECAST_RESOURCES is not set)."""
    from recast import spec

    where = os.environ.get(ENV_VARIABLE)
    if not where:
        return {}, {}
    try:
        document = spec.load_document(Path(where), max_bytes=1 << 20) or {}
    except (OSError, ValueError, RecastError) as exc:
        raise RecastError(f"{ENV_VARIABLE}={where}: cannot be read: {exc}") from None
    if not isinstance(document, dict) or set(document) - {"host_resources", "credentials"}:
        raise RecastError(f"{where}: expected host_resources and credentials, as in recast/host_resources.py")
    resources, credentials = {}, {}
    for name, entry in (document.get("host_resources") or {}).items():
        path = entry.get("path") if isinstance(entry, dict) else None
        mount = entry.get("mount", path) if isinstance(entry, dict) else None
        if not _NAME.match(str(name)) or not isinstance(path, str) or not os.path.isabs(path) \
                or not isinstance(mount, str) or not os.path.isabs(mount) or ".." in Path(mount).parts:
            raise RecastError(f"{where}: host_resources.{name}: expected {{path: ABSOLUTE_HOST_FOLDER, "
                              "mount: ABSOLUTE_PATH_IN_THE_JOB (default: the same)}}")
        resources[name] = HostResource(name, path, mount)
    for name, entry in (document.get("credentials") or {}).items():
        file = entry.get("file") if isinstance(entry, dict) else None
        env = entry.get("env") if isinstance(entry, dict) else None
        if not _NAME.match(str(name)) or not isinstance(file, str) or not os.path.isabs(file) \
                or not isinstance(env, str) or not _ENV.match(env):
            raise RecastError(f"{where}: credentials.{name}: expected {{file: ABSOLUTE_HOST_FILE, "
                              "env: VARIABLE_THAT_NAMES_IT}}")
        credentials[name] = Credential(name, file, env)
    return resources, credentials


def missing(host_resources: tuple[str, ...] | list[str], credentials: tuple[str, ...] | list[str],
            provision: tuple[dict, dict] | None = None) -> list[tuple[str, str]]:
    """(field, problem) for each need this machine (or ``provision``, from :func:`configured`) does not provide."""
    if not host_resources and not credentials:
        return []  # most templates: the operator's file is not read for them
    resources, provided = provision or configured()
    wanted = (("host_resources", host_resources, resources, "host resource", "maps it to a host folder",
               "{path: /HOST/FOLDER}"),
              ("credentials", credentials, provided, "credential", "names its file",
               "{file: /HOST/FILE, env: VARIABLE}"))
    return [(f"environment.{field}[{i}]",
             f"{what} {name!r} is not provided on this machine: an operator {how} in the YAML file named by "
             f"{ENV_VARIABLE} ({field}: {{{name}: {example}}})")
            for field, names, have, what, how, example in wanted for i, name in enumerate(names) if name not in have]


def resolve(step: str, host_resources: list[str], credentials: list[str]) -> tuple[list[HostResource], list[Credential]]:
    """The machine's provision for a job's needs; RecastError naming what is missing."""
    resources, provided = configured()
    problems = missing(host_resources, credentials, (resources, provided))
    if problems:
        raise RecastError(f"step {step}: " + "; ".join(message for _, message in problems))
    return [resources[n] for n in host_resources], [provided[n] for n in credentials]
