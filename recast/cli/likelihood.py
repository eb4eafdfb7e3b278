"""``recast likelihood cls|limit|scan``: CLs, upper limits and scans on published likelihoods.

Each command takes either plain files::

    recast likelihood cls BkgOnly.json --patch patch.sbottom_1300_205_60.json --json
    recast likelihood limit BkgOnly.json --patchset patchset.json --point C1N2_Wh_hbb_900_250

a published archive directly (extracted safely to a temporary folder)::

    recast likelihood cls SUSY-2018-31_likelihoods.tar.gz --region RegionA --point sbottom_1300_205_60

or a likelihood-only catalog entry (made by ``recast import hepdata``)::

    recast likelihood scan atlas-susy-2018-31 --region RegionA --plot excl.png --x msb --y mn2 --where mn1=60

JSON output (``--json`` on stdout; ``--output FILE`` writes the same JSON)
-------------------------------------------------------------------------

``cls`` for one signal point (several points: ``{"points": [<record>, ...]}``)::

    {"point": "sbottom_1300_205_60", "workspace": "...", "patch": "...", "values": {...},
     "mu": 1.0, "cls_obs": 0.2444, "cls_exp": [<-2σ>, <-1σ>, <median>, <+1σ>, <+2σ>],
     "excluded_obs": false, "excluded_exp": false, "seconds": 1.2,
     "fit_quality": {"status": "ok" | "doubtful", "warnings": [...], "checks": [...],
                     "fits": {"free_data": {"twice_nll", "mu_hat", "converged", "iterations", "start",
                                            "alternatives": [...]}, "background_data": {...},
                                            "free_asimov": {...}, "conditional": {"fits", "not_converged"}}},
     "warnings": [...],                                  # = fit_quality.warnings (recast.likelihood.quality)
     "settings": {"backend": "numpy", "optimizer": "scipy", "test_stat": "qtilde",
                  "interpolation": {"normsys": "code4", "histosys": "code4p"},
                  "method": "fast", "calculator": "asymptotics", "pyhf_version": "0.7.6"}}

``limit`` for one signal point (several: ``{"points": [...]}``)::

    {"point": ..., "workspace": ..., "patch": ..., "values": {...}, "settings": {...},
     "level": 0.05, "cl": 0.95, "mu_up_obs": 2.548, "mu_up_exp": [<-2σ>, ..., <+2σ>],
     "root_finding": {"algorithm": "brentq", "rtol": 1e-06},
     "grid": {"start": 0.0, "stop": 5.0, "points": 41, "interpolation": "..."},   # unless --exact-root
     "evaluations": 40, "fit_quality": {...}, "warnings": [...], "seconds": 12.3}

``scan``::

    {"workspace": ..., "settings": {...}, "mu": 1.0, "labels": ["m1", "m2"], "workers": 2,
     "failed": 0, "doubtful": 0, "seconds": 30.1, "analysis": "...", "region": "...",
     "points": [<cls record without workspace/settings, plus mu_up_obs/mu_up_exp with --limits>
                | {"point", "patch", "values", "error", "error_type", "seconds"}, ...]}

Exit status: 0 on success, also when a result is doubtful (its warnings are
printed on stderr and recorded in the JSON); 1 when the input is wrong, a fit
fails, or (scan) any point failed; 3 with ``--strict`` when any result is
doubtful. The outputs are written before a non-zero exit.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from recast.cli.common import catalog_option, console, emit_json, err_console, json_option, table
from recast.errors import RecastError


def _settings_options(function):
    options = [
        click.option("--backend", type=click.Choice(["auto", "numpy", "jax"]), default="auto", show_default=True, help="Tensor backend of the fits; auto: numpy (exact gradients from the compact likelihood, no compilation); jax: pyhf's likelihood compiled."),
        click.option("--optimizer", type=click.Choice(["scipy", "minuit"]), default="scipy", show_default=True, help="Optimizer (minuit needs iminuit and --method pyhf)."),
        click.option("--test-stat", type=click.Choice(["qtilde", "q"]), default="qtilde", show_default=True, help="Test statistic."),
        click.option("--normsys", type=click.Choice(["code4", "code1"]), default="code4", show_default=True, help="Interpolation code of normsys modifiers."),
        click.option("--histosys", type=click.Choice(["code4p", "code0", "code2"]), default="code4p", show_default=True, help="Interpolation code of histosys modifiers."),
        click.option("--method", type=click.Choice(["fast", "pyhf"]), default="fast", show_default=True, help="fast: cached, compiled fits; pyhf: plain pyhf.infer (the reference)."),
    ]
    for option in reversed(options):
        function = option(function)
    return function


def _input_options(function):
    options = [
        click.argument("workspace"),
        click.option("--patch", "patches", multiple=True, type=click.Path(dir_okay=False), help="A patch.*.json signal patch (repeatable: one point each)."),
        click.option("--patch-dir", type=click.Path(file_okay=False), help="Every patch.*.json in this folder."),
        click.option("--patchset", type=click.Path(dir_okay=False), help="A pyhf patchset.json (its digest is checked against WORKSPACE)."),
        click.option("--point", "points", multiple=True, help="Point name of the patchset or entry (repeatable; shell patterns allowed)."),
        click.option("--signal", type=click.Path(dir_okay=False), help="Signal yields per bin (YAML/JSON) to build a patch from."),
        click.option("--region", help="Which workspace of a catalog entry or archive with several (e.g. RegionA)."),
        click.option("--labels", help="Names of the numbers in point names, e.g. msb,mn2,mn1 for sbottom_1300_205_60 (an error when the count differs)."),
        catalog_option,
        _settings_options,
        json_option,
        click.option("--output", type=click.Path(dir_okay=False), help="Also write the JSON to this file."),
        click.option("--strict", is_flag=True, help="Exit with status 3 when a result is doubtful (fits that disagree or do not converge); default: a warning, status 0."),
    ]
    for option in reversed(options):
        function = option(function)
    return function


def _settings(options: dict):
    from recast.likelihood.infer import Settings

    return Settings(**{k: options[k] for k in ("backend", "optimizer", "test_stat", "normsys", "histosys", "method")})


def _load(options: dict, need_point: bool = True):
    """(likelihood, points) from plain files, a published archive or a catalog entry.

    Also sets ``options["analysis"]`` and ``options["region"]`` (named in plot titles and results).
    """
    from recast.likelihood.archive import is_archive, open_archive
    from recast.likelihood.entry import load_entry
    from recast.likelihood.signal import load_signal_yields
    from recast.likelihood.workspace import load_patch_file, load_workspace, relabel

    workspace = options["workspace"]
    patches = list(options["patches"])
    if options.get("patch_dir"):
        folder = Path(options["patch_dir"])
        found = sorted(folder.glob("patch.*.json"))
        if not found:
            raise click.BadParameter(f"no patch.*.json file in {folder}", param_hint="--patch-dir")
        patches += [str(p) for p in found]
    labels = [x.strip() for x in options["labels"].split(",") if x.strip()] if options.get("labels") else None
    region = options.get("region")
    if Path(workspace).is_file() and is_archive(workspace):
        if options.get("patchset"):
            raise click.UsageError(f"{workspace} is an archive: its patches are inside it; --patchset is for a workspace file")
        opened = open_archive(workspace, region, labels)
        click.get_current_context().call_on_close(opened.close)
        likelihood, region = opened.likelihood, opened.region
        options["analysis"] = Path(workspace).name
    elif Path(workspace).is_file():
        if region:
            raise click.UsageError("--region chooses a workspace of a catalog entry or an archive; WORKSPACE is one file already")
        likelihood = load_workspace(workspace, patchset=options.get("patchset"), labels=labels)
        options["analysis"] = str(Path(workspace).parent.name or workspace)
    elif "/" not in workspace and not workspace.endswith(".json"):
        likelihood = load_entry(workspace, options.get("catalog_dir"), region)
        if labels:
            likelihood.points = relabel(likelihood.points, labels, f"catalog entry {workspace}")
            likelihood.labels = labels
        options["analysis"] = workspace
    else:
        raise click.BadParameter(f"{workspace}: no such file (and not a catalog entry id)", param_hint="WORKSPACE")
    options["region"] = region
    points = [load_patch_file(p, labels=labels or likelihood.labels or None) for p in patches]
    if points and not likelihood.labels:
        likelihood.labels = list(points[0].values)
    if options.get("signal"):
        points.append(load_signal_yields(options["signal"], likelihood))
    if options.get("points"):
        points += likelihood.select(options["points"])
    if not points and need_point:
        if len(likelihood.points) == 1:
            points = list(likelihood.points)
        elif likelihood.points:
            raise click.UsageError(f"{likelihood.path} has {len(likelihood.points)} signal points: choose with --point NAME (or use `recast likelihood scan`)")
        else:
            raise click.UsageError("no signal given: use --patch FILE, --patchset FILE --point NAME, or --signal YIELDS")
    return likelihood, points


def _report_quality(records: list[dict], options: dict) -> None:
    """Every warning of every result on stderr; with --strict, exit 3 when a result is doubtful."""
    from recast.likelihood.quality import is_doubtful

    doubtful = [r for r in records if is_doubtful(r)]
    for record in records:
        for warning in record.get("warnings") or []:
            err_console.print(f"[yellow]warning:[/yellow] {warning}", highlight=False, soft_wrap=True)
    if doubtful:
        names = ", ".join(r["point"] for r in doubtful[:10]) + (", ..." if len(doubtful) > 10 else "")
        err_console.print(
            f"[yellow]{len(doubtful)} of {len(records)} result(s) doubtful[/yellow] ({names}): fit_quality in the JSON "
            "says why; compare with --method pyhf", highlight=False, soft_wrap=True,
        )
        if options.get("strict"):
            err_console.print("--strict: exit status 3", highlight=False)
            raise SystemExit(3)


def _write(document, options: dict) -> None:
    if options.get("output"):
        Path(options["output"]).write_text(json.dumps(document, indent=1, sort_keys=True) + "\n")
    if options.get("as_json"):
        emit_json(document)


def _one_or_many(records: list[dict]):
    return records[0] if len(records) == 1 else {"points": records}


def _guard(function):
    """Report recast's errors as click errors, so the group works on its own as well as under `recast`."""
    import functools

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        except RecastError as err:
            raise click.ClickException(str(err)) from None

    return wrapper


