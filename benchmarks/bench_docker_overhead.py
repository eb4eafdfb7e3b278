"""Per-job overhead of the docker environment against a bare ``docker run --rm IMAGE true``.

Three ways of running the same trivial command N times in the same image:

1. bare:        ``docker run --rm IMAGE true`` (the docker CLI), one after another;
2. in-process:  ``DockerEnvironment.run`` in this process (one engine client),
                with everything a recast job gets: mounts, limits, labels,
                non-root user, log file, chown of the outputs, removal;
3. fresh process: a fresh Python per job that imports recast's docker
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


def bare(image_id: str) -> None:
    subprocess.run(["docker", "run", "--rm", image_id, "true"], check=True)


def make_job(tmp: Path, image: ImageRef, name: str) -> Job:
    return Job(run_id="bench", step=name, argv=["true"], outdir=tmp / name,
               read_only=[tmp / "input.txt"], image=image, log_path=tmp / f"{name}.log")


def in_process(env: DockerEnvironment, job: Job) -> None:
    outcome = env.run(job)
    assert outcome.exit_code == 0, outcome


def fresh_process(job: Job) -> None:
    image = job.image
    script = textwrap.dedent(f"""
        from pathlib import Path
        from recast.environments import ImageRef, Job
        from recast.environments.docker import DockerEnvironment
        job = Job(run_id="bench", step={job.step!r}, argv=["true"], outdir=Path({str(job.outdir)!r}),
                  read_only=[Path(p) for p in {[str(p) for p in job.read_only]!r}],
                  image=ImageRef({image.name!r}, {image.tag!r}, {image.id!r}), log_path=Path({str(job.log_path)!r}))
        raise SystemExit(DockerEnvironment().run(job).exit_code)
    """)
    subprocess.run([sys.executable, "-c", script], check=True)


def timed(fn, *args) -> float:
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-n", type=int, default=20, help="jobs per way of running (default 20)")
    parser.add_argument("--image", default=images.DEFAULT_BASE, help="image tag (default %(default)s)")
    args = parser.parse_args()

    image_id = images.ensure_base() if args.image == images.DEFAULT_BASE else images.find_image(images.engine_api(), args.image)
    if not image_id:
        raise SystemExit(f"image {args.image} is not in the Docker engine: build or pull it first")
    image = ImageRef(name="bench", tag=args.image, id=image_id)
    subprocess.run(["docker", "run", "--rm", image_id, "true"], check=True)  # warm the engine and page cache

    with tempfile.TemporaryDirectory(prefix="recast-bench-docker-") as name:
        tmp = Path(name)
        (tmp / "input.txt").write_text("input\n")
        env = DockerEnvironment()
        results = {"bare docker run --rm": [], "DockerEnvironment.run, in-process": [],
                   "DockerEnvironment.run, fresh process": []}
        for i in range(args.n):  # interleaved, so a change of machine load hits all three alike
            results["bare docker run --rm"].append(timed(bare, image_id))
            results["DockerEnvironment.run, in-process"].append(timed(in_process, env, make_job(tmp, image, f"in{i}")))
            results["DockerEnvironment.run, fresh process"].append(timed(fresh_process, make_job(tmp, image, f"fresh{i}")))
    baseline = statistics.mean(results["bare docker run --rm"])
    print(f"image {args.image} ({image_id[:19]}), {args.n} jobs each, one at a time, interleaved")
    for label, times in results.items():
        extra = statistics.mean(times) - baseline
        verdict = "" if label.startswith("bare") else (
            f"   overhead {extra * 1000:+5.0f} ms/job (target <= {TARGET_S * 1000:.0f}: "
            f"{'met' if extra <= TARGET_S else 'NOT met'})")
        print(f"{label:38s} {per_job(times)}{verdict}")


if __name__ == "__main__":
    main()
