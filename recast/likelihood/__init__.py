"""The likelihood engine: CLs, upper limits and scans on published (HEPData) likelihoods.

>>> from recast import likelihood
>>> lk = likelihood.load_workspace("RegionA/BkgOnly.json", ["RegionA/patch.sbottom_1300_205_60.json"])
>>> likelihood.cls(lk)["cls_obs"]                                    # doctest: +SKIP
0.2444...

Importing this package is cheap: pyhf, jax and matplotlib are imported by
the functions that need them.
"""

from __future__ import annotations

from recast.likelihood.errors import ArchiveError, FitError, LikelihoodError, PatchError, WorkspaceError
from recast.likelihood.infer import Settings, cls, upper_limit
from recast.likelihood.scan import scan
from recast.likelihood.signal import signal_patch
from recast.likelihood.plot import exclusion_plot
from recast.likelihood.workspace import (
    Likelihood,
    SignalPoint,
    load_patch_file,
    load_patchset,
    load_workspace,
)

__all__ = [
    "ArchiveError",
    "FitError",
    "Likelihood",
    "LikelihoodError",
    "PatchError",
    "Settings",
    "SignalPoint",
    "WorkspaceError",
    "cls",
    "exclusion_plot",
    "load_patch_file",
    "load_patchset",
    "load_workspace",
    "scan",
    "signal_patch",
    "upper_limit",
]
