"""Event selection: smeared objects, kinematic cuts, yields per region.

Detector response is a toy: lepton identification efficiencies and
Gaussian resolutions, b-jets with a Gaussian resolution, energy lost to the
neutrino of semileptonic b decays (which shifts mbb down and adds to the
missing transverse momentum), a b-tagging efficiency applied per jet, and a
Gaussian soft term in the missing transverse momentum. The random numbers of event ``i`` come from a
generator seeded by ``(SMEARING_SEED, i)``, so every event is treated the same
whichever other events are in the file, and reruns are identical.

The jet energy scale (JES) is varied by +-3% on the same smeared events to
give the signal's JES uncertainty per bin, which ``wh1lbb-patch`` uses.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import analysis as ana
from . import kinematics as kin
from .cli import InputError, add_mass_options, run, write_json
from .lhe import INVISIBLE_PDG_IDS, read_events

SMEARING_SEED = 20260313
LEPTON_RESOLUTION = {11: 0.02, 13: 0.03}  # relative, on the four-momentum
LEPTON_ID_EFFICIENCY = {11: 0.85, 13: 0.90}  # reconstruction, identification and isolation
SEMILEPTONIC_B_FRACTION = 0.2  # b-jets with a neutrino, per jet
SEMILEPTONIC_LOST_FRACTION = (0.1, 0.5)  # of the b momentum carried by that neutrino, uniform
JET_STOCHASTIC, JET_CONSTANT = 0.6, 0.05  # sigma(E)/E = a/sqrt(E/GeV) (+) c
SOFT_TERM_SIGMA = 10.0  # GeV, per component of the missing transverse momentum


@dataclass
class Reconstructed:
    """Reconstructed objects of all events, before any jet-energy-scale shift."""

    weights: np.ndarray  # (n,)
    n_leptons: np.ndarray  # (n,) selected leptons
    lepton: np.ndarray  # (n, 4) leading selected lepton, zeros if none
    jets: np.ndarray  # (n, k, 4) b-tagged jets within |eta| < 2.5, zero-padded
    met_xy: np.ndarray  # (n, 2) missing transverse momentum
    all_jets_xy: np.ndarray  # (n, 2) sum of px, py of every smeared b-jet


def _smear(rng, p4, sigma):
    return p4 * (1.0 + rng.normal(0.0, sigma))


def reconstruct(path: Path) -> Reconstructed:
    weights, n_leptons, leptons, jet_lists, met, all_jets = [], [], [], [], [], []
    for index, (weight, particles) in enumerate(read_events(path)):
        rng = np.random.default_rng([SMEARING_SEED, index])
        visible_xy = np.zeros(2)
        jets_xy = np.zeros(2)
        selected_leptons, tagged = [], []
        for particle in particles:
            pdg = abs(int(particle.id))
            if pdg in INVISIBLE_PDG_IDS:
                continue
            p4 = np.array([particle.e, particle.px, particle.py, particle.pz], dtype=float)
            if pdg in LEPTON_RESOLUTION:
                p4 = _smear(rng, p4, LEPTON_RESOLUTION[pdg])
                identified = rng.uniform() < LEPTON_ID_EFFICIENCY[pdg]
                if identified and kin.pt(p4) > ana.LEPTON_PT_MIN and abs(kin.eta(p4)) < ana.LEPTON_ABS_ETA_MAX:
                    selected_leptons.append(p4)
            elif pdg == 5:
                if rng.uniform() < SEMILEPTONIC_B_FRACTION:
                    p4 = p4 * (1.0 - rng.uniform(*SEMILEPTONIC_LOST_FRACTION))
                energy = max(p4[0], 1.0)
                p4 = _smear(rng, p4, math.hypot(JET_STOCHASTIC / math.sqrt(energy), JET_CONSTANT))
                jets_xy += p4[1:3]
                is_tagged = rng.uniform() < ana.BTAG_EFFICIENCY
                if is_tagged and abs(kin.eta(p4)) < ana.BJET_ABS_ETA_MAX:
                    tagged.append(p4)
            visible_xy += p4[1:3]
        selected_leptons.sort(key=lambda p: -kin.pt(p))
        weights.append(weight)
        n_leptons.append(len(selected_leptons))
        leptons.append(selected_leptons[0] if selected_leptons else np.zeros(4))
        jet_lists.append(tagged)
        met.append(-visible_xy + rng.normal(0.0, SOFT_TERM_SIGMA, 2))
        all_jets.append(jets_xy)
    if not weights:
        raise InputError(f"{path}: the LHE file has no events")
    k = max(2, max(len(j) for j in jet_lists))
    jets = np.zeros((len(jet_lists), k, 4))
    for i, tagged in enumerate(jet_lists):
        if tagged:
            jets[i, : len(tagged)] = tagged
    return Reconstructed(
        weights=np.array(weights),
        n_leptons=np.array(n_leptons),
        lepton=np.array(leptons),
        jets=jets,
        met_xy=np.array(met),
        all_jets_xy=np.array(all_jets),
    )


def event_variables(reco: Reconstructed, jet_scale: float = 1.0) -> dict[str, np.ndarray]:
    """The selection variables with jet energies scaled by ``jet_scale``."""
    jets = reco.jets * jet_scale
    jet_pt = kin.pt(jets)
    passing = jet_pt > ana.BJET_PT_MIN
    n_bjets = passing.sum(axis=1)
    # The two leading passing jets; events without two are cut on n_bjets anyway.
    order = np.argsort(np.where(passing, -jet_pt, np.inf), axis=1)[:, :2]
    b1 = np.take_along_axis(jets, order[:, 0, None, None], axis=1)[:, 0]
    b2 = np.take_along_axis(jets, order[:, 1, None, None], axis=1)[:, 0]
    met_xy = reco.met_xy - (jet_scale - 1.0) * reco.all_jets_xy
    return {
        "n_leptons": reco.n_leptons,
        "n_bjets": n_bjets,
        "met": np.hypot(met_xy[:, 0], met_xy[:, 1]),
        "mt": kin.transverse_mass(reco.lepton, met_xy),
        "mbb": kin.mass(b1 + b2),
        "mct": kin.contransverse_mass(b1, b2),
    }


def _within(values, interval):
    low, high = interval
    return (values >= low) & (values < high)


def preselected(v) -> np.ndarray:
    return (v["n_leptons"] == 1) & (v["n_bjets"] == 2) & (v["met"] > ana.MET_MIN)


def in_region(v, region: ana.Region) -> np.ndarray:
    in_window = _within(v["mbb"], ana.MBB_WINDOW)
    mbb_ok = in_window if region.mbb == "window" else ~in_window & (v["mbb"] >= ana.MBB_SIDEBAND_MIN)
    return preselected(v) & _within(v["mt"], region.mt) & _within(v["mct"], region.mct) & mbb_ok


def cutflow_steps(v) -> list[tuple[str, np.ndarray]]:
    """The cuts towards the signal regions, each including the ones before."""
    sr = ana.REGIONS_BY_NAME["SRLM"]
    steps = [
        ("all events", np.ones_like(v["met"], dtype=bool)),
        (f"1 lepton (pT > {ana.LEPTON_PT_MIN:g} GeV)", v["n_leptons"] == 1),
        (f"2 b-tagged jets (pT > {ana.BJET_PT_MIN:g} GeV)", v["n_bjets"] == 2),
        (f"ETmiss > {ana.MET_MIN:g} GeV", v["met"] > ana.MET_MIN),
        (f"mT > {sr.mt[0]:g} GeV", v["mt"] >= sr.mt[0]),
        (f"{ana.MBB_WINDOW[0]:g} < mbb < {ana.MBB_WINDOW[1]:g} GeV", _within(v["mbb"], ana.MBB_WINDOW)),
        (f"mCT > {sr.mct[0]:g} GeV", v["mct"] >= sr.mct[0]),
    ]
    cumulative, passed = [], np.ones_like(v["met"], dtype=bool)
    for name, mask in steps:
        passed = passed & mask
        cumulative.append((name, passed))
    return cumulative


def binned(values, weights, mask, edges):
    """Sum of weights and of squared weights per bin of ``values`` (last bin may be open)."""
    index = np.digitize(values[mask], edges[1:-1])
    sums = np.bincount(index, weights=weights[mask], minlength=len(edges) - 1)
    squares = np.bincount(index, weights=weights[mask] ** 2, minlength=len(edges) - 1)
    counts = np.bincount(index, minlength=len(edges) - 1)
    return sums, squares, counts


def select(path: Path, cross_section_pb: float, luminosity_fb: float) -> dict:
    """Yields per region, their MC statistical uncertainties, JES variations and a cutflow."""
    reco = reconstruct(path)
    # Yield = (fraction of the generated weight passing) x sigma x L.
    norm = cross_section_pb * 1000.0 * luminosity_fb / reco.weights.sum()
    nominal = event_variables(reco)
    shifted = {
        "up": event_variables(reco, 1.0 + ana.JET_ENERGY_SCALE_SHIFT),
        "down": event_variables(reco, 1.0 - ana.JET_ENERGY_SCALE_SHIFT),
    }
    regions = {}
    for region in ana.REGIONS:
        edges = np.array(region.mct_edges)
        sums, squares, counts = binned(nominal["mct"], reco.weights, in_region(nominal, region), edges)
        jes = {
            direction: (binned(v["mct"], reco.weights, in_region(v, region), edges)[0] * norm).tolist()
            for direction, v in shifted.items()
        }
        regions[region.name] = {
            "yields": (sums * norm).tolist(),
            "stat_uncertainties": (np.sqrt(squares) * norm).tolist(),
            "mc_events": counts.tolist(),
            "variations": {ana.JES: jes},
        }
    cutflow = {
        name: {"events": int(mask.sum()), "yield": float(reco.weights[mask].sum() * norm)}
        for name, mask in cutflow_steps(nominal)
    }
    return {"regions": regions, "cutflow": cutflow, "n_events": len(reco.weights)}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wh1lbb-select",
        description="Select Wh -> l nu bb + ETmiss events from an LHE file and write the yields per region "
        "(signal regions SRLM, SRMM, SRHM and control regions CRtt, CRw) as JSON.",
    )
    parser.add_argument("events", type=Path, metavar="EVENTS.lhe[.gz]", help="signal events, LHE, plain or gzipped")
    parser.add_argument("--name", required=True, help="name of the signal point, copied to the output")
    add_mass_options(parser, "of the signal point, recorded in the output")
    parser.add_argument("--cross-section-pb", type=float, required=True, metavar="X",
                        help="production cross-section times branching ratios of the sample, in pb")
    parser.add_argument("--luminosity-fb", type=float, required=True, metavar="L",
                        help=f"integrated luminosity, in fb^-1 (the analysis uses {ana.LUMINOSITY_FB:g})")
    parser.add_argument("--out", type=Path, required=True, metavar="yields.json", help="output JSON file")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def body() -> None:
        for option, value in (("--cross-section-pb", args.cross_section_pb), ("--luminosity-fb", args.luminosity_fb)):
            if not (math.isfinite(value) and value > 0):
                raise InputError(f"{option} must be a positive number, not {value:g}")
        result = select(args.events, args.cross_section_pb, args.luminosity_fb)
        write_json(
            args.out,
            {
                "name": args.name,
                "parameters": {"m_C1N2": args.m_c1n2, "m_N1": args.m_n1},
                "cross_section_pb": args.cross_section_pb,
                "luminosity_fb": args.luminosity_fb,
                "n_events": result["n_events"],
                "regions": result["regions"],
                "cutflow": result["cutflow"],
            },
        )

    return run("wh1lbb-select", body)


if __name__ == "__main__":
    raise SystemExit(main())
