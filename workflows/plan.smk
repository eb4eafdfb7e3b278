# One rule per job of a recast plan; see the top-level Snakefile, which
# includes this file and defines the default target.
import shlex

from recast.plan import load, snakemake_resources

PLAN_PATH = config["plan"]
PLAN = load(PLAN_PATH)


def _braces(text):
    return text.replace("{", "{{").replace("}", "}}")


RUNNER = _braces(f"{shlex.quote(PLAN.python)} -m recast.job {shlex.quote(PLAN_PATH)}")

workdir: PLAN.run_dir

for _job in PLAN.jobs:
    _res = snakemake_resources(_job)

    rule:
        name:
            _job.id
        input:
            _job.inputs,
        output:
            # a folder output is Snakemake's directory(): made by the job, removed before it reruns
            [directory(p) if p in _job.output_directories else p for p in _job.outputs],
        log:
            _job.log,
        params:
            # shell: is formatted when the job runs, after this loop has
            # moved on: the job id must travel in params, not in a closure.
            job=_job.id,
            digest=_job.digest,
        threads: _res["threads"]
        retries: _job.retries
        resources:
            mem_mb=_res["mem_mb"],
            runtime=_res["runtime"],
        shell:
            RUNNER + " {params.job}"
