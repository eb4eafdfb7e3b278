"""Scan benchmark of the likelihood engine, against the two baselines of issues 3 and 11, in one run.

The first N patches (sorted by name; N=40 as in the issues) of the published
sbottom likelihood (SUSY-2018-31, RegionA), CLs observed and expected at mu=1:

1. ``recast likelihood scan`` (default backend: auto) as one process against
   a shell loop of ``pyhf cls BkgOnly.json --patch P`` processes (issue 11's
   target: at least 50x);
2. ``recast.likelihood.scan`` in process (timed around loading the workspace
   and the scan, in a fresh Python process) against a sequential in-process
   loop of ``pyhf.infer.hypotest`` with the numpy backend (target: 30x);

both measured with a *cold* jax compilation cache (``RECAST_JAX_CACHE``
pointed at a new empty folder: nothing compiled before) and again *warm*
(the same folder, filled by the cold run: what a user's second command
sees). The targets are checked on the cold numbers.

Every CLs (observed and the five expected) of ours must be within a relative
1e-4 of plain pyhf's, or within 1e-4 in significance deep in the tail (as
tests/likelihood_helpers.py's assert_cls_close). Where it is not, the point is
recomputed with plain pyhf on the jax backend: for CLs far below the
exclusion level pyhf's own numpy and jax backends differ by more than 1e-4
(finite-difference against exact gradients), and ours must then agree with
plain pyhf on the same backend. The archive is read from ../shared/hepdata
and extracted into a temporary folder. Usage:

    python benchmarks/bench_likelihood_scan.py [--points 40] [--workers 2]

Ours runs in two processes by default (``--workers 2``: the calling process and
one forked worker, both cores of the benchmark machine), printed with each
time; plain pyhf's baselines use both cores too (numpy's OpenBLAS threads).
``--workers 0`` leaves the choice to recast (one process on a loaded machine).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HEPDATA = ROOT.parent / "shared" / "hepdata"
# this checkout's recast, whatever else is installed (the commands below run from it too)
sys.path.insert(0, str(ROOT))


def extract_archive(name: str, into: Path) -> Path:
    """Extract ../shared/hepdata/<name> into ``into`` (never into the repository)."""
    with tarfile.open(HEPDATA / name) as tar:
        tar.extractall(into, filter="data")
    return into


def relative(a: list[float], b: list[float]) -> float:
    """The largest difference of two CLs lists: relative, or in significance where that is smaller (the deep tail)."""
    from scipy.stats import norm

    return max(min(abs(x - y) / abs(y) if y else abs(x), abs(norm.isf(x) - norm.isf(y))) for x, y in zip(a, b))


def worst_relative(ours: dict[str, list[float]], reference: dict[str, list[float]]) -> tuple[float, str]:
    return max(((relative(ours[name], values), name) for name, values in reference.items()), default=(0.0, ""))


def pyhf_jax(workspace: Path, patch: Path) -> list[float]:
    import pyhf

    pyhf.set_backend("jax")
    try:
        ws = pyhf.Workspace(json.loads(workspace.read_text()))
        model = ws.model(patches=[json.loads(patch.read_text())])
        obs, exp = pyhf.infer.hypotest(1.0, ws.data(model), model, test_stat="qtilde", return_expected_set=True)
    finally:
        pyhf.set_backend("numpy")
    return [float(obs), *[float(e) for e in exp]]


def shell_loop(workspace: Path, patches: list[Path]) -> tuple[float, dict[str, list[float]]]:
    pyhf = shutil.which("pyhf")
    assert pyhf, "the pyhf command is not on PATH"
    script = "\n".join(f'"{pyhf}" cls "{workspace}" --patch "{p}"' for p in patches)
    started = time.perf_counter()
    output = subprocess.run(["bash", "-c", script], check=True, capture_output=True, text=True).stdout
    seconds = time.perf_counter() - started
    decoder, values, position = json.JSONDecoder(), {}, 0
    for patch in patches:
        document, position = decoder.raw_decode(output, output.index("{", position))
        values[patch.name[6:-5]] = [document["CLs_obs"], *document["CLs_exp"]]
    return seconds, values


def in_process_loop(workspace: Path, patches: list[Path]) -> tuple[float, dict[str, list[float]]]:
    import pyhf

    pyhf.set_backend("numpy")
    started = time.perf_counter()
    spec = json.loads(workspace.read_text())
    ws = pyhf.Workspace(spec)
    values = {}
    for patch in patches:
        model = ws.model(patches=[json.loads(patch.read_text())])
        obs, exp = pyhf.infer.hypotest(1.0, ws.data(model), model, test_stat="qtilde", return_expected_set=True)
        values[patch.name[6:-5]] = [float(obs), *[float(e) for e in exp]]
    return time.perf_counter() - started, values


def ours_process(workspace: Path, patches: list[Path], workers: int, out: Path, cache: Path, label: str) -> tuple[float, dict[str, list[float]]]:
    argv = [sys.executable, "-c", "from recast.cli import main; main()", "likelihood", "scan", str(workspace),
            "--no-progress", "--output", str(out)] + (["--workers", str(workers)] if workers else [])
    for patch in patches:
        argv += ["--patch", str(patch)]
    started = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, cwd=ROOT, env={**os.environ, "RECAST_JAX_CACHE": str(cache)})
    seconds, result = time.perf_counter() - started, json.loads(out.read_text())
    print(f"  recast likelihood scan, one command ({result['settings']['backend']}, {result['workers']} process(es), "
          f"{label} compilation cache): {seconds:8.1f} s", flush=True)
    return seconds, _values(result)


IN_PROCESS = """
import json, sys, time
sys.path.insert(0, sys.argv[1])
import pyhf  # imported before the clock starts, as for the pyhf loop (jax is imported on the clock)
from recast.likelihood import load_workspace, scan
workers = int(sys.argv[4]) or None
started = time.perf_counter()
result = scan(load_workspace(sys.argv[2], json.loads(sys.argv[3])), workers=workers, progress=False)
result["timed"] = time.perf_counter() - started
print(json.dumps(result))
"""


def ours_in_process(workspace: Path, patches: list[Path], workers: int, cache: Path, label: str) -> tuple[float, dict[str, list[float]]]:
    """``recast.likelihood.scan`` (default settings) in a fresh Python process, timed inside it around loading and the scan."""
    argv = [sys.executable, "-c", IN_PROCESS, str(ROOT), str(workspace), json.dumps([str(p) for p in patches]), str(workers or 0)]
    output = subprocess.run(argv, check=True, capture_output=True, text=True, cwd=ROOT,
                            env={**os.environ, "RECAST_JAX_CACHE": str(cache)}).stdout
    result = json.loads(output.splitlines()[-1])
    seconds = result["timed"]
    print(f"  recast.likelihood.scan in process ({result['settings']['backend']}, {result['workers']} process(es), "
          f"{label} compilation cache): {seconds:8.1f} s", flush=True)
    return seconds, _values(result)


def _values(result: dict) -> dict[str, list[float]]:
    failed = [p["error"] for p in result["points"] if "error" in p]
    assert not failed, failed
    return {p["point"]: [p["cls_obs"], *p["cls_exp"]] for p in result["points"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--points", type=int, default=40)
    parser.add_argument("--workers", type=int, default=2,
                        help="processes of our scan (default 2, both cores; 0: recast's choice, see recast.likelihood.scan)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-scan-") as tmp:
        tmp = Path(tmp)
        region = extract_archive("SUSY-2018-31_likelihoods.tar.gz", tmp) / "RegionA"
        workspace = region / "BkgOnly.json"
        patches = sorted(region.glob("patch.*.json"))[: args.points]
        print(f"sbottom RegionA, first {len(patches)} patches by name, CLs obs + expected at mu=1", flush=True)

        cache = tmp / "jax-cache"  # empty: the first run of each kind compiles everything
        ours_cli, ours_cli_values = ours_process(workspace, patches, args.workers, tmp / "scan.json", cache / "cli", "cold")
        ours_cli_warm, _ = ours_process(workspace, patches, args.workers, tmp / "scan.json", cache / "cli", "warm")
        shell, shell_values = shell_loop(workspace, patches)
        print(f"  shell loop of `pyhf cls` processes: {shell:8.1f} s", flush=True)
        ours_api, ours_api_values = ours_in_process(workspace, patches, args.workers, cache / "api", "cold")
        ours_api_warm, _ = ours_in_process(workspace, patches, args.workers, cache / "api", "warm")
        loop, loop_values = in_process_loop(workspace, patches)
        print(f"  in-process pyhf.infer.hypotest loop (numpy): {loop:8.1f} s", flush=True)

        print(f"ratio vs shell loop:      {shell / ours_cli:6.1f}x cold, {shell / ours_cli_warm:6.1f}x warm  (target >= 50x cold)")
        print(f"ratio vs in-process loop: {loop / ours_api:6.1f}x cold, {loop / ours_api_warm:6.1f}x warm  (target >= 30x cold)")
        speed = shell / ours_cli >= 50 and loop / ours_api >= 30
        ok = True
        for label, values in (("recast scan process", ours_cli_values), ("recast scan in process", ours_api_values)):
            for reference_label, reference in (("pyhf cls", shell_values), ("pyhf loop", loop_values)):
                worst, where = worst_relative(values, reference)
                print(f"largest CLs difference (relative, or in significance), {label} vs {reference_label}: {worst:.2e} ({where}) (target <= 1e-4)")
        by_name = {p.name[6:-5]: p for p in patches}
        for name in sorted(by_name):
            ours_values = [ours_cli_values[name], ours_api_values[name]]
            if max(relative(v, r) for v in ours_values for r in (shell_values[name], loop_values[name])) <= 1e-4:
                continue
            jax_values = pyhf_jax(workspace, by_name[name])
            same_backend = max(relative(v, jax_values) for v in ours_values)
            print(f"  {name}: smallest CLs {min(loop_values[name]):.1e}; plain pyhf numpy vs plain pyhf jax differ by "
                  f"{relative(jax_values, loop_values[name]):.2e}; ours (jax) vs plain pyhf jax: {same_backend:.2e} (target <= 1e-4)")
            ok &= same_backend <= 1e-4
    print(f"CLs agreement: {'met' if ok else 'NOT met'}; speed targets: {'met' if speed else 'NOT met'}")
    print("PASS" if ok and speed else "FAIL")
    return 0 if ok and speed else 1


if __name__ == "__main__":
    sys.exit(main())
