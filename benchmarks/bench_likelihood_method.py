"""Is the engine fast because of its method, on any likelihood? Default scan against a plain pyhf loop, one run.

For each likelihood chosen with ``--likelihood`` (repeatable):

- ``sbottom-A``, ``sbottom-B``, ``sbottom-C``: SUSY-2018-31's three regions,
  one patch file per point (the shape of issue 11's "three regions, per-point
  patch files"); points spread over the region's list (every k-th by name);
- ``1lbb``: SUSY-2019-08, a 57 MB patchset, 126 parameters;
- ``synthetic``: generated here, another structure (10 channels of 5 bins,
  staterror and shapesys per bin, normsys, histosys, a free normalisation:
  116 parameters), so that no number comes from one published shape.

ours: ``recast.likelihood.scan`` with the *default* settings (what
``recast likelihood scan`` runs: backend auto, method fast) in ``--workers``
processes (default 2: the calling process and a forked worker, both cores;
printed; plain pyhf's loop uses both cores too, through OpenBLAS's threads),
in process, including the first point's compilation (on a new, empty
persistent compilation cache unless ``--warm-cache``: a cold start); baseline: a sequential
in-process loop of ``pyhf.infer.hypotest`` (numpy, pyhf's defaults) on the
first ``--baseline-points`` of the same points, timed per point from the
workspace (model building included, as a user's loop does). The ratio is the
baseline's time per point over ours; CLs are compared on the points both
computed: relative 1e-4 (values above 1e-10). A point outside it is computed
again with plain pyhf converged tightly (jax backend, exact gradients, SLSQP
tolerance 1e-10): where pyhf's default fits stop early along a flat
direction its CLs moves by up to 1e-2, and ours must then agree with the
converged pyhf. Counted: every CLs from 1e-5 up; points without
sensitivity (every CLs above 0.99: q_mu below 1e-4, where -2 log L minima
agree only to the fits' tolerance, ~1e-6) and points where plain pyhf gives
NaN are listed with their differences and not counted.

    python benchmarks/bench_likelihood_method.py --likelihood sbottom-B --likelihood synthetic [--points 40] [--baseline-points 8]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_likelihood_scan import extract_archive  # noqa: E402  (also puts this checkout first on sys.path)

LIKELIHOODS = ("sbottom-A", "sbottom-B", "sbottom-C", "1lbb", "synthetic")


def synthetic_likelihood(folder: Path, points: int, seed: int = 11) -> tuple[Path, list[Path]]:
    """A background-only workspace of another structure and ``points`` signal patches (one file each)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    channels, observations = [], []
    nbins = 5
    for c in range(10):
        b1 = rng.uniform(20, 200, nbins).round(2)
        b2 = rng.uniform(5, 50, nbins).round(2)
        b3 = rng.uniform(1, 20, nbins).round(2)
        samples = [
            {"name": "bkg_main", "data": b1.tolist(), "modifiers": [
                {"name": f"staterror_ch{c}", "type": "staterror", "data": (0.05 * b1).round(3).tolist()},
                {"name": "lumi", "type": "lumi", "data": None},
                {"name": f"norm_sys{c % 3}", "type": "normsys", "data": {"hi": 1.08, "lo": 0.93}},
                {"name": f"shape_sys{c % 2}", "type": "histosys", "data": {"hi_data": (b1 * rng.uniform(1.0, 1.1, nbins)).round(2).tolist(),
                                                                         "lo_data": (b1 * rng.uniform(0.9, 1.0, nbins)).round(2).tolist()}},
            ]},
            {"name": "bkg_fake", "data": b2.tolist(), "modifiers": [
                {"name": f"shapesys_ch{c}", "type": "shapesys", "data": (0.2 * b2).round(3).tolist()},
                {"name": "norm_fake", "type": "normsys", "data": {"hi": 1.3, "lo": 0.75}},
            ]},
            {"name": "bkg_free", "data": b3.tolist(), "modifiers": [
                {"name": "mu_free", "type": "normfactor", "data": None},
                {"name": "lumi", "type": "lumi", "data": None},
            ]},
        ]
        channels.append({"name": f"ch{c}", "samples": samples})
        observations.append({"name": f"ch{c}", "data": rng.poisson(b1 + b2 + b3).astype(float).tolist()})
    workspace = {
        "channels": channels, "observations": observations, "version": "1.0.0",
        "measurements": [{"name": "meas", "config": {"poi": "mu_SIG", "parameters": [
            {"name": "lumi", "auxdata": [1.0], "sigmas": [0.017], "bounds": [[0.9, 1.1]], "inits": [1.0]},
            {"name": "mu_SIG", "bounds": [[0.0, 10.0]], "inits": [1.0]},
        ]}}],
    }
    path = folder / "BkgOnly.json"
    path.write_text(json.dumps(workspace))
    patches = []
    for index in range(points):
        mass, split = 300 + 50 * (index // 8), 10 + 20 * (index % 8)
        peak = (mass - 300) / 400 * (nbins - 1)
        shape = np.exp(-0.5 * ((np.arange(nbins) - peak) / 1.2) ** 2)
        ops = []
        for c in range(4):
            yields = (8 * shape * (1 + 0.1 * c) * (1 - split / 300)).round(3)
            ops.append({"op": "add", "path": f"/channels/{c}/samples/-", "value": {"name": "signal", "data": yields.tolist(), "modifiers": [
                {"name": "mu_SIG", "type": "normfactor", "data": None}, {"name": "lumi", "type": "lumi", "data": None},
                {"name": "sig_sys", "type": "normsys", "data": {"hi": 1.1, "lo": 0.9}}]}})
        patch = folder / f"patch.synth_{mass}_{split}.json"
        patch.write_text(json.dumps(ops))
        patches.append(patch)
    return path, patches


def load(name: str, tmp: Path, count: int):
    """(Likelihood, description) with ``count`` points."""
    from recast.likelihood import load_workspace

    if name.startswith("sbottom"):
        folder = tmp / "sbottom"
        if not folder.exists():
            extract_archive("SUSY-2018-31_likelihoods.tar.gz", folder)
        region = folder / f"Region{name[-1]}"
        files = sorted(region.glob("patch.*.json"))
        step = max(1, len(files) // count)
        chosen = files[::step][:count]
        return load_workspace(region / "BkgOnly.json", chosen, labels=["msb", "mn2", "mn1"]), f"SUSY-2018-31 Region{name[-1]}, {len(chosen)} of {len(files)} points"
    if name == "1lbb":
        folder = tmp / "onelbb"
        if not folder.exists():
            extract_archive("1Lbb-likelihoods.tar.gz", folder)
        likelihood = load_workspace(folder / "BkgOnly.json", patchset=folder / "patchset.json")
        step = max(1, len(likelihood.points) // count)
        likelihood.points = likelihood.points[::step][:count]
        return likelihood, f"1Lbb, {len(likelihood.points)} of 125 points"
    folder = tmp / "synthetic"
    folder.mkdir(exist_ok=True)
    workspace, patches = synthetic_likelihood(folder, count)
    return load_workspace(workspace, patches, labels=["m", "dm"]), f"synthetic, {count} points"


def pyhf_loop(likelihood, points) -> tuple[float, dict[str, list[float]]]:
    import pyhf

    pyhf.set_backend("numpy")
    values = {}
    started = time.perf_counter()
    for point in points:
        workspace = likelihood.patched_workspace(point, validate=False)
        model = workspace.model()
        try:
            obs, exp = pyhf.infer.hypotest(1.0, workspace.data(model), model, test_stat="qtilde", return_expected_set=True)
            values[point.name] = [float(obs), *[float(e) for e in exp]]
        except pyhf.exceptions.FailedMinimization:
            values[point.name] = None
    return time.perf_counter() - started, values


def pyhf_converged(likelihood, point) -> list[float]:
    import pyhf

    pyhf.set_backend("jax", pyhf.optimize.scipy_optimizer(tolerance=1e-10))
    try:
        workspace = likelihood.patched_workspace(point, validate=False)
        model = workspace.model()
        obs, exp = pyhf.infer.hypotest(1.0, workspace.data(model), model, test_stat="qtilde", return_expected_set=True)
    finally:
        pyhf.set_backend("numpy", pyhf.optimize.scipy_optimizer())
    return [float(obs), *[float(e) for e in exp]]


def relative(mine: list[float], values: list[float]) -> float:
    return max([0.0] + [abs(a - b) / abs(b) for a, b in zip(mine, values) if abs(b) > 1e-10])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--likelihood", action="append", choices=LIKELIHOODS)
    parser.add_argument("--points", type=int, default=40)
    parser.add_argument("--baseline-points", type=int, default=8, help="points of the pyhf loop (time per point is compared)")
    parser.add_argument("--workers", type=int, default=2, help="processes of our scan (default 2, both cores; 1: one process)")
    parser.add_argument("--warm-cache", action="store_true",
                        help="use recast's persistent jax compilation cache (default: a new empty one, a cold start)")
    args = parser.parse_args()
    import os

    cold = None if args.warm_cache else tempfile.TemporaryDirectory(prefix="bench-method-jax-")
    if cold is not None:
        os.environ["RECAST_JAX_CACHE"] = cold.name  # read when jax is first used: nothing compiled before
    from recast.likelihood import scan

    ok = True
    with tempfile.TemporaryDirectory(prefix="bench-method-") as tmp:
        for name in args.likelihood or ["sbottom-B", "synthetic"]:
            likelihood, description = load(name, Path(tmp), args.points)
            started = time.perf_counter()
            result = scan(likelihood, workers=args.workers, progress=False)
            ours = time.perf_counter() - started
            rows = {r["point"]: r for r in result["points"]}
            # spread over the scan's points: pyhf's time per point varies 5-fold across a grid
            stride = max(1, len(likelihood.points) // args.baseline_points)
            baseline_points = likelihood.points[::stride][: args.baseline_points]
            loop, reference = pyhf_loop(likelihood, baseline_points)
            per_ours, per_loop = ours / len(likelihood.points), loop / len(baseline_points)
            worst, rechecked = 0.0, []
            by_name = {p.name: p for p in likelihood.points}
            for point, values in reference.items():
                row = rows[point]
                if values is None or "error" in row or row["fit_quality"]["status"] != "ok":
                    continue
                mine = [row["cls_obs"], *row["cls_exp"]]
                if any(v != v for v in values):
                    rechecked.append(f"{point}: plain pyhf gives NaN ({values[0]}), ours {mine[0]:.6f}; not counted")
                    continue
                if min(values) > 0.99:
                    rechecked.append(f"{point}: no sensitivity (CLs {values[0]:.6f}); absolute difference "
                                     f"{max(abs(a - b) for a, b in zip(mine, values)):.1e}, not counted")
                    continue
                # far below the exclusion level, relative precision follows the fits' tolerance
                counted = [i for i, v in enumerate(values) if v >= 1e-5]
                mine, values = [mine[i] for i in counted], [values[i] for i in counted]
                difference = relative(mine, values)
                if difference > 1e-4:
                    converged = relative(mine, [pyhf_converged(likelihood, by_name[point])[i] for i in counted])
                    rechecked.append(f"{point}: {difference:.1e} from pyhf's default fits, {converged:.1e} from converged pyhf")
                    difference = converged
                worst = max(worst, difference)
            doubtful = [r["point"] for r in result["points"] if r.get("fit_quality", {}).get("status") == "doubtful"]
            print(f"{description}: ours {ours:.1f} s ({per_ours:.3f} s/point, backend {result['settings']['backend']}, "
                  f"{result['workers']} process(es), "
                  f"{'warm' if args.warm_cache else 'cold'} compilation cache); "
                  f"pyhf loop {loop:.1f} s for {len(baseline_points)} points ({per_loop:.3f} s/point): "
                  f"{per_loop / per_ours:.1f}x per point; largest relative CLs difference {worst:.1e}; "
                  f"failed {result['failed']}, doubtful {len(doubtful)} {doubtful[:3]}", flush=True)
            for line in rechecked:
                print(f"  {line}")
            ok &= worst <= 1e-4
    print("PASS" if ok else "FAIL (CLs differ)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
