"""Turn signal yields into a pyhf JSON Patch (RFC 6902) for the background-only workspace.

One ``add`` operation per region of the yields appends a signal sample to
the workspace channel of the same name, with the signal strength ``mu_SIG``,
the luminosity, the MC statistical uncertainty of the yields and the
detector systematics shared with the backgrounds (same names, so they are
correlated): JES (from the selection's +-3% jet-energy-scale variations when
the yields carry them, else a flat normalisation uncertainty), b-tagging and
lepton efficiency.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from . import analysis as ana
from .cli import InputError, load_json, run, write_json

# Used when the yields carry no JES variation (e.g. written by another selection).
FLAT_JES_UNCERTAINTY = 0.05


def _numbers(values, path: Path, where: str, n_bins: int) -> list[float]:
    if not isinstance(values, list) or len(values) != n_bins:
        raise InputError(f"{path}: {where}: expected a list of {n_bins} numbers, got {json.dumps(values)[:80]}")
    out = []
    for value in values:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise InputError(f"{path}: {where}: expected non-negative numbers, got {value!r}")
        out.append(float(value))
    return out


def signal_sample(name: str, region: dict, yields_path: Path, channel: str, n_bins: int) -> dict:
    where = f"regions.{channel}"
    if not isinstance(region, dict):
        raise InputError(f"{yields_path}: {where}: expected an object with 'yields' and 'stat_uncertainties'")
    nominal = _numbers(region.get("yields"), yields_path, f"{where}.yields", n_bins)
    stat = _numbers(region.get("stat_uncertainties"), yields_path, f"{where}.stat_uncertainties", n_bins)
    modifiers = [
        {"name": ana.SIGNAL_NORM, "type": "normfactor", "data": None},
        {"name": ana.LUMI, "type": "lumi", "data": None},
        {"name": ana.staterror_name(channel), "type": "staterror", "data": stat},
    ]
    jes = region.get("variations", {}).get(ana.JES) if isinstance(region.get("variations"), dict) else None
    if jes is not None:
        up = _numbers(jes.get("up") if isinstance(jes, dict) else None, yields_path, f"{where}.variations.JES.up", n_bins)
        down = _numbers(jes.get("down") if isinstance(jes, dict) else None, yields_path, f"{where}.variations.JES.down", n_bins)
        modifiers.append({"name": ana.JES, "type": "histosys", "data": {"hi_data": up, "lo_data": down}})
    else:
        modifiers.append(
            {"name": ana.JES, "type": "normsys", "data": {"hi": 1 + FLAT_JES_UNCERTAINTY, "lo": 1 - FLAT_JES_UNCERTAINTY}}
        )
    modifiers.append(
        {"name": ana.BTAG, "type": "normsys", "data": {"hi": 1 + ana.BTAG_EVENT_UNCERTAINTY, "lo": 1 - ana.BTAG_EVENT_UNCERTAINTY}}
    )
    modifiers.append(
        {"name": ana.LEPTON_EFF, "type": "normsys", "data": {"hi": 1 + ana.LEPTON_EFF_UNCERTAINTY, "lo": 1 - ana.LEPTON_EFF_UNCERTAINTY}}
    )
    return {"name": name, "data": nominal, "modifiers": modifiers}


def build_patch(yields: dict, yields_path: Path, workspace: dict, workspace_path: Path, sample_name: str = "signal") -> list[dict]:
    regions = yields.get("regions") if isinstance(yields, dict) else None
    if not isinstance(regions, dict) or not regions:
        raise InputError(f"{yields_path}: expected a 'regions' object with at least one region (as written by wh1lbb-select)")
    channels = workspace.get("channels") if isinstance(workspace, dict) else None
    if not isinstance(channels, list):
        raise InputError(f"{workspace_path}: not a pyhf workspace: no 'channels' list")
    index = {channel.get("name"): i for i, channel in enumerate(channels)}
    operations = []
    for channel, region in regions.items():
        if channel not in index:
            raise InputError(
                f"{yields_path}: region {channel!r} is not a channel of the workspace {workspace_path} "
                f"(its channels: {', '.join(sorted(map(str, index)))})"
            )
        samples = channels[index[channel]].get("samples") or [{}]
        n_bins = len(samples[0].get("data", []))
        if not isinstance(region, dict) or not isinstance(region.get("yields"), list) or len(region["yields"]) != n_bins:
            got = len(region["yields"]) if isinstance(region, dict) and isinstance(region.get("yields"), list) else "no"
            raise InputError(
                f"{yields_path}: regions.{channel}.yields has {got} bins but channel {channel!r} "
                f"of {workspace_path} has {n_bins}"
            )
        operations.append(
            {
                "op": "add",
                "path": f"/channels/{index[channel]}/samples/-",
                "value": signal_sample(sample_name, region, yields_path, channel, n_bins),
            }
        )
    return operations


def validate_with_pyhf(workspace: dict, patch: list[dict], workspace_path: Path) -> None:
    """Build the patched model when pyhf is installed; the patch is plain JSON either way."""
    try:
        import pyhf
    except ImportError:
        return
    try:
        pyhf.Workspace(workspace).model(patches=[patch])
    except (pyhf.exceptions.InvalidSpecification, pyhf.exceptions.InvalidModel, pyhf.exceptions.InvalidWorkspaceOperation) as error:
        raise InputError(f"{workspace_path}: the patched workspace is not a valid pyhf model: {error}") from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wh1lbb-patch",
        description="Write a pyhf JSON Patch adding the signal of YIELDS.json (from wh1lbb-select) "
        "to each matching channel of the background-only workspace.",
    )
    parser.add_argument("yields", type=Path, metavar="YIELDS.json", help="signal yields written by wh1lbb-select")
    parser.add_argument("--workspace", type=Path, required=True, metavar="BkgOnly.json",
                        help="the analysis's archived background-only pyhf workspace")
    parser.add_argument("--out", type=Path, required=True, metavar="patch.json",
                        help="output JSON Patch (a list of RFC 6902 'add' operations)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def body() -> None:
        yields = load_json(args.yields, "yields file")
        workspace = load_json(args.workspace, "background-only workspace")
        patch = build_patch(yields, args.yields, workspace, args.workspace)
        validate_with_pyhf(workspace, patch, args.workspace)
        write_json(args.out, patch)

    return run("wh1lbb-patch", body)


if __name__ == "__main__":
    raise SystemExit(main())
