"""A deterministic toy parton-level generator for pp -> chargino1 neutralino2 -> Wh + 2 LSP.

Not a matrix-element generator: the pair is produced with a simple falling
mass spectrum above threshold, a Gaussian rapidity and a flat production
angle, with no transverse momentum (no initial-state radiation). The decays
C1 -> W N1, W -> l nu (l = e or mu), N2 -> h N1, h -> b bbar are isotropic
two-body decays in the rest frames, boosted to the lab, with on-shell W and h
(no Breit-Wigner). Events have unit weight; the cross-section is not computed
here and is given to ``wh1lbb-select`` instead.
"""

from __future__ import annotations

import argparse
import gzip
import io
from pathlib import Path

import numpy as np

from . import kinematics as kin
from .analysis import SQRT_S_GEV
from .cli import InputError, add_mass_options, run

M_W = 80.379
M_H = 125.0
M_B = 4.7
LEPTON_MASS = {11: 0.000511, 13: 0.10566}
# u dbar -> C1+ N2 is more frequent than d ubar -> C1- N2 in pp.
FRACTION_C1_PLUS = 0.62
# Shape of the pair-mass spectrum above threshold: gamma(k, theta * 2M).
PAIR_MASS_SHAPE, PAIR_MASS_SCALE = 2.0, 0.12
RAPIDITY_WIDTH = 0.9
ALPHA_QED, ALPHA_QCD = 7.8186e-3, 0.118

PDG = {"C1": 1000024, "N2": 1000023, "N1": 1000022, "W": 24, "h": 25, "b": 5, "u": 2, "d": 1}


def generate(m_c1n2: float, m_n1: float, n_events: int, seed: int) -> dict[str, np.ndarray]:
    """Generate ``n_events``; returns per-particle four-vectors and per-event ids.

    The same (masses, n_events, seed) always give the same events.
    """
    if m_c1n2 < m_n1 + M_H:
        raise InputError(f"--m-c1n2 {m_c1n2:g} is too light for N2 -> h N1: need at least m(N1) + {M_H:g} GeV")
    rng = np.random.default_rng(seed)
    n = n_events
    beam = SQRT_S_GEV / 2.0

    threshold = 2.0 * m_c1n2
    sqrt_shat = threshold + rng.gamma(PAIR_MASS_SHAPE, PAIR_MASS_SCALE * threshold, n)
    sqrt_shat = np.minimum(sqrt_shat, 0.9 * SQRT_S_GEV)
    tau = (sqrt_shat / SQRT_S_GEV) ** 2
    y_max = -0.5 * np.log(tau)
    y = np.clip(rng.normal(0.0, RAPIDITY_WIDTH, n), -0.99 * y_max, 0.99 * y_max)
    x1, x2 = np.sqrt(tau) * np.exp(y), np.sqrt(tau) * np.exp(-y)
    zeros = np.zeros(n)
    parton1 = np.stack([x1 * beam, zeros, zeros, x1 * beam], axis=-1)
    parton2 = np.stack([x2 * beam, zeros, zeros, -x2 * beam], axis=-1)

    p_star = kin.two_body_momentum(sqrt_shat, m_c1n2, m_c1n2)
    direction = kin.isotropic_directions(rng, n)
    beta_z = np.stack([zeros, zeros, np.tanh(y)], axis=-1)
    chargino = kin.boost(kin.four_vector(p_star, direction, m_c1n2), beta_z)
    neutralino2 = kin.boost(kin.four_vector(p_star, -direction, m_c1n2), beta_z)

    w, lsp1 = kin.decay(rng, chargino, m_c1n2, M_W, m_n1)
    higgs, lsp2 = kin.decay(rng, neutralino2, m_c1n2, M_H, m_n1)
    lepton_flavour = np.where(rng.uniform(size=n) < 0.5, 11, 13)
    lepton_mass = np.where(lepton_flavour == 11, LEPTON_MASS[11], LEPTON_MASS[13])
    lepton, neutrino = kin.decay(rng, w, M_W, lepton_mass, 0.0)
    b, bbar = kin.decay(rng, higgs, M_H, M_B, M_B)

    charge = np.where(rng.uniform(size=n) < FRACTION_C1_PLUS, 1, -1)
    quark_first = rng.uniform(size=n) < 0.5
    return {
        "momenta": np.stack(
            [parton1, parton2, chargino, neutralino2, w, lsp1, higgs, lsp2, lepton, neutrino, b, bbar], axis=1
        ),
        "charge": charge,
        "lepton_flavour": lepton_flavour,
        "quark_first": quark_first,
        "sqrt_shat": sqrt_shat,
    }


# (status, mother1, mother2, color1, color2) of the 12 particles, in order.
_TOPOLOGY = (
    (-1, 0, 0, None, None),  # incoming parton 1
    (-1, 0, 0, None, None),  # incoming parton 2
    (2, 1, 2, 0, 0),  # C1
    (2, 1, 2, 0, 0),  # N2
    (2, 3, 3, 0, 0),  # W
    (1, 3, 3, 0, 0),  # N1 from C1
    (2, 4, 4, 0, 0),  # h
    (1, 4, 4, 0, 0),  # N1 from N2
    (1, 5, 5, 0, 0),  # lepton
    (1, 5, 5, 0, 0),  # neutrino
    (1, 7, 7, 502, 0),  # b
    (1, 7, 7, 0, 502),  # bbar
)


