# The generic driver: turns a recast plan (RUN/.recast/plan.json) into rules.
#
#   snakemake -s Snakefile --configfile RUN/.recast/config.yaml --cores 2
#
# runs the same jobs as `recast run`, so Snakemake users keep their habits
# (--dry-run, --dag, --forceall, executor plugins, ...). Each job runs
# `python -m recast.job PLAN JOB`, which starts the command in the job's
# environment (its Docker image, or the host). User values live in the plan,
# never in the shell command below.

include: "workflows/plan.smk"

# The default target must be a rule of this file: Snakemake never takes an
# included rule as the default.
localrules: all


rule all:
    input:
        PLAN.targets,
