"""What the selection, the background workspace and the signal patch must agree on.

Region names, bin edges and systematic names live here only, so that the
yields written by ``selection`` always line up with the channels that
``workspace`` archives and that ``patch`` adds the signal to.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

ANALYSIS_ID = "wh1lbb"
TITLE = r"$\tilde\chi^\pm_1\tilde\chi^0_2 \to Wh \to \ell\nu\, b\bar{b} + E_T^{miss}$"
SQRT_S_GEV = 13000.0
LUMINOSITY_FB = 139.0

# Preselection shared by every region.
LEPTON_PT_MIN = 25.0
LEPTON_ABS_ETA_MAX = 2.5
BJET_PT_MIN = 25.0
BJET_ABS_ETA_MAX = 2.5
BTAG_EFFICIENCY = 0.70
MET_MIN = 200.0
MBB_WINDOW = (100.0, 140.0)
MBB_SIDEBAND_MIN = 50.0

INF = math.inf


@dataclass(frozen=True)
class Region:
    """An event category: intervals on mT and mCT, an mbb choice, bins in mCT.

    Intervals are half-open, [low, high). ``mbb`` is ``"window"`` (inside
    ``MBB_WINDOW``) or ``"sideband"`` (outside it, above ``MBB_SIDEBAND_MIN``).
    """

    name: str
    mt: tuple[float, float]
    mct: tuple[float, float]
    mbb: str
    mct_edges: tuple[float, ...]

    @property
    def n_bins(self) -> int:
        return len(self.mct_edges) - 1

    @property
    def is_signal_region(self) -> bool:
        return self.name.startswith("SR")


_SR_MCT_EDGES = (180.0, 230.0, 280.0, INF)

REGIONS: tuple[Region, ...] = (
    Region("SRLM", mt=(100.0, 160.0), mct=(180.0, INF), mbb="window", mct_edges=_SR_MCT_EDGES),
    Region("SRMM", mt=(160.0, 240.0), mct=(180.0, INF), mbb="window", mct_edges=_SR_MCT_EDGES),
    Region("SRHM", mt=(240.0, INF), mct=(180.0, INF), mbb="window", mct_edges=_SR_MCT_EDGES),
    # ttbar: b-jets from two top decays stay below the mCT endpoint near 135 GeV.
    Region("CRtt", mt=(100.0, INF), mct=(0.0, 180.0), mbb="window", mct_edges=(0.0, 180.0)),
    # W+jets: the W is on shell (low mT) and the bb pair is not from a Higgs.
    Region("CRw", mt=(50.0, 100.0), mct=(180.0, INF), mbb="sideband", mct_edges=(180.0, INF)),
)
REGIONS_BY_NAME = {region.name: region for region in REGIONS}

# Systematic uncertainties shared by signal and backgrounds (same modifier
# name = fully correlated in pyhf).
LUMI = "lumi"
LUMI_RELATIVE_UNCERTAINTY = 0.017
JES = "JES"
BTAG = "btag"
LEPTON_EFF = "lep_eff"
SIGNAL_NORM = "mu_SIG"
JET_ENERGY_SCALE_SHIFT = 0.03
# Two tagged jets, each with a 5% relative uncertainty on its efficiency.
BTAG_EVENT_UNCERTAINTY = 0.10
LEPTON_EFF_UNCERTAINTY = 0.02


def staterror_name(channel: str) -> str:
    return f"staterror_{channel}"
