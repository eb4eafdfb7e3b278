"""``recast test``: prove preserved analyses still reproduce their reference results."""

from __future__ import annotations

from pathlib import Path

import click

from recast import catalog as catalog_mod
from recast.cli.common import catalog_option, console, emit_json, fmt, json_option, table
from recast.environments import ENVIRONMENTS
from recast.errors import RecastError


@click.command("test")
@click.argument("analysis_ids", nargs=-1)
@click.option("--all", "all_", is_flag=True, help="Every analysis of the catalog that has a workflow.")
@click.option("--step", help="Run only this step check (checks.yaml `steps`) on its stored fixtures.")
@click.option("--environment", type=click.Choice(sorted(ENVIRONMENTS)), default="docker", show_default=True)
@click.option("--cores", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--workdir", type=click.Path(file_okay=False), default="runs/test", show_default=True,
              help="Where test runs go (never a user's run folder; references are only read).")
@click.option("--junit", "junit_file", type=click.Path(dir_okay=False), help="Also write a JUnit XML report here.")
@catalog_option
@json_option
def test(analysis_ids, all_, step, environment, cores, workdir, junit_file, catalog_dir, as_json):
    """Re-run each example request of ANALYSIS and compare with its archived reference results.

    Values are compared one by one within the tolerances the spec declares;
    the entry's acceptance checks (checks.yaml) are applied too. Exits
    non-zero on any mismatch or failure.
    """
    from recast import acceptance

    if bool(analysis_ids) == all_:
        raise click.UsageError("give ANALYSIS ids or --all (not both)")
    if all_:
        analyses = [a for p in catalog_mod.entries(catalog_dir) if (a := catalog_mod.load(catalog_dir, p.name)).runnable]
    else:
        analyses = [catalog_mod.load(catalog_dir, i) for i in analysis_ids]
    cases = []
    for analysis in analyses:
        if step:
            cases.append(acceptance.test_step(analysis, step, Path(workdir), environment))
            continue
        with_reference = [name for name, ex in sorted(analysis.examples.items()) if ex.reference is not None]
        if not with_reference:
            raise RecastError(f"analysis {analysis.id} has no example request with reference results")
        for name in with_reference:
            cases.append(acceptance.test_example(analysis, name, Path(workdir), environment, cores))
    if junit_file:
        acceptance.junit(cases, Path(junit_file))
    if as_json:
        emit_json([c.to_json() for c in cases])
    else:
        for case in cases:
            failed = [o for o in case.outcomes if not o.passed]
            status = "[green]passed[/green]" if case.passed else "[red]FAILED[/red]"
            console.print(f"{status} {case.analysis} {case.name}: {len(case.outcomes) - len(failed)}/"
                          f"{len(case.outcomes)} checks matched ({case.seconds:.1f} s)")
            if case.error:
                console.print(f"  error: {case.error}", markup=False, highlight=False)
            if failed:
                console.print(table(None, ["check", "expected", "found", "why"],
                                    [[o.name, fmt(o.expected), fmt(o.found), o.message] for o in failed]))
    if not all(c.passed for c in cases):
        raise SystemExit(1)
