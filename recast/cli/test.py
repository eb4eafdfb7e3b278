"""``recast test``: prove preserved analyses still reproduce their reference results."""

from __future__ import annotations

from pathlib import Path

import click

from recast import catalog as catalog_mod
from recast.cli.executor import executor_options
from recast.cli.common import (allow_stale_option, catalog_option, complete_analysis, console, emit_json, err_console,
                               fmt, json_option, table)
from recast.environments import ENVIRONMENTS
from recast.errors import RecastError


@click.command("test")
@click.argument("analysis_ids", nargs=-1, shell_complete=complete_analysis)
@click.option("--all", "all_", is_flag=True, help="Every analysis of the catalog that has a workflow.")
@click.option("--update-reference", is_flag=True,
              help="Instead of comparing: run each example afresh, write its results as the reference the spec "
                   "declares (examples.NAME.reference), and show what changed against the old one.")
@click.option("--example", "example_name", metavar="NAME", help="Only this example (default: every example).")
@click.option("--step", help="Run only this step check (checks.yaml `steps`) on its stored fixtures.")
@click.option("--environment", type=click.Choice(sorted(ENVIRONMENTS)), default="docker", show_default=True)
@executor_options()
@click.option("--cores", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--workdir", type=click.Path(file_okay=False), default="runs/test", show_default=True,
              help="Where test runs go (never a user's run folder; references are only read).")
@click.option("--junit", "junit_file", type=click.Path(dir_okay=False), help="Also write a JUnit XML report here.")
@allow_stale_option
@catalog_option
@json_option
def test(analysis_ids, all_, update_reference, example_name, step, environment, executor, cores, workdir, junit_file,
         allow_stale_images, catalog_dir, as_json):
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
    if update_reference:
        if step:
            raise click.UsageError("--update-reference writes the references of examples, not of steps")
        _update_references(analyses, example_name, Path(workdir), environment, cores, allow_stale_images, as_json,
                           executor)
        return
    if step and not executor.shares_machine:
        raise click.UsageError("--step runs one template here, on this machine: leave out --executor")
    cases = []
    for analysis in analyses:
        if step:
            cases.append(acceptance.test_step(analysis, step, Path(workdir), environment, allow_stale_images))
            continue
        with_reference = [name for name, ex in sorted(analysis.examples.items())
                          if ex.reference is not None and example_name in (None, name)]
        if not with_reference:
            from recast.catalog import command

            raise RecastError(f"analysis {analysis.id} has no example request with reference results: "
                              f"run it once and save its results with "
                              f"`{command(analysis, 'test', '--update-reference')}`")
        for name in with_reference:
            cases.append(acceptance.test_example(analysis, name, Path(workdir), environment, cores,
                                                 allow_stale_images, executor))
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


def _update_references(analyses, example_name, workdir, environment, cores, allow_stale_images, as_json,
                       executor="local") -> None:
    from recast import acceptance
    from recast.catalog import command

    updates = []
    for analysis in analyses:
        declared = analysis.document.get("examples", {})
        names = ([example_name] if example_name else
                 [n for n in sorted(analysis.examples) if (declared.get(n) or {}).get("reference")]
                 or sorted(analysis.examples))
        if not names:
            raise RecastError(f"analysis {analysis.id} has no example requests (examples: in {analysis.spec_path})")
        for name in names:
            update = acceptance.update_reference(analysis, name, workdir, environment, cores, allow_stale_images,
                                                 executor)
            updates.append(update)
            if as_json:
                continue
            if not update.previous:
                err_console.print(f"wrote the first reference of {analysis.id} {name}: {update.path}", highlight=False)
            elif not update.changes:
                err_console.print(f"wrote {update.path}: every value matches the old reference", highlight=False)
            else:
                err_console.print(f"wrote {update.path}: {len(update.changes)} value(s) differ from the old "
                                  "reference:", highlight=False)
                console.print(table(None, ["value", "old", "new", "why"],
                                    [[o.name, fmt(o.expected), fmt(o.found), o.message] for o in update.changes]))
            err_console.print(f"next: pin the entry's files with `{command(analysis, 'catalog pin')}`",
                              highlight=False)
    if as_json:
        emit_json([u.to_json() for u in updates])