@click.group()
def likelihood():
    """CLs, upper limits and scans on published (HEPData) likelihoods."""


@likelihood.command("cls")
@_input_options
@click.option("--mu", type=float, default=1.0, show_default=True, help="Signal strength tested.")
@_guard
def cls_command(mu, **options):
    """CLs observed and expected (-2σ..+2σ) at --mu for each signal point."""
    from recast.likelihood.infer import cls

    settings = _settings(options)
    likelihood_, points = _load(options)
    records = [cls(likelihood_, point, mu, settings=settings) for point in points]
    _write(_one_or_many(records), options)
    if not options["as_json"]:
        console.print(table(f"CLs at mu = {mu:g}  ({likelihood_.path})", ["point", "CLs obs", "CLs exp (-2σ … +2σ)", "excluded obs", "excluded exp", "fits"],
                            [[r["point"], r["cls_obs"], r["cls_exp"], r["excluded_obs"], r["excluded_exp"], r["fit_quality"]["status"]] for r in records]))
    _report_quality(records, options)


def _parse_grid(text: str | None):
    if text is None:
        return None
    try:
        start, stop, count = text.split(":")
        import numpy

        return tuple(float(x) for x in numpy.linspace(float(start), float(stop), int(count)))
    except ValueError:
        raise click.BadParameter(f"{text!r}: expected START:STOP:POINTS, e.g. 0:5:41", param_hint="--grid") from None


