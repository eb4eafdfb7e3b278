"""The archived background-only workspace of the analysis, as the script that writes it.

Usage: ``python -m wh1lbb.workspace OUT.json``.

The numbers are invented for this toy (they are no published result) but
shaped like a real one-lepton search: ttbar dominates at low mT and low mCT,
W+jets and single top share the tails, and "other" (ttV, dibosons, Vh)
matters only at high mT. The selection is looser than a real analysis (no
jet-multiplicity veto, no ETmiss significance), so the signal regions keep
more background. The ttbar and W+jets normalisations float freely and are
fixed by the control regions CRtt and CRw; the signal regions only see their
extrapolation uncertainties. Observed data are the background prediction
moved by a fixed list of pulls (in units of its Poisson error) and rounded,
so the file is regenerated identically.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from . import analysis as ana
from .cli import run, write_json

SAMPLES = ("ttbar", "wjets", "singletop", "other")
FREE_NORMALISATIONS = {"ttbar": "mu_ttbar", "wjets": "mu_W"}
# Normalised from theory, so the luminosity uncertainty applies.
LUMI_SAMPLES = ("singletop", "other")

# Expected background per channel and bin, before the fit.
YIELDS = {
    "SRLM": {"ttbar": [24.0, 11.5, 5.2], "wjets": [5.1, 3.3, 2.6], "singletop": [5.6, 3.4, 2.2], "other": [1.4, 1.0, 0.8]},
    "SRMM": {"ttbar": [13.5, 6.8, 3.6], "wjets": [3.6, 2.7, 2.3], "singletop": [3.5, 2.3, 1.6], "other": [1.2, 0.9, 0.8]},
    "SRHM": {"ttbar": [10.5, 6.6, 5.8], "wjets": [4.4, 4.2, 5.4], "singletop": [3.1, 2.6, 3.2], "other": [2.0, 2.2, 3.4]},
    "CRtt": {"ttbar": [412.0], "wjets": [31.0], "singletop": [38.0], "other": [9.5]},
    "CRw": {"ttbar": [41.0], "wjets": [176.0], "singletop": [22.0], "other": [12.0]},
}

# Relative MC statistical uncertainty of the summed background, per bin.
MC_STAT = {"SRLM": [0.08, 0.11, 0.15], "SRMM": [0.10, 0.14, 0.18], "SRHM": [0.12, 0.15, 0.18], "CRtt": [0.02], "CRw": [0.04]}

# Relative up-shift per bin (the down-shift is its mirror unless given).
JES_SHIFT = {"SRLM": [0.04, 0.06, 0.08], "SRMM": [0.05, 0.07, 0.09], "SRHM": [0.06, 0.08, 0.10], "CRtt": [0.03], "CRw": [0.05]}
TTBAR_MODELLING = {"SRLM": [0.12, 0.18, 0.25], "SRMM": [0.15, 0.22, 0.30], "SRHM": [0.20, 0.28, 0.35], "CRtt": [0.03], "CRw": [0.10]}
WJETS_THEORY = {"SRLM": [0.15, 0.20, 0.25], "SRMM": [0.18, 0.22, 0.28], "SRHM": [0.20, 0.25, 0.30], "CRtt": [0.10], "CRw": [0.02]}
BTAG_SHIFT = {"SRLM": 0.08, "SRMM": 0.08, "SRHM": 0.09, "CRtt": 0.07, "CRw": 0.06}
CROSS_SECTION_UNCERTAINTY = {"singletop": ("singletop_xsec", 0.20), "other": ("other_xsec", 0.30)}

# Observed data = round(B + pull * sqrt(B)): a mild excess in SRHM, deficits elsewhere.
DATA_PULLS = {"SRLM": [-0.3, 0.4, -0.6], "SRMM": [0.2, -0.5, 0.1], "SRHM": [-0.2, 0.3, 0.6], "CRtt": [0.3], "CRw": [-0.4]}


def _scaled(nominal: list[float], relative: list[float], sign: float) -> list[float]:
    return [round(n * (1.0 + sign * r), 4) for n, r in zip(nominal, relative)]


def _histosys(name: str, nominal: list[float], relative: list[float]) -> dict:
    return {
        "name": name,
        "type": "histosys",
        "data": {"hi_data": _scaled(nominal, relative, +1), "lo_data": _scaled(nominal, relative, -1)},
    }


def _normsys(name: str, relative: float) -> dict:
    return {"name": name, "type": "normsys", "data": {"hi": 1.0 + relative, "lo": 1.0 - relative}}


def background_sample(channel: str, sample: str, total: list[float]) -> dict:
    nominal = YIELDS[channel][sample]
    modifiers = []
    if sample in FREE_NORMALISATIONS:
        modifiers.append({"name": FREE_NORMALISATIONS[sample], "type": "normfactor", "data": None})
    if sample in LUMI_SAMPLES:
        modifiers.append({"name": ana.LUMI, "type": "lumi", "data": None})
    modifiers.append(_histosys(ana.JES, nominal, JES_SHIFT[channel]))
    modifiers.append(_normsys(ana.BTAG, BTAG_SHIFT[channel]))
    modifiers.append(_normsys(ana.LEPTON_EFF, ana.LEPTON_EFF_UNCERTAINTY))
    if sample == "ttbar":
        modifiers.append(_histosys("ttbar_modelling", nominal, TTBAR_MODELLING[channel]))
    if sample == "wjets":
        modifiers.append(_histosys("wjets_theory", nominal, WJETS_THEORY[channel]))
    if sample in CROSS_SECTION_UNCERTAINTY:
        modifiers.append(_normsys(*CROSS_SECTION_UNCERTAINTY[sample]))
    # pyhf adds same-named staterrors of the samples in quadrature: shares
    # proportional to sqrt(yield), as for Poisson MC counts, add up to MC_STAT x total.
    shares = [round(r * t * math.sqrt(n / t), 4) for r, t, n in zip(MC_STAT[channel], total, nominal)]
    modifiers.append({"name": ana.staterror_name(channel), "type": "staterror", "data": shares})
    return {"name": sample, "data": nominal, "modifiers": modifiers}


def observed(channel: str, total: list[float]) -> list[float]:
    return [float(max(0, round(b + pull * math.sqrt(b)))) for b, pull in zip(total, DATA_PULLS[channel])]


def build() -> dict:
    channels, observations = [], []
    for region in ana.REGIONS:
        yields = YIELDS[region.name]
        total = [sum(bins) for bins in zip(*(yields[s] for s in SAMPLES))]
        if len(total) != region.n_bins:
            raise AssertionError(f"{region.name}: {len(total)} bins of background, {region.n_bins} in the selection")
        channels.append({"name": region.name, "samples": [background_sample(region.name, s, total) for s in SAMPLES]})
        observations.append({"name": region.name, "data": observed(region.name, total)})
    parameters = [
        {
            "name": ana.LUMI,
            "auxdata": [1.0],
            "sigmas": [ana.LUMI_RELATIVE_UNCERTAINTY],
            "bounds": [[1.0 - 5 * ana.LUMI_RELATIVE_UNCERTAINTY, 1.0 + 5 * ana.LUMI_RELATIVE_UNCERTAINTY]],
            "inits": [1.0],
        },
        {"name": "mu_ttbar", "bounds": [[0.0, 10.0]], "inits": [1.0]},
        {"name": "mu_W", "bounds": [[0.0, 10.0]], "inits": [1.0]},
    ]
    return {
        "version": "1.0.0",
        "channels": channels,
        "observations": observations,
        "measurements": [{"name": "NormalMeasurement", "config": {"poi": ana.SIGNAL_NORM, "parameters": parameters}}],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m wh1lbb.workspace",
        description="Write the archived background-only pyhf workspace of the wh1lbb analysis.",
    )
    parser.add_argument("out", type=Path, metavar="OUT", help="output JSON file (catalog/wh1lbb/likelihood/BkgOnly.json)")
    args = parser.parse_args(argv)

    return run("python -m wh1lbb.workspace", lambda: write_json(args.out, build()))


if __name__ == "__main__":
    raise SystemExit(main())