def _pdg_ids(charge: int, lepton_flavour: int, quark_first: bool) -> list[int]:
    # C1+ from u dbar decays to W+ -> l+ nu; C1- from d ubar to W- -> l- nubar.
    quark, antiquark = (PDG["u"], -PDG["d"]) if charge > 0 else (PDG["d"], -PDG["u"])
    partons = [quark, antiquark] if quark_first else [antiquark, quark]
    return [
        *partons,
        charge * PDG["C1"],
        PDG["N2"],
        charge * PDG["W"],
        PDG["N1"],
        PDG["h"],
        PDG["N1"],
        -charge * lepton_flavour,
        charge * (lepton_flavour + 1),
        PDG["b"],
        -PDG["b"],
    ]


def _parton_colours(pdg_id: int) -> tuple[int, int]:
    return (501, 0) if pdg_id > 0 else (0, 501)


def to_lhe(events: dict[str, np.ndarray], m_c1n2: float, m_n1: float, seed: int) -> str:
    """The events as Les Houches Event File text (version 3.0)."""
    n = len(events["charge"])
    out = io.StringIO()
    out.write('<LesHouchesEvents version="3.0">\n<header>\n')
    out.write(
        f"<!-- wh1lbb-generate toy: pp -> C1 N2 -> W(l nu) N1 h(b bbar) N1; "
        f"m_C1N2={m_c1n2:g} GeV m_N1={m_n1:g} GeV events={n} seed={seed}; "
        f"unit weights, cross-section not computed -->\n</header>\n"
    )
    beam = SQRT_S_GEV / 2.0
    out.write("<init>\n")
    out.write(f"2212 2212 {beam:.1f} {beam:.1f} 0 0 0 0 3 1\n")
    out.write("1.0 0.0 1.0 1\n</init>\n")
    masses = (None, None, m_c1n2, m_c1n2, M_W, m_n1, M_H, m_n1, None, 0.0, M_B, M_B)
    for i in range(n):
        ids = _pdg_ids(int(events["charge"][i]), int(events["lepton_flavour"][i]), bool(events["quark_first"][i]))
        out.write(f"<event>\n12 1 1.0 {events['sqrt_shat'][i]:.5e} {ALPHA_QED:.4e} {ALPHA_QCD:.4e}\n")
        for j, (status, mother1, mother2, col1, col2) in enumerate(_TOPOLOGY):
            if col1 is None:
                col1, col2 = _parton_colours(ids[j])
            e, px, py, pz = events["momenta"][i, j]
            m = masses[j]
            if m is None:  # incoming partons are massless; leptons have their flavour's mass
                m = 0.0 if j < 2 else LEPTON_MASS[abs(ids[j])]
            out.write(
                f"{ids[j]} {status} {mother1} {mother2} {col1} {col2} "
                f"{px:.5e} {py:.5e} {pz:.5e} {e:.5e} {m:.5e} 0 9\n"
            )
        out.write("</event>\n")
    out.write("</LesHouchesEvents>\n")
    return out.getvalue()


def write_lhe(path: Path, text: str) -> None:
    """Write plain or gzipped (``.gz``) LHE; gzip without name or time, so reruns are byte-identical."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = text.encode()
    if path.suffix == ".gz":
        with open(path, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as zipped:
            zipped.write(data)
    else:
        path.write_bytes(data)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wh1lbb-generate",
        description="Generate toy parton-level LHE events for pp -> C1 N2 -> W(l nu) N1 h(b bbar) N1 at 13 TeV.",
    )
    add_mass_options(parser, "used in the decays")
    parser.add_argument("--events", type=int, required=True, metavar="N", help="number of events to generate")
    parser.add_argument("--seed", type=int, required=True, metavar="S",
                        help="random seed; the same seed and masses give byte-identical output")
    parser.add_argument("--out", type=Path, required=True, metavar="FILE.lhe.gz",
                        help="output LHE file; gzipped when the name ends in .gz")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def body() -> None:
        if args.events < 1:
            raise InputError(f"--events must be at least 1, not {args.events}")
        if args.m_n1 < 0:
            raise InputError(f"--m-n1 must not be negative, not {args.m_n1:g}")
        if args.seed < 0:
            raise InputError(f"--seed must not be negative, not {args.seed}")
        events = generate(args.m_c1n2, args.m_n1, args.events, args.seed)
        try:
            write_lhe(args.out, to_lhe(events, args.m_c1n2, args.m_n1, args.seed))
        except OSError as error:
            raise InputError(f"{args.out}: cannot write the LHE file: {error.strerror}") from None

    return run("wh1lbb-generate", body)


if __name__ == "__main__":
    raise SystemExit(main())
