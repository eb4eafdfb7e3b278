"""The ready-made CI configurations for analysis repositories run commands that exist."""

from __future__ import annotations

import shlex

import pytest
import yaml
from click.testing import CliRunner

from recast.cli import cli

from conftest import ROOT

TEMPLATES = sorted((ROOT / "ci-templates").glob("*.yml"))


def recast_lines(document) -> list[str]:
    if isinstance(document, dict):
        return [line for value in document.values() for line in recast_lines(value)]
    if isinstance(document, list):
        return [line for value in document for line in recast_lines(value)]
    if isinstance(document, str):
        return [line.strip() for line in document.splitlines() if line.strip().startswith("recast ")]
    return []


@pytest.mark.parametrize("path", TEMPLATES, ids=lambda p: p.name)
def test_ci_template_commands_exist_and_cover_check_and_test(path):
    lines = recast_lines(yaml.safe_load(path.read_text()))
    assert any(line.startswith("recast catalog check") for line in lines)
    assert any(line.startswith("recast test --all") for line in lines)
    for line in lines:
        result = CliRunner().invoke(cli, [*shlex.split(line)[1:], "--help"])
        assert result.exit_code == 0, f"{path.name}: {line!r}: {result.output}"
