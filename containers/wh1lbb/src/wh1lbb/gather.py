"""Collect the per-point results into a summary table and the limit plot.

The three input lists are aligned by position: the i-th yields file (from
``wh1lbb-select``), CLs file and upper-limit file belong to one signal point.
A point is excluded at 95% CL when its CLs at mu = 1 is below 0.05.
"""

from __future__ import annotations

import argparse
import csv
import math
from pathlib import Path

from . import analysis as ana
from .cli import InputError, load_json, run, write_json

CLS_THRESHOLD = 0.05
CSV_COLUMNS = (
    "name", "m_C1N2", "m_N1", "cross_section_pb",
    "cls_obs", "cls_exp_m2", "cls_exp_m1", "cls_exp", "cls_exp_p1", "cls_exp_p2",
    "mu_up_obs", "mu_up_exp_m2", "mu_up_exp_m1", "mu_up_exp", "mu_up_exp_p1", "mu_up_exp_p2",
    "excluded_obs", "excluded_exp",
)


def _number(document: dict, key: str, path: Path) -> float:
    if not isinstance(document, dict) or key not in document:
        raise InputError(f"{path}: {key}: missing; expected a finite number")
    value = document[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InputError(f"{path}: {key}: expected a finite number, got {value!r}")
    return float(value)


def _band(document: dict, key: str, path: Path) -> list[float]:
    """The five expected values, -2 sigma .. +2 sigma."""
    if not isinstance(document, dict) or key not in document:
        raise InputError(f"{path}: {key}: missing; expected a list of 5 numbers (-2 sigma .. +2 sigma)")
    values = document[key]
    if not isinstance(values, list) or len(values) != 5:
        raise InputError(f"{path}: {key}: expected a list of 5 numbers (-2 sigma .. +2 sigma), got {values!r}")
    return [_number({key: v}, key, path) for v in values]


def summarise_point(yields_path: Path, cls_path: Path, limits_path: Path) -> dict:
    yields = load_json(yields_path, "yields file")
    cls = load_json(cls_path, "CLs file")
    limits = load_json(limits_path, "upper-limit file")
    parameters = yields.get("parameters") if isinstance(yields, dict) else None
    if not isinstance(parameters, dict):
        raise InputError(f"{yields_path}: parameters: expected an object with m_C1N2 and m_N1 (as written by wh1lbb-select)")
    name = yields.get("name")
    if not isinstance(name, str):
        raise InputError(f"{yields_path}: name: expected a string, got {name!r}")
    cls_obs, cls_exp = _number(cls, "cls_obs", cls_path), _band(cls, "cls_exp", cls_path)
    return {
        "name": name,
        "m_C1N2": _number(parameters, "m_C1N2", yields_path),
        "m_N1": _number(parameters, "m_N1", yields_path),
        "cross_section_pb": _number(yields, "cross_section_pb", yields_path),
        "cls_obs": cls_obs,
        "cls_exp": cls_exp,
        "mu_up_obs": _number(limits, "mu_up_obs", limits_path),
        "mu_up_exp": _band(limits, "mu_up_exp", limits_path),
        "excluded_obs": cls_obs < CLS_THRESHOLD,
        "excluded_exp": cls_exp[2] < CLS_THRESHOLD,
    }


def summarise(yields: list[Path], cls: list[Path], limits: list[Path]) -> dict:
    if not (len(yields) == len(cls) == len(limits)):
        raise InputError(
            f"--yields, --cls and --limits must list one file per signal point each, "
            f"got {len(yields)}, {len(cls)} and {len(limits)} files"
        )
    points = [summarise_point(y, c, l) for y, c, l in zip(yields, cls, limits)]
    points.sort(key=lambda p: (p["m_C1N2"], p["m_N1"], p["name"]))
    return {"points": points}


def write_csv(path: Path, summary: dict) -> None:
    with open(path, "w", newline="") as stream:
        writer = csv.writer(stream, lineterminator="\n")
        writer.writerow(CSV_COLUMNS)
        for p in summary["points"]:
            writer.writerow(
                [p["name"], f"{p['m_C1N2']:g}", f"{p['m_N1']:g}", f"{p['cross_section_pb']:.6g}",
                 f"{p['cls_obs']:.6g}", *(f"{v:.6g}" for v in p["cls_exp"]),
                 f"{p['mu_up_obs']:.6g}", *(f"{v:.6g}" for v in p["mu_up_exp"]),
                 str(p["excluded_obs"]).lower(), str(p["excluded_exp"]).lower()]
            )


def plot_limits(path: Path, summary: dict) -> None:
    """95% CL upper limit on mu versus m(C1/N2), one set of curves per m(N1) (see :func:`limit_figure`)."""
    import matplotlib.pyplot as plt

    fig = limit_figure(summary)
    fig.tight_layout()
    # No "Software" entry: the image is the same whichever matplotlib wrote it, bar rendering.
    fig.savefig(path, format="png", metadata={"Software": None})
    plt.close(fig)


def limit_figure(summary: dict):
    """The limit plot as a matplotlib figure.

    Points are joined only along a line of fixed m(N1): one m(N1) gets the
    expected limit with its 1 and 2 sigma bands and the observed limit; several
    get, per m(N1), the observed (solid) and expected (dashed) limit with its
    1 sigma band, in one colour each. The log axis labels 2 and 5 times each
    power of ten as well, so that values can be read off.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib import ticker

    points = summary["points"]
    lsp_masses = sorted({p["m_N1"] for p in points})
    fig, ax = plt.subplots(figsize=(7, 5), dpi=100)
    for i, lsp in enumerate(lsp_masses):
        line = sorted((p for p in points if p["m_N1"] == lsp), key=lambda p: p["m_C1N2"])
        masses = [p["m_C1N2"] for p in line]
        expected = list(zip(*(p["mu_up_exp"] for p in line)))
        lsp_label = f"m($\\tilde\\chi^0_1$) = {lsp:g} GeV"
        if len(lsp_masses) == 1:
            ax.fill_between(masses, expected[0], expected[4], color="#ffdf00", label=r"Expected $\pm 2\sigma$",
                            linewidth=0)
            ax.fill_between(masses, expected[1], expected[3], color="#00c800", label=r"Expected $\pm 1\sigma$",
                            linewidth=0)
            ax.plot(masses, expected[2], "k--", label="Expected limit")
            ax.plot(masses, [p["mu_up_obs"] for p in line], "k-", marker="o", label="Observed limit")
        else:
            colour = f"C{i % 10}"
            ax.fill_between(masses, expected[1], expected[3], color=colour, alpha=0.2, linewidth=0)
            ax.plot(masses, expected[2], "--", color=colour, label=f"Expected ($\\pm 1\\sigma$), {lsp_label}")
            ax.plot(masses, [p["mu_up_obs"] for p in line], "-", color=colour, marker="o",
                    label=f"Observed, {lsp_label}")
    ax.axhline(1.0, color="red", linewidth=1.2, label=r"$\mu = 1$")
    ax.set_yscale("log")
    labels = ticker.FuncFormatter(lambda value, _: f"{value:g}")
    ax.yaxis.set_major_locator(ticker.LogLocator(base=10))
    ax.yaxis.set_major_formatter(labels)
    ax.yaxis.set_minor_locator(ticker.LogLocator(base=10, subs=(2.0, 5.0)))
    ax.yaxis.set_minor_formatter(labels)
    ax.set_xlabel(r"m($\tilde\chi^\pm_1$/$\tilde\chi^0_2$) [GeV]")
    ax.set_ylabel(r"95% CL upper limit on signal strength $\mu$")
    subtitle = (f", m($\\tilde\\chi^0_1$) = {lsp_masses[0]:g} GeV" if len(lsp_masses) == 1 else "")
    ax.set_title(f"{ana.ANALYSIS_ID}: {ana.TITLE}\n"
                 f"$\\sqrt{{s}}$ = 13 TeV, {ana.LUMINOSITY_FB:g} fb$^{{-1}}${subtitle}", fontsize=10)
    if points:
        # Room above the curves for the legend.
        low = min(min(min(p["mu_up_exp"]) for p in points), min(p["mu_up_obs"] for p in points), 1.0)
        high = max(max(max(p["mu_up_exp"]) for p in points), max(p["mu_up_obs"] for p in points), 1.0)
        ax.set_ylim(low / 1.5, high * (6.0 if len(lsp_masses) == 1 else 4.0 ** min(len(lsp_masses), 3)))
    ax.legend(loc="upper left", ncol=1 if len(lsp_masses) > 1 else 2, frameon=False, fontsize="small")
    ax.grid(True, which="major", alpha=0.3)
    ax.grid(True, which="minor", alpha=0.1)
    return fig


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wh1lbb-gather",
        description="Summarise the results of several signal points: summary.json, summary.csv and limits.png "
        "in --out-dir. The i-th file of --yields, --cls and --limits belong to the same signal point.",
    )
    parser.add_argument("--yields", type=Path, nargs="+", required=True, metavar="Y.json",
                        help="yields files written by wh1lbb-select, one per signal point")
    parser.add_argument("--cls", type=Path, nargs="+", required=True, metavar="C.json",
                        help='CLs files, one per signal point: {"cls_obs": x, "cls_exp": [5 values, -2..+2 sigma]}')
    parser.add_argument("--limits", type=Path, nargs="+", required=True, metavar="L.json",
                        help='upper-limit files, one per signal point: {"mu_up_obs": x, "mu_up_exp": [5 values]}')
    parser.add_argument("--out-dir", type=Path, required=True, metavar="DIR",
                        help="folder for summary.json, summary.csv and limits.png (created if missing)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def body() -> None:
        summary = summarise(args.yields, args.cls, args.limits)
        write_json(args.out_dir / "summary.json", summary)
        try:
            write_csv(args.out_dir / "summary.csv", summary)
            plot_limits(args.out_dir / "limits.png", summary)
        except OSError as error:
            raise InputError(f"{args.out_dir}: cannot write the summary: {error.strerror}") from None

    return run("wh1lbb-gather", body)


if __name__ == "__main__":
    raise SystemExit(main())