@likelihood.command("limit")
@_input_options
@click.option("--level", type=float, default=0.05, show_default=True, help="CLs level (0.05: 95% CL).")
@click.option("--grid", default="0:5:41", show_default=True, help="Report pyhf's linear interpolation on this grid (START:STOP:POINTS) around each root.")
@click.option("--exact-root", is_flag=True, help="Report the roots of CLs(mu) = level themselves, not the grid interpolation.")
@_guard
def limit_command(level, grid, exact_root, **options):
    """95% CL upper limit on mu (root finding): observed and expected band."""
    from recast.likelihood.infer import upper_limit

    settings = _settings(options)
    likelihood_, points = _load(options)
    records = [upper_limit(likelihood_, point, level=level, grid=None if exact_root else _parse_grid(grid), settings=settings) for point in points]
    _write(_one_or_many(records), options)
    if not options["as_json"]:
        console.print(table(f"Upper limits at {100 * (1 - level):g}% CL ({likelihood_.path})", ["point", "mu_up obs", "mu_up exp (-2σ … +2σ)", "seconds"],
                            [[r["point"], r["mu_up_obs"], r["mu_up_exp"], r["seconds"]] for r in records]))
    _report_quality(records, options)


def _parse_where(items) -> dict[str, float]:
    where = {}
    for item in items:
        name, sep, value = item.partition("=")
        try:
            where[name.strip()] = float(value)
        except ValueError:
            sep = ""
        if not sep:
            raise click.BadParameter(f"{item!r}: expected NAME=VALUE, e.g. mn1=60", param_hint="--where")
    return where


