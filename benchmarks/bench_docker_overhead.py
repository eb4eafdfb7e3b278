"""Per-job overhead of the docker environment against a bare ``docker run --rm IMAGE true``.

Three ways of running the same trivial command N times in the same image:

1. bare:        ``docker run --rm IMAGE true`` (the docker CLI), one after another;
2. in-process:  ``DockerEnvironment.run`` in this process (one engine client),
                with everything a recast job gets: mounts, limits, labels,
                non-root user, log file, chown of the outputs, removal;
3. per-process: a fresh Python per job that imports recast's docker
                environment and runs the job, as an executor that starts one
                process per job does (interpreter start and imports included).

Target (foundation issue): at most 0.3 s per job beyond the bare run.
Usage: python benchmarks/bench_docker_overhead.py [-n 20] [--image TAG]
(default image: recast/base:bookworm, made locally if missing).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from recast import images
from recast.environments import ImageRef, Job
from recast.environments.docker import DockerEnvironment

TARGET_S = 0.3


def per_job(times: list[float]) -> str:
    return f"mean {statistics.mean(times) * 1000:6.0f} ms, median {statistics.median(times) * 1000:6.0f} ms"


def bare(image_id: str, n: int) -> list[float]:
    times = []
    for _ in range(n):
        start = time.perf_counter()
        subprocess.run(["docker", "run", "--rm", image_id, "true"], check=True)
        times.append(time.perf_counter() - start)
    return times


def make_job(tmp: Path, image: ImageRef, i: int) -> Job:
    return Job(run_id="bench", step=f"true__{i}", argv=["true"], outdir=tmp / f"job{i}",
               read_only=[tmp / "input.txt"], image=image, log_path=tmp / f"job{i}.log")


def in_process(tmp: Path, image: ImageRef, n: int) -> list[float]:
    env = DockerEnvironment()
    times = []
    for i in range(n):
        start = time.perf_counter()
        outcome = env.run(make_job(tmp, image, i))
        times.append(time.perf_counter() - start)
        assert outcome.exit_code == 0, outcome
    return times


def per_process(tmp: Path, image: ImageRef, n: int) -> list[float]:
    times = []
    for i in range(n):
        script = textwrap.dedent(f"""
            from pathlib import Path
            from recast.environments import ImageRef, Job
            from recast.environments.docker import DockerEnvironment
            job = Job(run_id="bench", step="p{i}", argv=["true"], outdir=Path({str(tmp / f"proc{i}")!r}),
                      read_only=[Path({str(tmp / "input.txt")!r})],
                      image=ImageRef({image.name!r}, {image.tag!r}, {image.id!r}),
                      log_path=Path({str(tmp / f"proc{i}.log")!r}))
            raise SystemExit(DockerEnvironment().run(job).exit_code)
        """)
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", script], check=True)
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-n", type=int, default=20, help="jobs per way of running (default 20)")
    parser.add_argument("--image", default=images.DEFAULT_BASE, help="image tag (default %(default)s)")
    args = parser.parse_args()

    image_id = images.ensure_base() if args.image == images.DEFAULT_BASE else images._image_id(images._api(), args.image)
    if not image_id:
        raise SystemExit(f"image {args.image} is not in the Docker engine: build or pull it first")
    image = ImageRef(name="bench", tag=args.image, id=image_id)
    subprocess.run(["docker", "run", "--rm", image_id, "true"], check=True)  # warm the engine and page cache

    with tempfile.TemporaryDirectory(prefix="recast-bench-docker-") as name:
        tmp = Path(name)
        (tmp / "input.txt").write_text("input\n")
        results = {
            "bare docker run --rm": bare(image_id, args.n),
            "DockerEnvironment.run, in-process": in_process(tmp, image, args.n),
            "DockerEnvironment.run, fresh process": per_process(tmp, image, args.n),
        }
    baseline = statistics.mean(results["bare docker run --rm"])
    print(f"image {args.image} ({image_id[:19]}), {args.n} jobs each, one at a time")
    for label, times in results.items():
        extra = statistics.mean(times) - baseline
        verdict = "" if label.startswith("bare") else (
            f"   overhead {extra * 1000:+5.0f} ms/job (target <= {TARGET_S * 1000:.0f}: "
            f"{'met' if extra <= TARGET_S else 'NOT met'})")
        print(f"{label:38s} {per_job(times)}{verdict}")


if __name__ == "__main__":
    main()
