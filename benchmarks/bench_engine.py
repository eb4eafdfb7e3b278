"""Engine overhead of `recast run`, against the baselines named in the foundation issue.

1. Host: a scatter of N trivial jobs through `recast run --environment host`
   against the same N commands in a plain hand-written Snakefile
   (target: at most 0.3 s more per job).
2. Docker: the same scatter through `recast run --environment docker` against
   N bare `docker run --rm` of the same image doing the same thing
   (target: at most 0.3 s more per job).
(The no-op re-run of the example is measured by bench_example.py.)

Everything runs with one job at a time (--cores 1) so the per-job cost is
not hidden by parallelism. Usage:

    python benchmarks/bench_engine.py [--jobs 50] [--skip-docker]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
CATALOG = HERE / "fixtures" / "catalog"


def timed(argv, **kw) -> float:
    start = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, **kw)
    return time.perf_counter() - start


def recast_run(workdir: Path, request: Path, environment: str) -> float:
    return timed(["recast", "run", "bench", "--request", str(request), "--environment", environment,
                  "--catalog", str(CATALOG), "--workdir", str(workdir), "--cores", "1", "--json"])


def plain_snakemake(tmp: Path, n: int) -> float:
    snakefile = tmp / "Snakefile"
    snakefile.write_text(
        f"N = list(range({n}))\n"
        "rule all:\n    input: expand('out/{i}/out.txt', i=N)\n"
        "rule touch:\n    output: 'out/{i}/out.txt'\n    shell: 'touch {output} out/{wildcards.i}/n{wildcards.i}'\n"
    )
    return timed([sys.executable, "-m", "snakemake", "-s", str(snakefile), "--cores", "1", "--quiet"], cwd=tmp)


def bare_docker(tmp: Path, image_id: str, n: int) -> float:
    start = time.perf_counter()
    for i in range(n):
        out = tmp / "bare" / str(i)
        out.mkdir(parents=True)
        subprocess.run(["docker", "run", "--rm", "--network", "none", "-v", f"{out}:{out}", image_id,
                        "touch", f"{out}/out.txt", f"{out}/n{i}"], check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def report(label: str, ours: float, baseline: float, n: int, target: float) -> None:
    extra = (ours - baseline) / n
    print(f"{label}: recast {ours:.2f} s, baseline {baseline:.2f} s for {n} jobs; "
          f"ratio {ours / baseline:.2f}; overhead {extra * 1000:.0f} ms/job "
          f"(target <= {target * 1000:.0f} ms/job: {'met' if extra <= target else 'NOT met'})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=50)
    parser.add_argument("--skip-docker", action="store_true")
    args = parser.parse_args()
    n = args.jobs

    with tempfile.TemporaryDirectory(prefix="recast-bench-") as name:
        tmp = Path(name)
        request = tmp / "request.yaml"
        request.write_text(yaml.safe_dump({"parameters": {"items": list(range(n))}}))
        (tmp / "plain").mkdir()
        baseline = plain_snakemake(tmp / "plain", n)
        ours = recast_run(tmp / "host", request, "host")
        report("host  ", ours, baseline, n, 0.3)

        if not args.skip_docker:
            from recast import images
            from recast.validate import load_analysis

            analysis = load_analysis(CATALOG / "bench")
            ref = images.build(analysis)["base"]
            baseline = bare_docker(tmp, ref.id, n)
            ours = recast_run(tmp / "docker", request, "docker")
            report("docker", ours, baseline, n, 0.3)
            shutil.rmtree(tmp / "bare", ignore_errors=True)


if __name__ == "__main__":
    main()
