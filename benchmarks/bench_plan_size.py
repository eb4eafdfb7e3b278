"""What grows with the size of a run: the plan, and the Snakefile parse every cluster job repeats.

For a scatter of N trivial jobs (the bench analysis, host environment) it
prints, per N: the plan's size and build time (``recast.execution.prepare``),
loading it (each job does), and one ``snakemake --target-jobs`` on a single
job, as each Slurm batch job runs it (parse the Snakefile, build the DAG of
that one job). The projection in benchmarks/README.md is made from these.
Usage:

    python benchmarks/bench_plan_size.py [--jobs 200 2000 10000]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # this checkout's recast


def main() -> None:
    from recast import execution, resources
    from recast import request as request_mod
    from recast.plan import load
    from recast.validate import load_analysis

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, nargs="+", default=[200, 2000, 10000])
    args = parser.parse_args()
    analysis = load_analysis(HERE / "fixtures" / "catalog" / "bench")
    for n in args.jobs:
        with tempfile.TemporaryDirectory(prefix="recast-bench-plan-") as name:
            tmp = Path(name)
            request_path = tmp / "request.json"
            request_path.write_text(json.dumps({"schema": "recast/request/1.0.0", "analysis": "bench",
                                                "parameters": {"items": list(range(n))}}))
            request = request_mod.load(analysis, request_path)
            start = time.perf_counter()
            execution.prepare(analysis, request, tmp / "run", "host")
            built = time.perf_counter() - start
            plan_path = tmp / "run" / ".recast" / "plan.json"
            start = time.perf_counter()
            load(plan_path)
            loaded = time.perf_counter() - start
            start = time.perf_counter()
            done = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(resources.snakefile()),
                                   "--configfile", str(tmp / "run" / ".recast" / "config.yaml"), "-d", str(tmp / "run"),
                                   "-n", "-q", "--cores", "1", "--target-jobs", "touch__0:"],
                                  capture_output=True, text=True)
            one_job = time.perf_counter() - start
            if done.returncode != 0:
                sys.exit(f"snakemake failed on {n} jobs:\n{done.stderr[-2000:]}")
            print(json.dumps({"jobs": n, "plan_bytes": plan_path.stat().st_size, "plan_build_s": round(built, 2),
                              "plan_load_s": round(loaded, 3), "snakemake_one_job_s": round(one_job, 2)}), flush=True)


if __name__ == "__main__":
    main()
