"""Upper-limit benchmark of the likelihood engine, against the baseline of issue 3, in one run.

The 1Lbb likelihood (SUSY-2019-08), signal point C1N2_Wh_hbb_900_250: 95% CL
upper limit on mu, observed and expected band.

- ours: ``recast likelihood limit BkgOnly.json --patchset patchset.json
  --point C1N2_Wh_hbb_900_250 [--backend B]`` as a whole process (import,
  loading the 57 MB patchset, building, compiling with jax, root finding);
  ``--backend`` as given here (default: recast's default, auto);
- baseline: ``pyhf.infer.intervals.upper_limits.upper_limit(data, model,
  scan=numpy.linspace(0, 5, 41))``, numpy backend, in process, timed from a
  built model (loading not counted: the ratio is conservative).

Ours runs twice: on a new, empty jax compilation cache (``RECAST_JAX_CACHE``
pointed at an empty folder: a cold start) and again on the cache that run
filled (warm; the same for numpy, which compiles nothing). Target (issue 11): at least 50x faster on the cold start,
every limit within a relative 1e-3 of the baseline's. Also printed: our exact roots (``--exact-root``), which differ
from the grid's linear interpolation by up to 1%. Usage:

    python benchmarks/bench_likelihood_limit.py [--skip-exact] [--backend auto|numpy|jax]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_likelihood_scan import ROOT, extract_archive  # noqa: E402  (also puts this checkout first on sys.path)

POINT = "C1N2_Wh_hbb_900_250"


def ours(folder: Path, out: Path, cache: Path, backend: str, *extra: str) -> tuple[float, dict]:
    argv = [sys.executable, "-c", "from recast.cli import main; main()", "likelihood", "limit", str(folder / "BkgOnly.json"),
            "--patchset", str(folder / "patchset.json"), "--point", POINT, "--backend", backend, "--output", str(out), *extra]
    started = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, cwd=ROOT, env={**os.environ, "RECAST_JAX_CACHE": str(cache)})
    return time.perf_counter() - started, json.loads(out.read_text())


def baseline(folder: Path) -> tuple[float, float, list[float]]:
    import numpy
    import pyhf

    pyhf.set_backend("numpy")
    workspace = pyhf.Workspace(json.loads((folder / "BkgOnly.json").read_text()))
    patchset = pyhf.PatchSet(json.loads((folder / "patchset.json").read_text()))
    model = workspace.model(patches=[patchset[POINT]])
    data = workspace.data(model)
    started = time.perf_counter()
    observed, expected = pyhf.infer.intervals.upper_limits.upper_limit(data, model, scan=numpy.linspace(0, 5, 41))
    return time.perf_counter() - started, float(observed), [float(e) for e in expected]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--skip-exact", action="store_true", help="do not also time the exact-root variant")
    parser.add_argument("--backend", default="auto", choices=["auto", "numpy", "jax"], help="our backend (default: auto)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-limit-") as tmp:
        folder = extract_archive("1Lbb-likelihoods.tar.gz", Path(tmp))
        print(f"1Lbb {POINT}: 95% CL upper limit on mu, observed and expected band", flush=True)
        cache = Path(tmp) / "jax-cache"
        seconds, result = ours(folder, Path(tmp) / "limit.json", cache, args.backend)
        backend = result["settings"]["backend"]
        print(f"  recast likelihood limit (whole process, {backend}, cold cache): {seconds:8.1f} s  "
              f"obs {result['mu_up_obs']:.6f} exp {', '.join(f'{v:.6f}' for v in result['mu_up_exp'])}", flush=True)
        warm_seconds, _ = ours(folder, Path(tmp) / "limit-warm.json", cache, args.backend)
        print(f"  recast likelihood limit (whole process, {backend}, warm cache): {warm_seconds:8.1f} s", flush=True)
        if not args.skip_exact:
            exact_seconds, exact = ours(folder, Path(tmp) / "exact.json", cache, args.backend, "--exact-root")
            print(f"  recast likelihood limit --exact-root:       {exact_seconds:8.1f} s  "
                  f"obs {exact['mu_up_obs']:.6f} exp {', '.join(f'{v:.6f}' for v in exact['mu_up_exp'])}", flush=True)
        base_seconds, observed, expected = baseline(folder)
        print(f"  pyhf upper_limit, 41-point grid, numpy:     {base_seconds:8.1f} s  "
              f"obs {observed:.6f} exp {', '.join(f'{v:.6f}' for v in expected)}", flush=True)
    ratio = base_seconds / seconds
    differences = [abs(a - b) / b for a, b in zip([result["mu_up_obs"], *result["mu_up_exp"]], [observed, *expected])]
    print(f"ratio: {ratio:.1f}x cold, {base_seconds / warm_seconds:.1f}x warm (target >= 50x cold)")
    print(f"largest relative difference of the limits: {max(differences):.2e} (target <= 1e-3)")
    ok = ratio >= 50 and max(differences) <= 1e-3
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
