"""Exclusion plots over two model parameters from a scan: CLs = 0.05 contours as physicists draw them.

Observed contour (solid), expected contour (dashed) with its ±1σ band
(yellow), on the points of the scan; contours are drawn on a triangulation of
the scanned points in log CLs, which is close to linear between neighbours.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from recast.likelihood.errors import LikelihoodError


def _log_ratio(value: float, level: float) -> float:
    return math.log10(max(value, 1e-300) / level)


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
) -> Path:
    """Write the exclusion plot of a :func:`~recast.likelihood.scan.scan` result to ``path`` (png, pdf, svg).

    ``x``/``y``: the two parameters (default: the first two labels);
    ``where``: fix the other parameters (``{"mn1": 60}``).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.tri as mtri
    import numpy as np

    labels = list(result.get("labels") or [])
    x = x or (labels[0] if labels else None)
    y = y or (labels[1] if len(labels) > 1 else None)
    if not x or not y:
        raise LikelihoodError(f"exclusion plot: the scan has parameters {labels}; two are needed (give x and y)")
    rows = [r for r in result["points"] if "error" not in r and x in r.get("values", {}) and y in r.get("values", {})]
    for label, value in (where or {}).items():
        rows = [r for r in rows if abs(r["values"].get(label, float("nan")) - value) < 1e-9]
    if len(rows) < 3:
        raise LikelihoodError(f"exclusion plot: {len(rows)} successful points with {x} and {y}{' and ' + str(where) if where else ''}; at least 3 are needed")
    xs = np.array([r["values"][x] for r in rows], dtype=float)
    ys = np.array([r["values"][y] for r in rows], dtype=float)
    obs = np.array([_log_ratio(r["cls_obs"], level) for r in rows])
    exp = np.array([[_log_ratio(c, level) for c in r["cls_exp"]] for r in rows])
    triangulation = mtri.Triangulation(xs, ys)

    figure, axes = plt.subplots(figsize=(6.4, 5.2), constrained_layout=True)
    # the ±1σ band: what the -1σ expectation excludes, less what the +1σ one excludes
    # (painted over in the background colour; contours and points are drawn after)
    axes.tricontourf(triangulation, exp[:, 1], levels=[-1e9, 0], colors=["#ffdd44"])
    axes.tricontourf(triangulation, exp[:, 3], levels=[-1e9, 0], colors=[axes.get_facecolor()])
    axes.tricontour(triangulation, exp[:, 2], levels=[0], colors="k", linestyles="--", linewidths=1.5)
    axes.tricontour(triangulation, obs, levels=[0], colors="#c00000", linewidths=2.2)
    excluded = obs < 0
    axes.scatter(xs[excluded], ys[excluded], s=8, c="#c00000", marker="o", zorder=3)
    axes.scatter(xs[~excluded], ys[~excluded], s=8, facecolors="none", edgecolors="0.4", marker="o", zorder=3)
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    axes.legend(
        handles=[
            Line2D([], [], color="#c00000", lw=2.2, label="Observed limit (95% CL)"),
            Line2D([], [], color="k", ls="--", lw=1.5, label="Expected limit"),
            Patch(color="#ffdd44", label=r"Expected $\pm 1\sigma$"),
        ],
        loc="best",
        framealpha=0.85,
    )
    axes.margins(0.03)
    unit = f" [{units}]" if units else ""
    axes.set_xlabel(f"{x}{unit}")
    axes.set_ylabel(f"{y}{unit}")
    fixed = ", ".join(f"{k} = {v:g}" for k, v in (where or {}).items())
    axes.set_title(title or f"CLs = {level:g} at mu = {result.get('mu', 1):g}" + (f" ({fixed})" if fixed else ""), fontsize=10)
    path = Path(path)
    figure.savefig(path, dpi=150)
    plt.close(figure)
    return path
