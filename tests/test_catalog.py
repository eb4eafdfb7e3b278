"""`recast catalog ls|show|search`: what a physicist browsing the catalog sees."""

from __future__ import annotations

import json

from click.testing import CliRunner

from recast.cli import cli


def invoke(*args):
    result = CliRunner().invoke(cli, [str(a) for a in args])
    return result


def test_ls_lists_the_shipped_example():
    rows = json.loads(invoke("catalog", "ls", "--json").stdout)
    example = next(r for r in rows if r["id"] == "wh1lbb")
    assert example["kind"] == "workflow" and example["examples"] == ["default"]
    assert example["signal_regions"] == ["SRLM", "SRMM", "SRHM"]
    table = invoke("catalog", "ls")
    assert table.exit_code == 0 and "wh1lbb" in table.output


def test_show_gives_workflow_and_request_parameters():
    shown = invoke("catalog", "show", "wh1lbb")
    assert shown.exit_code == 0
    for text in ("select", "gather", "signals", "luminosity_fb", "recast/wh1lbb-stats:1.0.0"):
        assert text in shown.output
    doc = json.loads(invoke("catalog", "show", "wh1lbb", "--json").stdout)
    assert [s["name"] for s in doc["spec"]["workflow"]["stages"]] == ["select", "patch", "cls", "limit", "gather"]
    assert doc["spec"]["templates"]["limit"]["process"]["argv"][:3] == ["recast", "likelihood", "limit"]
    missing = invoke("catalog", "show", "nosuch")
    assert missing.exit_code == 1 and "no analysis 'nosuch'" in str(missing.exception) + missing.output


def test_search_matches_every_word_in_metadata(toy):
    found = json.loads(invoke("catalog", "search", "electroweakino Wh", "--json").stdout)
    assert [r["id"] for r in found] == ["wh1lbb"]
    assert json.loads(invoke("catalog", "search", "electroweakino gluino", "--json").stdout) == []
    assert [r["id"] for r in json.loads(invoke("catalog", "search", "toy", "--catalog", toy.parent, "--json").stdout)] == ["toy"]
