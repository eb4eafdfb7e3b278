"""The kubernetes executor: each job a pod, through ``snakemake-executor-plugin-kubernetes``.

``recast run ID --executor kubernetes --kubernetes-image IMAGE@sha256:... [--kubernetes-namespace NS]
[--kubernetes-volume PVC:/PATH]``. The plugin runs each job's command (``python -m recast.job``)
in a pod of ``--kubernetes-image``, an image that holds recast and Snakemake
(pinned by digest like the analysis's images). The run folder must be on a
persistent volume mounted at the same path in every pod, and the jobs use
``--environment host`` inside that image, or a Docker engine the pods reach:
a pod cannot start containers of its own.

Not tested against a cluster (none is reachable where recast is built): what
is tested is the settings recast gives the plugin, and the resources each job
asks for (``tests/test_kubernetes.py``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from recast.errors import ExecutionError

_DIGEST_REF = re.compile(r"\S+@sha256:[0-9a-f]{64}")


@dataclass(frozen=True)
class Settings:
    image: str = field(metadata={
        "help": "Image the pods run (it holds recast and Snakemake), by digest: REPOSITORY@sha256:DIGEST."})
    namespace: str = field(default="default", metadata={"help": "Kubernetes namespace of the jobs' pods."})
    volume: str | None = field(default=None, metadata={
        "help": "PVC:/PATH, a persistent volume claim mounted at /PATH in every pod (the run folder's file system)."})

    def __post_init__(self):
        if not _DIGEST_REF.fullmatch(self.image):
            raise ExecutionError(f"--kubernetes-image {self.image[:120]!r}: give REPOSITORY@sha256:DIGEST "
                                 "(a tag can move; `recast images push` prints digests)")
        if self.volume is not None and not re.fullmatch(r"[a-z0-9][a-z0-9.-]*:/\S*", self.volume):
            raise ExecutionError(f"--kubernetes-volume {self.volume!r}: expected PVC:/PATH")


def plugin_settings(settings: Settings, run_dir: Path):
    from snakemake_executor_plugin_kubernetes import ExecutorSettings, PersistentVolume

    volumes = []
    if settings.volume:
        claim, _, path = settings.volume.partition(":")
        volumes.append(PersistentVolume(name=claim, path=Path(path)))
    return ExecutorSettings(namespace=settings.namespace, persistent_volumes=volumes)


def default_resources(settings: Settings) -> dict[str, Any]:
    return {}


def container_image(settings: Settings) -> str:
    """What Snakemake's remote execution settings name as the jobs' image."""
    return settings.image


def check(settings: Settings) -> None:
    try:
        import snakemake_executor_plugin_kubernetes  # noqa: F401
    except ImportError:
        raise ExecutionError("the kubernetes executor needs snakemake-executor-plugin-kubernetes: "
                             "pip install 'recast[kubernetes]'") from None


def explain(messages: list[str]) -> list[str]:
    return []
