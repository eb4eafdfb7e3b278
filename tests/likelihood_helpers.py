"""Shared by the likelihood and HEPData tests: the published archives, extracted once per session.

The archives are third-party data in ``../shared/hepdata/`` (beside the
checkout); they are read from there and extracted into pytest's temporary
folders, never copied into the repository. Import the fixtures into a test
module to use them.
"""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
HEPDATA = ROOT.parent / "shared" / "hepdata"
SBOTTOM_ARCHIVE = HEPDATA / "SUSY-2018-31_likelihoods.tar.gz"
ONELBB_ARCHIVE = HEPDATA / "1Lbb-likelihoods.tar.gz"
SBOTTOM_SHA256 = "9089b0e5fabba335bea4c94545ccca8ddd21289feeab2f85e5bcc8bada37be70"
ONELBB_SHA256 = "7b223b5da4aae2e049593fe5c7b1563f0f54974d50c375a1a37b82c112a29551"

# ../shared/hepdata/README.md: pyhf.infer.hypotest(1.0, ..., test_stat="qtilde",
# return_expected_set=True), normsys code4, histosys code4p
REFERENCE_CLS = [
    ("RegionA", "sbottom_1300_205_60", 0.24443627759085326,
     [0.09022509053507759, 0.1937839194960632, 0.38432344933992, 0.6557757334303531, 0.8910420971601081]),
    ("RegionA", "sbottom_1400_950_60", 0.021373283911064852,
     [0.0026445531093281147, 0.013976126501170727, 0.06497105816950004, 0.23644030478043676, 0.5744785776763938]),
    ("RegionA", "sbottom_1500_850_60", 0.045367205665400624,
     [0.00598431785676406, 0.026102240062850574, 0.10093641492218848, 0.31019245951964736, 0.6553623337518385]),
    ("RegionB", "sbottom_1400_550_60", 0.9744675266677597,
     [0.9338879894557114, 0.9569045303300702, 0.9771296335437559, 0.9916370124133669, 0.9983701133999316]),
    ("RegionC", "sbottom_1600_850_60", 0.711023707425625,
     [0.2955492909588046, 0.4446885457298284, 0.6371473864200973, 0.8336149623750603, 0.9585901381554178]),
]
REFERENCE_1LBB_POINT = "C1N2_Wh_hbb_900_250"
REFERENCE_1LBB_CLS = (0.4573416902360917,
                      [0.014838293214187472, 0.05174259485911152, 0.16166970886709053, 0.4097850957724176, 0.7428200727035176])
# pyhf upper_limit(..., scan=numpy.linspace(0, 5, 41)), default modifier settings
REFERENCE_1LBB_LIMIT = (2.547958147632675,
                        [0.7065311975182036, 1.0136453820160332, 1.5766626372587724, 2.558234487679955, 4.105381941514062])
# ATL-PHYS-PUB-2019-029 example with pyhf 0.7.6 defaults
REFERENCE_PUB_NOTE = ("RegionA", "sbottom_1400_205_60", 0.34398334594816465)


def _extract(archive: Path, target: Path) -> Path:
    assert archive.is_file(), f"{archive} is missing: the tests need ../shared/hepdata beside the checkout"
    with tarfile.open(archive) as tar:
        tar.extractall(target, filter="data")
    return target


@pytest.fixture(scope="session")
def sbottom_dir(tmp_path_factory) -> Path:
    """The extracted sbottom archive: RegionA/B/C, each BkgOnly.json + patch.sbottom_*.json."""
    return _extract(SBOTTOM_ARCHIVE, tmp_path_factory.mktemp("sbottom"))


@pytest.fixture(scope="session")
def onelbb_dir(tmp_path_factory) -> Path:
    """The extracted 1Lbb archive: BkgOnly.json + patchset.json."""
    return _extract(ONELBB_ARCHIVE, tmp_path_factory.mktemp("onelbb"))


@pytest.fixture(scope="session")
def onelbb(onelbb_dir):
    """The 1Lbb likelihood with its 125 points (the 57 MB patchset is parsed once per session)."""
    from recast.likelihood import load_workspace

    return load_workspace(onelbb_dir / "BkgOnly.json", patchset=onelbb_dir / "patchset.json")


def patch_path(sbottom_dir: Path, region: str, point: str) -> Path:
    return sbottom_dir / region / f"patch.{point}.json"


def write_json(path: Path, document) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document))
    return path


def assert_close(actual, expected, rtol, what=""):
    """Relative comparison of a number or a list of numbers, with a message that shows both."""
    if isinstance(expected, (list, tuple)):
        assert len(actual) == len(expected), what
        for a, e in zip(actual, expected):
            assert_close(a, e, rtol, what)
        return
    assert abs(actual - expected) <= rtol * abs(expected), f"{what}: {actual!r} vs {expected!r} (relative {abs(actual - expected) / abs(expected):.2e} > {rtol})"


def assert_cls_close(actual, expected, tol, what=""):
    """CLs values agree within ``tol`` relative, or within ``tol`` in significance.

    Deep in the tail (CLs of 1e-8 or 1e-32) a relative difference of 1e-3 is
    a test statistic differing by 1e-3 / Z: below what any minimiser's stopping
    rule resolves, and invisible in any exclusion. There the meaningful
    comparison is of Z = Φ⁻¹(1 − CLs); near CLs = 0.05 the two criteria agree.
    """
    if isinstance(expected, (list, tuple)):
        assert len(actual) == len(expected), what
        for a, e in zip(actual, expected):
            assert_cls_close(a, e, tol, what)
        return
    from scipy.stats import norm

    if abs(actual - expected) <= tol * abs(expected):
        return
    z_actual, z_expected = norm.isf(actual), norm.isf(expected)
    assert abs(z_actual - z_expected) <= tol, (
        f"{what}: {actual!r} vs {expected!r} (relative {abs(actual - expected) / abs(expected):.2e}, "
        f"significance {z_actual:.6f} vs {z_expected:.6f}: both beyond {tol})")
