"""A signal patch from plain yields, for reinterpreting a likelihood-only analysis with a new model.

A request gives the expected signal yield in each bin of some channels
(usually the signal regions), optionally with the absolute uncertainty of
each yield (from the limited Monte Carlo statistics of the new signal). The
patch adds one sample per channel, scaled by the measurement's parameter of
interest, with the luminosity modifier of the background samples and the
uncertainties as a ``staterror`` joined to the channel's own. The patch is
checked against the workspace: channels exist, bin counts agree, yields and
uncertainties are finite and not negative, and pyhf builds the model.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Mapping, Sequence

from recast.likelihood.errors import PatchError
from recast.likelihood.workspace import Likelihood, SignalPoint, read_json


def _modifier_names(channel: dict, kind: str) -> list[str]:
    return sorted({m["name"] for s in channel["samples"] for m in s.get("modifiers", []) if m["type"] == kind})


def _numbers(values: Any, where: str, nbins: int) -> list[float]:
    if not isinstance(values, Sequence) or isinstance(values, (str, bytes)):
        raise PatchError(f"{where}: expected a list of {nbins} numbers, found {type(values).__name__}")
    if len(values) != nbins:
        raise PatchError(f"{where}: {len(values)} values given but the channel has {nbins} bins")
    out = []
    for index, value in enumerate(values):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise PatchError(f"{where}[{index}]: {value!r} is not a finite, non-negative number")
        out.append(float(value))
    return out


def signal_patch(
    likelihood: Likelihood,
    yields: Mapping[str, Sequence[float]],
    uncertainties: Mapping[str, Sequence[float]] | None = None,
    *,
    name: str = "signal",
    sample: str = "recast_signal",
    source: str = "signal yields",
    values: Mapping[str, float] | None = None,
    check: bool = True,
) -> SignalPoint:
    """A :class:`SignalPoint` adding ``yields`` (channel name -> one yield per bin) to ``likelihood``."""
    channels = {c["name"]: (i, c) for i, c in enumerate(likelihood.spec["channels"])}
    observations = {o["name"]: o["data"] for o in likelihood.spec.get("observations", [])}
    measurement = likelihood.workspace.get_measurement()
    poi = measurement["config"]["poi"]
    if not yields:
        raise PatchError(f"{source}: no channel has signal yields")
    uncertainties = dict(uncertainties or {})
    unknown = sorted(set(uncertainties) - set(yields))
    if unknown:
        raise PatchError(f"{source}: uncertainties.{unknown[0]}: uncertainties given for a channel without yields")
    ops = []
    for channel_name, channel_yields in yields.items():
        if channel_name not in channels:
            known = ", ".join(sorted(channels))
            raise PatchError(f"{source}: yields.{channel_name}: no such channel in {likelihood.path} (channels: {known})")
        index, channel = channels[channel_name]
        nbins = len(observations.get(channel_name) or channel["samples"][0]["data"])
        data = _numbers(channel_yields, f"{source}: yields.{channel_name}", nbins)
        modifiers: list[dict[str, Any]] = [{"name": poi, "type": "normfactor", "data": None}]
        modifiers += [{"name": lumi, "type": "lumi", "data": None} for lumi in _modifier_names(channel, "lumi")]
        if channel_name in uncertainties:
            errors = _numbers(uncertainties[channel_name], f"{source}: uncertainties.{channel_name}", nbins)
            staterror = (_modifier_names(channel, "staterror") or [f"staterror_{channel_name}"])[0]
            modifiers.append({"name": staterror, "type": "staterror", "data": errors})
        ops.append({
            "op": "add",
            "path": f"/channels/{index}/samples/-",
            "value": {"name": sample, "data": data, "modifiers": modifiers},
        })
    point = SignalPoint(name=name, patch=ops, source=source, values=dict(values or {}))
    if check:
        likelihood.model_and_data(point, validate=True)
    return point


def load_signal_yields(path: str | Path, likelihood: Likelihood) -> SignalPoint:
    """A signal patch from a YAML or JSON file::

        name: my_model_point          # optional
        channels:
          SR_meff: {yields: [1.2, 3.4, 0.5], uncertainties: [0.1, 0.3, 0.1]}
    """
    import yaml

    path = Path(path)
    if path.suffix in (".yaml", ".yml"):
        try:
            document = yaml.safe_load(path.read_text())
        except FileNotFoundError:
            raise PatchError(f"{path}: no such file; expected signal yields") from None
        except yaml.YAMLError as err:
            raise PatchError(f"{path}: not valid YAML: {err}") from None
    else:
        document = read_json(path, PatchError, "signal yields")
    if not isinstance(document, dict) or not isinstance(document.get("channels"), dict):
        raise PatchError(f"{path}: field 'channels': expected a mapping of channel name to {{yields: [...], uncertainties: [...]}}")
    yields, errors = {}, {}
    for channel, entry in document["channels"].items():
        if not isinstance(entry, dict) or "yields" not in entry:
            raise PatchError(f"{path}: channels.{channel}: expected a mapping with 'yields' (and optional 'uncertainties')")
        yields[channel] = entry["yields"]
        if entry.get("uncertainties") is not None:
            errors[channel] = entry["uncertainties"]
    return signal_patch(
        likelihood, yields, errors, name=str(document.get("name") or path.stem), source=str(path),
        values={k: float(v) for k, v in (document.get("values") or {}).items()},
    )
