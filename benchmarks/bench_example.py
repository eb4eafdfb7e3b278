"""The example reinterpretation end to end, and where its time goes.

Runs `recast run wh1lbb --example default` into a fresh run folder, then
again into the same folder (a no-op re-run; target: at most 3 s), and
reports: the total wall time, the time of each stage's jobs (from the job
records), and the share spent inside pyhf fits (the `seconds` the likelihood
engine reports in each cls/limit output), so that what is overhead is known.

    python benchmarks/bench_example.py [--environment docker|host] [--cores 2]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
import time
from collections import defaultdict
from datetime import datetime
from pathlib import Path


def recast_run(run_dir: Path, environment: str, cores: int) -> float:
    start = time.perf_counter()
    subprocess.run(["recast", "run", "wh1lbb", "--example", "default", "--environment", environment,
                    "--cores", str(cores), "--workdir", str(run_dir), "--json"],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--environment", default="docker", choices=["docker", "host"])
    parser.add_argument("--cores", type=int, default=2)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="recast-example-") as name:
        run_dir = Path(name) / "run"
        total = recast_run(run_dir, args.environment, args.cores)
        noop = recast_run(run_dir, args.environment, args.cores)

        per_stage: dict[str, list[float]] = defaultdict(list)
        for record in (run_dir / "logs").glob("*.json"):
            job = json.loads(record.read_text())
            seconds = (datetime.fromisoformat(job["ended"]) - datetime.fromisoformat(job["started"])).total_seconds()
            per_stage[job["stage"]].append(seconds)
        fits = sum(json.loads(p.read_text())["seconds"]
                   for pattern in ("steps/cls__*/cls.json", "steps/limit__*/limit.json") for p in run_dir.glob(pattern))
        busy = sum(sum(v) for v in per_stage.values())

    print(f"example wh1lbb/default, environment {args.environment}, --cores {args.cores}")
    print(f"  end to end: {total:.1f} s wall; jobs busy {busy:.1f} s in all")
    for stage, seconds in per_stage.items():
        print(f"    {stage:8s} {len(seconds)} job(s), {sum(seconds):6.1f} s, {sum(seconds) / len(seconds):5.2f} s each")
    print(f"  inside pyhf fits: {fits:.1f} s = {fits / busy:.0%} of the jobs' time, "
          f"{fits / (total * args.cores):.0%} of the {args.cores} cores' wall time")
    print(f"  no-op re-run: {noop:.2f} s (target <= 3 s: {'met' if noop <= 3 else 'NOT met'})")


if __name__ == "__main__":
    main()
