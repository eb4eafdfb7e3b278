"""Memory benchmark of the likelihood engine: a scan over all 125 1Lbb signal points.

``recast likelihood scan BkgOnly.json --patchset patchset.json [--backend B]`` (default: recast's, auto)
(the calling process and its worker, forked since 2026-11-22) must stay under 4 GB peak; the
peak is the largest sum of the resident memory of the process tree, sampled
every 0.1 s from /proc, and each process's own peak (VmHWM).

Baseline, in the same run: plain pyhf on one of those points in a process
(``pyhf.infer.hypotest`` on C1N2_Wh_hbb_900_250, numpy backend), the
memory a user needs for a single point; the ratio says what the 125-point
scan costs in memory beyond that. Usage:

    python benchmarks/bench_likelihood_memory.py [--points 125] [--backend auto|numpy|jax]
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

LIMIT = 4 * 1024**3
BASELINE = """
import json, sys, pyhf
folder = sys.argv[1]
workspace = pyhf.Workspace(json.load(open(folder + "/BkgOnly.json")))
patchset = pyhf.PatchSet(json.load(open(folder + "/patchset.json")))
model = workspace.model(patches=[patchset["C1N2_Wh_hbb_900_250"]])
print(pyhf.infer.hypotest(1.0, workspace.data(model), model, test_stat="qtilde"))
"""


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as handle:
                    parent = int(handle.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            tree.setdefault(parent, []).append(int(entry))
    return tree


def _status_kb(pid: int, field: str) -> int:
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def run_measured(argv: list[str]) -> tuple[float, int, int, int]:
    """(seconds, peak summed RSS of the tree, largest single-process peak, processes seen), in bytes."""
    started = time.perf_counter()
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    peak_sum = peak_single = 0
    seen: set[int] = set()
    while process.poll() is None:
        tree, stack, total = _children(), [process.pid], 0
        while stack:
            pid = stack.pop()
            seen.add(pid)
            total += _status_kb(pid, "VmRSS")
            peak_single = max(peak_single, _status_kb(pid, "VmHWM"))
            stack.extend(tree.get(pid, []))
        peak_sum = max(peak_sum, total)
        time.sleep(0.1)
    stderr = process.stderr.read()
    if process.returncode != 0:
        raise SystemExit(f"{argv[:6]}... failed ({process.returncode}):\n{stderr}")
    return time.perf_counter() - started, peak_sum * 1024, peak_single * 1024, len(seen)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--points", type=int, default=125)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--backend", default="auto", choices=["auto", "numpy", "jax"])
    args = parser.parse_args()
    gib = 1024**3
    with tempfile.TemporaryDirectory(prefix="bench-memory-") as tmp:
        folder = extract_archive("1Lbb-likelihoods.tar.gz", Path(tmp))
        names = sorted(p["metadata"]["name"] for p in json.loads((folder / "patchset.json").read_text())["patches"])[: args.points]
        argv = [sys.executable, "-c", "from recast.cli import main; main()", "likelihood", "scan", str(folder / "BkgOnly.json"),
                "--patchset", str(folder / "patchset.json"), "--backend", args.backend, "--workers", str(args.workers),
                "--no-progress", "--output", str(Path(tmp) / "scan.json")]
        if args.points < 125:
            for name in names:
                argv += ["--point", name]
        seconds, peak, single, processes = run_measured(argv)
        result = json.loads((Path(tmp) / "scan.json").read_text())
        print(f"1Lbb scan of {len(result['points'])} points ({result['failed']} failed), {result['settings']['backend']}, "
              f"{result['workers']} processes, {seconds:.1f} s")
        print(f"  peak memory of the scan (sum over its {processes} processes): {peak / gib:6.2f} GiB; largest single process {single / gib:.2f} GiB")
        base_seconds, base_peak, _, _ = run_measured([sys.executable, "-c", BASELINE, str(folder)])
        print(f"  baseline, plain pyhf on one point in a process:               {base_peak / gib:6.2f} GiB ({base_seconds:.1f} s)")
    print(f"ratio scan / one plain pyhf point: {peak / base_peak:.2f}x")
    ok = peak < LIMIT and result["failed"] == 0
    print(f"peak {peak / gib:.2f} GiB (target < 4 GiB): {'PASS' if ok else 'FAIL'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
