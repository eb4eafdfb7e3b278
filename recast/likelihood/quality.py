"""Whether a CLs or a limit can be trusted: what the fits behind it found, and the warnings.

An asymptotic CLs is only as good as its free fit: q_mu is the difference of
-2 log L between a conditional fit and the free fit, so a free fit that stops
away from the global minimum (at a saddle point, in a local minimum, or
without converging) gives a CLs that can be wrong by anything up to 1.
pyhf's own ``hypotest`` starts every fit from the suggested initial values
and reports whatever the optimizer returns; on a likelihood whose gradient
vanishes there (a symmetric systematic, a flat direction) its free fit stays
at its start.

Every result of the engine carries a ``fit_quality`` record::

    {"status": "ok" | "doubtful",
     "warnings": ["...", ...],                      # empty when ok
     "fits": {"free_data": {"twice_nll", "mu_hat", "converged", "iterations", "start",
                            "alternatives": [{"start", "twice_nll", "mu_hat", "converged"}, ...]},
              "background_data": {...}, "free_asimov": {...},
              "conditional": {"fits": N, "not_converged": K}},
     "checks": ["mu_hat at the lower POI bound: refitted from pyhf's start, same minimum", ...]}

and a point is *doubtful* when

- a fit did not converge, even from a second start;
- fits of the same data from different starts end more than
  :data:`TWICE_NLL_TOLERANCE` apart in -2 log L (competing minima, or a fit
  that stopped at a saddle point or at its start); the result uses the lowest
  minimum found, and the record lists every start's minimum, including the
  one from pyhf's starting point (what plain pyhf reports);
- a conditional fit reaches a lower -2 log L than the free fit (the free fit
  missed the minimum; it is redone from there).

The cheap checks that decide when to try more starts: the optimizer's own
status, the free fit's mu_hat at a bound of the POI, and a probe of the
minimum: -2 log L one step along each parameter (half the constraint's width,
a tenth of a free parameter's range) must not be lower. Well-conditioned
points pass them, or pass the second start, and cost one extra fit at most.

A doubtful point is not recomputed with plain pyhf: where the checks fire,
plain pyhf's answer comes from the fit that stopped early (or from one of the
competing minima), so it is not the better number; the record says what
pyhf's start gives, and ``method="pyhf"`` reproduces plain pyhf exactly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# Two fits of the same data are the same minimum when their -2 log L agree to this. SLSQP with
# pyhf's tolerance converges to ~1e-4 on the published likelihoods; CLs moves by less than 1e-3
# relative for a shift of 0.01 in q_mu at the exclusion level (sqrt(q) ~ 1.6 to 3).
TWICE_NLL_TOLERANCE = 0.01
# mu_hat within this fraction of the POI range of a bound is "at the bound"
BOUND_FRACTION = 1e-4


@dataclass
class FitQuality:
    """The fits of one signal point and the problems found in them."""

    where: str
    warnings: list[str] = field(default_factory=list)
    checks: list[str] = field(default_factory=list)
    fits: dict[str, Any] = field(default_factory=dict)
    conditional_fits: int = 0
    conditional_not_converged: int = 0

    @property
    def doubtful(self) -> bool:
        return bool(self.warnings)

    def warn(self, message: str) -> None:
        if message not in self.warnings:
            self.warnings.append(message)

    def note(self, message: str) -> None:
        if message not in self.checks:
            self.checks.append(message)

    def record(self) -> dict[str, Any]:
        fits = dict(self.fits)
        if self.conditional_fits:
            fits["conditional"] = {"fits": self.conditional_fits, "not_converged": self.conditional_not_converged}
        return {
            "status": "doubtful" if self.warnings else "ok",
            "warnings": list(self.warnings),
            "fits": fits,
            "checks": list(self.checks),
        }


def attach(record: dict[str, Any], quality: FitQuality | None) -> dict[str, Any]:
    """``record`` with its ``fit_quality`` and top-level ``warnings`` (the fields every result carries)."""
    if quality is None:
        record["fit_quality"] = {"status": "unchecked", "warnings": [], "fits": {}, "checks": []}
        record["warnings"] = []
    else:
        record["fit_quality"] = quality.record()
        record["warnings"] = list(quality.warnings)
    return record


def is_doubtful(record: dict[str, Any]) -> bool:
    return (record.get("fit_quality") or {}).get("status") == "doubtful"
