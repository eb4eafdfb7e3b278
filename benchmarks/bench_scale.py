"""Scale-out cost: the same 200-branch scatter on the local executor and on Slurm, in one run.

The bench analysis (``benchmarks/fixtures/catalog/bench``: each job touches a
file) runs on the host environment, so what is measured is what each executor
adds per job, not the job's own work:

1. ``recast run --executor local --cores C``;
2. ``recast run --executor slurm --slurm-partition P --cores C`` on the Slurm
   cluster of ``scripts/slurm.sh`` (C batch jobs queued at once);
3. ``sbatch --wrap true`` timed alone, N_SUBMIT times: the part of a Slurm job's
   cost that the one controlling Snakemake pays *in series*, whatever the
   cluster's size (the rest is paid on the nodes, in parallel).

Per-job overhead is wall time x concurrency / jobs (the jobs themselves take
milliseconds). Prints both, their ratio, and the numbers the projection in
benchmarks/README.md is made from. Usage (as root, with the cluster up):

    python benchmarks/bench_scale.py [--jobs 200] [--cores 2] [--partition debug]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
CATALOG = HERE / "fixtures" / "catalog"
N_SUBMIT = 10


def run(workdir: Path, request: Path, cores: int, *executor: str) -> tuple[float, int]:
    """Wall seconds of one `recast run`, and how many jobs it ran."""
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "recast", "run", "bench", "--request", str(request), "--environment", "host",
         "--catalog", str(CATALOG), "--workdir", str(workdir), "--cores", str(cores), "--json", *executor],
        capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"bench_scale: `recast run {' '.join(executor) or '--executor local'}` failed:\n{done.stderr[-3000:]}")
    return seconds, len(json.loads(done.stdout)["jobs_run"])


def sbatch_cost(partition: str, folder: Path) -> float:
    """Median seconds of one `sbatch` call (submission only; the jobs are cancelled)."""
    times, ids = [], []
    for _ in range(N_SUBMIT):
        start = time.perf_counter()
        out = subprocess.run(["sbatch", "--parsable", "-p", partition, "-o", str(folder / "%j.out"),
                              "--wrap", "true"], capture_output=True, text=True, check=True).stdout
        times.append(time.perf_counter() - start)
        ids.append(out.strip().split(";")[0])
    subprocess.run(["scancel", *ids], check=False)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=200, help="branches of the scatter (default 200)")
    parser.add_argument("--cores", type=int, default=2, help="jobs at once, on both executors (default 2)")
    parser.add_argument("--partition", default="debug", help="Slurm partition (default debug)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="recast-bench-scale-") as name:
        tmp = Path(name)
        request = tmp / "request.yaml"
        request.write_text(yaml.safe_dump({"parameters": {"items": list(range(args.jobs))}}))
        local_s, local_n = run(tmp / "local", request, args.cores)
        slurm_s, slurm_n = run(tmp / "slurm", request, args.cores, "--executor", "slurm",
                               "--slurm-partition", args.partition, "--slurm-status-interval", "1")
        submit_s = sbatch_cost(args.partition, tmp)

    per_local = local_s * args.cores / local_n
    per_slurm = slurm_s * args.cores / slurm_n
    print(f"local: {local_n} jobs in {local_s:.1f} s with {args.cores} at once: {per_local * 1000:.0f} ms per job")
    print(f"slurm: {slurm_n} jobs in {slurm_s:.1f} s with {args.cores} at once: {per_slurm * 1000:.0f} ms per job")
    print(f"ratio slurm/local per-job overhead: {per_slurm / per_local:.1f}")
    print(f"sbatch alone: {submit_s * 1000:.0f} ms per submission (median of {N_SUBMIT}; paid in series by the "
          f"controlling Snakemake)")
    print(json.dumps({"jobs": args.jobs, "cores": args.cores, "local_s": round(local_s, 2),
                      "slurm_s": round(slurm_s, 2), "local_ms_per_job": round(per_local * 1000),
                      "slurm_ms_per_job": round(per_slurm * 1000), "ratio": round(per_slurm / per_local, 2),
                      "sbatch_ms": round(submit_s * 1000)}))


if __name__ == "__main__":
    main()
