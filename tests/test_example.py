"""The shipped example analysis, end to end: the README's main job.

Its reference results were made under --environment docker; reproducing them
here on the host shows the two environments agree. `.ci/run` re-runs the
same example under Docker with `recast test --all`.
"""

from __future__ import annotations

import json

from click.testing import CliRunner

from recast.cli import cli



def test_example_on_host_reproduces_the_docker_reference_and_reruns_for_free(tmp_path):
    runner = CliRunner()
    result = runner.invoke(cli, ["test", "wh1lbb", "--environment", "host", "--cores", "2",
                                 "--workdir", str(tmp_path), "--junit", str(tmp_path / "junit.xml")])
    assert result.exit_code == 0, result.output
    run_dir = tmp_path / "wh1lbb" / "default"
    summary = json.loads((run_dir / "steps" / "gather" / "summary.json").read_text())
    excluded = {p["m_C1N2"]: p["excluded_obs"] for p in summary["points"]}
    assert excluded == {300: True, 400: True, 500: True, 600: True, 750: False}
    assert (run_dir / "steps" / "gather" / "limits.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    provenance = json.loads((run_dir / "provenance.json").read_text())
    assert len(provenance["jobs"]) == 21 and provenance["environment"] == "host"

    again = runner.invoke(cli, ["run", "wh1lbb", "--example", "default", "--environment", "host",
                                "--workdir", str(run_dir), "--json"])
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["jobs_run"] == []


def test_example_steps_on_their_fixtures(tmp_path):
    for step in ("select", "patch"):
        result = CliRunner().invoke(cli, ["test", "wh1lbb", "--step", step, "--environment", "host",
                                          "--workdir", str(tmp_path)])
        assert result.exit_code == 0, result.output


def test_results_table_shows_bands_only_for_expected_bands(tmp_path):
    from recast.cli.common import is_band

    assert is_band("cls_exp", [0.01, 0.05, 0.16, 0.41, 0.74])
    assert not is_band("cls_obs", [0.017, 0.003, 0.006, 0.033, 0.19]), "five points are not a band"
    assert not is_band("mu_up_exp", [1.0, 2.0])
