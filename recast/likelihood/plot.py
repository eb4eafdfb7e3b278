"""Exclusion plots over two model parameters from a scan: CLs = 0.05 contours as physicists draw them.

Observed contour (solid), expected contour (dashed) with its ±1σ band
(yellow), on the points of the scan, each marked excluded or allowed (and
doubtful points, whose fits disagree, marked apart). Contours are drawn on a
triangulation of the scanned points in log CLs, which is close to linear
between neighbours; the triangulation is made in axes scaled to the unit
square and its flat triangles (those that bridge the edge of a non-convex
grid, like the kinematic diagonal of a mass plane) are masked, so no contour
is drawn where no point was computed.

A contour needs a grid: fewer than :data:`MIN_CONTOUR_POINTS` points, or
fewer than three distinct values on an axis, draws the points only and
warns (:class:`PlotWarning`); ``force=True`` draws the contours anyway, still
with the warning.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any

from recast.likelihood.errors import LikelihoodError

MIN_CONTOUR_POINTS = 10


class PlotWarning(UserWarning):
    """The plot was drawn, but without contours (or with contours from too few points)."""


def _log_ratio(value: float, level: float) -> float:
    return math.log10(max(value, 1e-300) / level)


def _contour_problem(xs, ys) -> str | None:
    import numpy as np

    if len(xs) < MIN_CONTOUR_POINTS:
        return f"{len(xs)} points; a contour needs at least {MIN_CONTOUR_POINTS} on a grid"
    if len(np.unique(xs)) < 3 or len(np.unique(ys)) < 3:
        return f"the points span {len(np.unique(xs))} x value(s) and {len(np.unique(ys))} y value(s); a contour needs a 2D grid (at least 3 of each)"
    return None


def default_title(result: dict[str, Any], where: dict[str, float] | None, level: float, units: str) -> str:
    """'<analysis>, <region>: 95% CL exclusion at mu = 1 (mn1 = 60 GeV)'."""
    names = [str(n) for n in (result.get("analysis"), result.get("region")) if n]
    if not names and result.get("workspace"):
        names = [Path(result["workspace"]).parent.name or Path(result["workspace"]).name]
    unit = f" {units}" if units else ""
    fixed = ", ".join(f"{k} = {v:g}{unit}" for k, v in (where or {}).items())
    head = ", ".join(names)
    body = f"{100 * (1 - level):g}% CL exclusion (CLs) at μ = {result.get('mu', 1):g}"
    return (f"{head}: " if head else "") + body + (f"\n{fixed}" if fixed else "")


def exclusion_plot(
    result: dict[str, Any],
    path: str | Path,
    x: str | None = None,
    y: str | None = None,
    *,
    where: dict[str, float] | None = None,
    level: float = 0.05,
    title: str | None = None,
    units: str = "GeV",
    force: bool = False,
) -> Path:
    """Write the exclusion plot of a :func:`~recast.likelihood.scan.scan` result to ``path`` (png, pdf, svg).

    ``x``/``y``: the two parameters (default: the first two labels);
    ``where``: fix the other parameters (``{"mn1": 60}``), named in the title.
    The title names the result's ``analysis`` and ``region`` when it has them.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.tri as mtri
    import numpy as np
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    labels = list(result.get("labels") or [])
    x = x or (labels[0] if labels else None)
    y = y or (labels[1] if len(labels) > 1 else None)
    if not x or not y:
        raise LikelihoodError(f"exclusion plot: the scan has parameters {labels}; two are needed (give x and y)")
    rows = [r for r in result["points"] if "error" not in r and x in r.get("values", {}) and y in r.get("values", {})]
    for label, value in (where or {}).items():
        rows = [r for r in rows if abs(r["values"].get(label, float("nan")) - value) < 1e-9]
    if not rows:
        raise LikelihoodError(f"exclusion plot: no successful point with {x} and {y}{' and ' + str(where) if where else ''}")
    xs = np.array([r["values"][x] for r in rows], dtype=float)
    ys = np.array([r["values"][y] for r in rows], dtype=float)
    obs = np.array([_log_ratio(r["cls_obs"], level) for r in rows])
    exp = np.array([[_log_ratio(c, level) for c in r["cls_exp"]] for r in rows])
    doubtful = np.array([(r.get("fit_quality") or {}).get("status") == "doubtful" for r in rows])

    figure, axes = plt.subplots(figsize=(6.4, 5.4), constrained_layout=True)
    handles = []
    problem = _contour_problem(xs, ys)
    if problem:
        warnings.warn(PlotWarning(f"exclusion plot {path}: {problem}; " + ("contours drawn anyway (--force-plot)" if force else "points drawn without contours")), stacklevel=2)
    if problem is None or force:
        # scaled to the unit square, so that "flat" means the same on both axes
        span_x, span_y = np.ptp(xs) or 1.0, np.ptp(ys) or 1.0
        triangulation = mtri.Triangulation((xs - xs.min()) / span_x, (ys - ys.min()) / span_y)
        triangulation.set_mask(mtri.TriAnalyzer(triangulation).get_flat_tri_mask(min_circle_ratio=0.05))
        triangulation = mtri.Triangulation(xs, ys, triangulation.triangles, mask=triangulation.mask)
        # the ±1σ band: what the -1σ expectation excludes, less what the +1σ one excludes
        axes.tricontourf(triangulation, exp[:, 1], levels=[-1e9, 0], colors=["#ffdd44"])
        axes.tricontourf(triangulation, exp[:, 3], levels=[-1e9, 0], colors=[axes.get_facecolor()])
        axes.tricontour(triangulation, exp[:, 2], levels=[0], colors="k", linestyles="--", linewidths=1.5)
        axes.tricontour(triangulation, obs, levels=[0], colors="#c00000", linewidths=2.2)
        handles += [
            Line2D([], [], color="#c00000", lw=2.2, label=f"Observed limit ({100 * (1 - level):g}% CL)"),
            Line2D([], [], color="k", ls="--", lw=1.5, label="Expected limit"),
            Patch(color="#ffdd44", label=r"Expected $\pm 1\sigma$"),
        ]
    excluded = obs < 0
    clean = ~doubtful
    axes.scatter(xs[excluded & clean], ys[excluded & clean], s=10, c="#c00000", marker="o", zorder=3)
    axes.scatter(xs[~excluded & clean], ys[~excluded & clean], s=10, facecolors="none", edgecolors="0.4", marker="o", zorder=3)
    handles += [
        Line2D([], [], ls="", marker="o", ms=4, color="#c00000", label="Point excluded (observed)"),
        Line2D([], [], ls="", marker="o", ms=4, mfc="none", mec="0.4", label="Point allowed (observed)"),
    ]
    if doubtful.any():
        axes.scatter(xs[doubtful], ys[doubtful], s=30, c="#7030a0", marker="x", zorder=4)
        handles.append(Line2D([], [], ls="", marker="x", ms=6, color="#7030a0", label="Doubtful fit (see fit_quality)"))
    axes.legend(handles=handles, loc="best", framealpha=0.85, fontsize=8)
    axes.margins(0.03)
    unit = f" [{units}]" if units else ""
    axes.set_xlabel(f"{x}{unit}")
    axes.set_ylabel(f"{y}{unit}")
    axes.set_title(title or default_title(result, where, level, units), fontsize=10)
    path = Path(path)
    figure.savefig(path, dpi=150)
    plt.close(figure)
    return path
