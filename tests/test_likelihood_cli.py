"""``recast likelihood cls|limit|scan`` as the example analysis's inference step and users run them."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from likelihood_helpers import REFERENCE_CLS, ROOT, assert_close, onelbb_dir, patch_path, sbottom_dir  # noqa: F401


# what the example analysis's image lacks: importing any of these fails in the child
NO_JAX = "import sys\nfor name in ('jax', 'snakemake', 'docker'): sys.modules[name] = None\n"


def recast(*args, check=True, preamble=""):
    code = preamble + "from recast.cli import main\nmain()\n"
    # from the checkout's folder, so that `python -c` imports this checkout's recast
    result = subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True, cwd=ROOT)
    if check:
        assert result.returncode == 0, result.stderr
    return result


def test_cls_json_and_output_file(sbottom_dir, tmp_path):
    region, point, cls_obs, cls_exp = REFERENCE_CLS[0]
    output = tmp_path / "cls.json"
    result = recast("likelihood", "cls", sbottom_dir / region / "BkgOnly.json", "--patch", patch_path(sbottom_dir, region, point),
                    "--json", "--output", output)
    printed = json.loads(result.stdout)
    assert printed == json.loads(output.read_text())
    assert_close(printed["cls_obs"], cls_obs, 1e-5, "cls_obs")
    assert_close(printed["cls_exp"], cls_exp, 2e-5, "cls_exp")
    assert printed["mu"] == 1.0 and printed["point"] == point
    # backend auto: numpy (exact gradients from the compact likelihood), also where jax is installed
    assert printed["settings"] == {"backend": "numpy", "optimizer": "scipy", "test_stat": "qtilde", "method": "fast",
                                   "interpolation": {"normsys": "code4", "histosys": "code4p"}, "calculator": "asymptotics",
                                   "pyhf_version": "0.7.6"}


def test_limit_json_shape(sbottom_dir, tmp_path):
    region, point, _, _ = REFERENCE_CLS[1]
    output = tmp_path / "limit.json"
    recast("likelihood", "limit", sbottom_dir / region / "BkgOnly.json", "--patch", patch_path(sbottom_dir, region, point),
           "--json", "--output", output, "--backend", "jax")
    limit = json.loads(output.read_text())
    assert 0 < limit["mu_up_obs"] < 5 and len(limit["mu_up_exp"]) == 5
    assert limit["mu_up_exp"] == sorted(limit["mu_up_exp"])
    assert limit["cl"] == 0.95 and limit["grid"]["points"] == 41 and limit["settings"]["backend"] == "jax"


def test_patchset_point_and_table_output(onelbb_dir):
    result = recast("likelihood", "cls", onelbb_dir / "BkgOnly.json", "--patchset", onelbb_dir / "patchset.json",
                    "--point", "C1N2_Wh_hbb_1000_0", "--backend", "jax", "--mu", "2")
    assert "C1N2_Wh_hbb" in result.stdout and "CLs at mu = 2" in result.stdout


def test_scan_writes_csv_plot_and_json(sbottom_dir, tmp_path):
    points = ["sbottom_1000_205_60", "sbottom_1200_550_60", "sbottom_1300_850_60", "sbottom_1500_550_60"]
    args = ["likelihood", "scan", sbottom_dir / "RegionA" / "BkgOnly.json", "--backend", "jax", "--no-progress", "--json",
            "--csv", tmp_path / "scan.csv", "--plot", tmp_path / "scan.png", "--output", tmp_path / "scan.json", "--workers", "1",
            "--labels", "msb,mn2,mn1", "--x", "msb", "--y", "mn2"]
    for point in points:
        args += ["--patch", patch_path(sbottom_dir, "RegionA", point)]
    result = recast(*args)
    scan = json.loads(result.stdout)
    assert [p["point"] for p in scan["points"]] == points and scan["failed"] == 0
    assert (tmp_path / "scan.csv").read_text().startswith("point,msb,mn2,mn1,mu,cls_obs")
    assert scan["points"][0]["values"] == {"msb": 1000.0, "mn2": 205.0, "mn1": 60.0}
    assert (tmp_path / "scan.png").stat().st_size > 10_000


@pytest.mark.parametrize("args,message", [
    (["cls", "{ws}", "--patch", "{dir}/nope.json"], "nope.json: no such file; expected a JSON Patch"),
    (["cls", "{ws}"], "no signal given"),
    (["cls", "{ws}", "--patch", "{patch}", "--backend", "torch"], "Invalid value for '--backend'"),
    (["limit", "{ws}", "--patch", "{patch}", "--grid", "0:5"], "expected START:STOP:POINTS"),
    (["cls", "no-such-entry", "--catalog", "{dir}"], "no analysis 'no-such-entry' in catalog"),
])
def test_errors_exit_nonzero_with_a_message(sbottom_dir, tmp_path, args, message):
    values = {"ws": sbottom_dir / "RegionA" / "BkgOnly.json", "dir": tmp_path,
              "patch": patch_path(sbottom_dir, "RegionA", "sbottom_1300_205_60")}
    result = recast("likelihood", *[a.format(**values) for a in args], check=False)
    assert result.returncode != 0
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_cli_import_is_light():
    """`recast --help` must stay fast: no pyhf, jax, matplotlib or scipy at import."""
    code = (
        "import sys, recast.cli, recast.cli.likelihood, recast.cli.imports; "
        "print(','.join(m for m in ('pyhf', 'jax', 'matplotlib', 'scipy') if m in sys.modules))"
    )
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT).stdout.strip() == ""


def test_inference_step_commands_run_without_jax(sbottom_dir, tmp_path):
    """The example analysis runs cls and limit in an image with pyhf, numpy, scipy, click, rich... but no jax."""
    workspace = sbottom_dir / "RegionA" / "BkgOnly.json"
    patch = patch_path(sbottom_dir, "RegionA", "sbottom_1400_950_60")
    recast("likelihood", "cls", workspace, "--patch", patch, "--json", "--output", tmp_path / "cls.json", preamble=NO_JAX)
    recast("likelihood", "limit", workspace, "--patch", patch, "--json", "--output", tmp_path / "limit.json", preamble=NO_JAX)
    assert_close(json.loads((tmp_path / "cls.json").read_text())["cls_obs"], REFERENCE_CLS[1][2], 1e-5, "cls_obs")
    assert len(json.loads((tmp_path / "limit.json").read_text())["mu_up_exp"]) == 5
    refused = recast("likelihood", "cls", workspace, "--patch", patch, "--backend", "jax", preamble=NO_JAX, check=False)
    assert refused.returncode == 1 and "backend 'jax' needs jax" in refused.stderr


def test_cls_of_a_published_archive_directly():
    from likelihood_helpers import SBOTTOM_ARCHIVE

    region, point, cls_obs, _ = REFERENCE_CLS[3]
    result = recast("likelihood", "cls", SBOTTOM_ARCHIVE, "--region", region, "--point", point, "--json")
    printed = json.loads(result.stdout)
    assert_close(printed["cls_obs"], cls_obs, 1e-5, "cls_obs from the archive")
    refused = recast("likelihood", "cls", SBOTTOM_ARCHIVE, "--point", point, check=False)
    assert refused.returncode == 1 and "choose one with --region" in refused.stderr and "Traceback" not in refused.stderr


def test_labels_that_do_not_match_the_names_are_an_error(sbottom_dir):
    result = recast("likelihood", "cls", sbottom_dir / "RegionA" / "BkgOnly.json", "--patch",
                    patch_path(sbottom_dir, "RegionA", "sbottom_1300_205_60"), "--labels", "msb,mn2", check=False)
    assert result.returncode == 1 and "2 parameter names (msb, mn2) but the point name 'sbottom_1300_205_60' has 3 numbers" in result.stderr


def test_scan_of_few_points_warns_draws_no_contour_and_prints_progress_lines(sbottom_dir, tmp_path):
    args = ["likelihood", "scan", sbottom_dir / "RegionA" / "BkgOnly.json", "--workers", "1", "--labels", "msb,mn2,mn1",
            "--plot", tmp_path / "few.png", "--output", tmp_path / "scan.json"]
    for point in ["sbottom_1000_205_60", "sbottom_1200_550_60", "sbottom_1300_850_60"]:
        args += ["--patch", patch_path(sbottom_dir, "RegionA", point)]
    result = recast(*args)
    # stderr is a pipe here, not a terminal: plain progress lines
    assert "scan: 3 points" in result.stderr and "scan: 3/3 points (0 failed, 0 doubtful)" in result.stderr
    assert "3 points; a contour needs at least 10 on a grid" in result.stderr and "points drawn without contours" in result.stderr
    assert (tmp_path / "few.png").stat().st_size > 5_000
