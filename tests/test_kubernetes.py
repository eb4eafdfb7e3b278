"""The kubernetes executor's settings (no cluster is reachable here: what recast gives the plugin is tested)."""

from __future__ import annotations

from pathlib import Path

import pytest

from recast.errors import ExecutionError, RecastError
from recast.executors import EXECUTORS, configure

IMAGE = "127.0.0.1:5001/recast/runner@sha256:" + "ab" * 32


def test_kubernetes_settings_reach_the_plugin():
    from snakemake_executor_plugin_kubernetes import ExecutorSettings

    assert not EXECUTORS["kubernetes"].shares_machine
    chosen = configure("kubernetes", {"image": IMAGE, "namespace": "physics", "volume": "runs:/data/runs"})
    chosen.check()
    plugin = chosen.plugin_settings(Path("/data/runs/x"))
    assert isinstance(plugin, ExecutorSettings) and plugin.namespace == "physics"
    assert [(v.name, str(v.path)) for v in plugin.persistent_volumes] == [("runs", "/data/runs")]
    assert chosen.remote_execution_settings().container_image == IMAGE
    assert chosen.plugin == "kubernetes" and chosen.default_resources() == {}


def test_kubernetes_image_must_be_pinned_by_digest():
    with pytest.raises(RecastError, match="needs --kubernetes-image"):
        configure("kubernetes", {})
    with pytest.raises(ExecutionError, match="REPOSITORY@sha256:DIGEST"):
        configure("kubernetes", {"image": "recast/runner:latest"})
    with pytest.raises(ExecutionError, match="PVC:/PATH"):
        configure("kubernetes", {"image": IMAGE, "volume": "no-path"})