@likelihood.command("scan")
@_input_options
@click.option("--mu", type=float, default=1.0, show_default=True, help="Signal strength tested.")
@click.option("--where", "where_items", multiple=True, help="Select points by parameter value, NAME=VALUE (repeatable).")
@click.option("--limits", is_flag=True, help="Also compute the upper limit of each point.")
@click.option("--workers", type=int, help="Processes (default: one per idle core, at most 2, from 8 points on (48 where workers cannot be forked); 1 on a busy machine).")
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False), help="Write the table as CSV.")
@click.option("--plot", type=click.Path(dir_okay=False), help="Write the exclusion plot (png, pdf, svg).")
@click.option("--x", "x_label", help="Parameter on the plot's x axis (default: the first).")
@click.option("--y", "y_label", help="Parameter on the plot's y axis (default: the second).")
@click.option("--warm-start", is_flag=True, help="Start each point from its neighbour's fit: ~20% faster, CLs within ~2e-4 of pyhf's.")
@click.option("--progress/--no-progress", default=True, show_default=True, help="Progress on stderr: a bar on a terminal, else a line every few points or 30 s.")
@click.option("--force-plot", is_flag=True, help="Draw contours even from too few points or off a grid (a warning instead of a refusal).")
@_guard
def scan_command(mu, where_items, limits, workers, csv_path, plot, x_label, y_label, warm_start, progress, force_plot, **options):
    """CLs (and limits) for every selected signal point; table, CSV and exclusion plot."""
    from recast.likelihood.plot import PlotWarning, exclusion_plot
    from recast.likelihood.scan import scan, write_scan

    settings = _settings(options)
    likelihood_, points = _load(options, need_point=False)
    where = _parse_where(where_items)
    selected = points or likelihood_.select(None, where)
    if points and where:
        selected = [p for p in points if all(abs(p.values.get(k, float("nan")) - v) < 1e-9 for k, v in where.items())]
    if not selected:
        raise click.UsageError("no signal point selected")
    result = scan(likelihood_, selected, mu=mu, limits=limits, workers=workers, progress=progress, warm_start=warm_start, settings=settings)
    result["analysis"], result["region"] = options.get("analysis"), options.get("region")
    _write(result, options)
    write_scan(result, csv_path=csv_path)
    if plot:
        import warnings

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", PlotWarning)
            exclusion_plot(result, plot, x_label, y_label, where=where or None, force=force_plot)
        for warning in caught:
            err_console.print(f"[yellow]warning:[/yellow] {warning.message}", highlight=False, soft_wrap=True)
    if not options["as_json"]:
        labels = result["labels"]
        rows = [[r["point"], *[r["values"].get(k) for k in labels], r.get("cls_obs"), r.get("cls_exp", [None] * 5)[2],
                 (r.get("fit_quality") or {}).get("status", ""), r.get("error", "")] for r in result["points"]]
        console.print(table(f"scan at mu = {mu:g} ({likelihood_.path}, {result['seconds']:.1f} s, {result['workers']} processes)",
                            ["point", *labels, "CLs obs", "CLs exp", "fits", "error"], rows))
    if result["failed"]:
        err_console.print(f"[red]{result['failed']} of {len(result['points'])} points failed[/red]; their errors are in the results")
    ok = [r for r in result["points"] if "error" not in r]
    try:
        _report_quality(ok, options)
    finally:
        if result["failed"]:
            raise SystemExit(1)
