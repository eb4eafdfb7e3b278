"""pyhf models of many signal points of one workspace, built without redoing the background.

``pyhf.Model`` collects its numbers in a loop over every channel × sample ×
modifier of the model (``pyhf.pdf._nominal_and_modifiers_from_spec``, step
3): each of pyhf's modifier builders appends, for every sample, its numbers
(or placeholders where the sample lacks the modifier) channel by channel. For
the points of one published likelihood only the signal differs: the
background samples are the same objects in every point's spec (the patch
copies only what it touches, :func:`recast.likelihood.workspace.apply_patch`),
so what the builders collect for them is the same every time. That loop was
most of building a model (10 of 17 ms a sbottom point, 60 of 100 ms a 1Lbb
point).

:func:`cached_model_building` runs pyhf's own function with step 3 replaced:
what a builder collected for a sample is kept, per modifier, and reused for a
later model whose sample is the same object in every channel; anything else
(the signal, a sample the patch changed, a modifier not seen before) is
collected by pyhf's builders as before. The builders' results are then
finalised by pyhf as before, with the parameters in pyhf's order. The models
are pyhf's to the bit (tests compare every array-derived number with a model
pyhf builds). Used only with pyhf 0.7 and its HistFactory modifier set (the
code it replaces); anything else is built by pyhf alone.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Any, Iterator

# the HistFactory builders of pyhf 0.7, whose append() only appends to builder_data[key][sample]["data"]
# and, but for staterror's, calls required_parsets.setdefault(name, [required_parset(sample data,
# modifier data)]) when the sample has the modifier
_KNOWN_TYPES = {"histosys", "lumi", "normfactor", "normsys", "shapefactor", "shapesys", "staterror"}

_active = threading.local()


class BuildCache:
    """What pyhf's builders collected per sample, kept across the models of one workspace.

    A sample's entry holds the sample objects it was collected from (so that
    their identity stays a valid key), its nominal numbers and, per modifier
    key, the builder's lists for that sample.
    """

    def __init__(self) -> None:
        self._samples: dict[tuple, dict[str, Any]] = {}
        self.reused = 0
        self.collected = 0

    def entry(self, shape: tuple, sample: str, defined: list) -> dict[str, Any]:
        objects = tuple(d[0] if d else None for d in defined)
        key = (shape, sample)
        found = self._samples.get(key)
        if found is None or len(found["objects"]) != len(objects) or any(a is not b for a, b in zip(found["objects"], objects)):
            found = {"objects": objects, "nominal": None, "data": {}}
            self._samples[key] = found
        return found


def supported() -> bool:
    import pyhf

    return pyhf.__version__.startswith("0.7.") and hasattr(pyhf.pdf, "_nominal_and_modifiers_from_spec")


@contextlib.contextmanager
def cached_model_building(cache: BuildCache | None) -> Iterator[None]:
    """``pyhf.Model(...)`` inside the block collects its numbers through ``cache`` (None: pyhf's own way)."""
    import pyhf.pdf

    if cache is None or not supported():
        yield
        return
    original = pyhf.pdf._nominal_and_modifiers_from_spec
    previous = getattr(_active, "cache", None)
    _active.cache = cache
    pyhf.pdf._nominal_and_modifiers_from_spec = _make_replacement(original)
    try:
        yield
    finally:
        pyhf.pdf._nominal_and_modifiers_from_spec = original
        _active.cache = previous


def _make_replacement(original):
    def replacement(modifier_set, config, spec, batch_size):
        cache = getattr(_active, "cache", None)
        if cache is None or set(modifier_set) - _KNOWN_TYPES or modifier_set is not _histfactory_set():
            return original(modifier_set, config, spec, batch_size)
        return _nominal_and_modifiers(modifier_set, config, spec, batch_size, cache)

    return replacement


def _parset_function(builder):
    """The ``required_parset(sample_data, modifier_data)`` a builder's append() calls, or None (staterror's
    parameters are set when it is finalised)."""
    import importlib

    if type(builder).__name__ == "staterror_builder":
        return None
    return importlib.import_module(type(builder).__module__).required_parset


def _histfactory_set():
    from pyhf.modifiers import histfactory_set

    return histfactory_set


def _nominal_and_modifiers(modifier_set, config, spec, batch_size, cache: BuildCache):
    """pyhf 0.7's ``_nominal_and_modifiers_from_spec`` with step 3 taken from ``cache`` where it can."""
    from pyhf import exceptions
    from pyhf.pdf import _create_parameters_from_spec, _finalize_parameters_specs, _nominal_builder

    # 1. setup nominal & modifier builders (as pyhf)
    nominal = _nominal_builder(config)
    modifiers_builders = {key: builder(config) for key, (builder, _) in modifier_set.items()}

    # 2. channel/sample helper and its checks (as pyhf)
    helper: dict[str, dict[str, tuple]] = {}
    _keys_seen: set[str] = set()
    for c in spec["channels"]:
        for s in c["samples"]:
            moddict = {}
            for x in s["modifiers"]:
                if x["type"] not in modifier_set:
                    raise exceptions.InvalidModifier(f'{x["type"]} not among {list(modifier_set.keys())}')
                key = f"{x['type']}/{x['name']}"
                if not modifiers_builders[x["type"]].is_shared and (key in _keys_seen or key in moddict):
                    raise exceptions.InvalidModel(
                        f"Trying to add paramset {key} on {s['name']} sample in {c['name']} channel but other paramsets exist with the same name."
                    )
                moddict[key] = x
            helper.setdefault(c["name"], {})[s["name"]] = (s, moddict)
            _keys_seen.update(moddict)

    # 3. what the builders collect, sample by sample (pyhf: channel by channel, every sample and
    #    modifier; each builder keeps a sample's numbers apart, so the order does not change them)
    channels = tuple(config.channels)
    shape = tuple((c, config.channel_nbins[c]) for c in channels)  # placeholders of absent samples are this long
    modifiers = [(f"{mtype}/{m}", mtype) for m, mtype in config.modifiers]
    for key, mtype in modifiers:
        modifiers_builders[mtype].builder_data[key] = {}
    for s in config.samples:
        defined = [helper.get(c, {}).get(s) for c in channels]
        entry = cache.entry(shape, s, defined)
        if entry["nominal"] is None:
            for c, d in zip(channels, defined):
                nominal.append(c, s, d[0] if d else None)
            entry["nominal"] = list(nominal.mega_samples[s]["nom"])
        else:
            nominal.mega_samples[s] = {"name": f"mega_{s}", "nom": list(entry["nominal"])}
        for key, mtype in modifiers:
            builder = modifiers_builders[mtype]
            kept = entry["data"].get(key)
            if kept is None:
                for c, d in zip(channels, defined):
                    thismod = d[1].get(key) if d else None
                    builder.append(key, c, s, thismod, d[0] if d else None)
                entry["data"][key] = {field: list(values) for field, values in builder.builder_data[key][s]["data"].items()}
                cache.collected += 1
            else:
                # a new dict of the same lists: finalize() replaces the lists in it, never changes them
                builder.builder_data[key][s] = {"data": dict(kept)}
                cache.reused += 1
    # the parameters each builder asks for, set as pyhf's append() sets them, in its loop's order
    # (channel, sample, modifier): the first sample that has a modifier defines its parameter set
    parset_functions = {mtype: _parset_function(builder) for mtype, builder in modifiers_builders.items()}
    for builder in modifiers_builders.values():
        builder.required_parsets = {}
    for c in channels:
        for s in config.samples:
            found = helper.get(c, {}).get(s)
            if not found:
                continue
            for key, mtype in modifiers:
                thismod = found[1].get(key)
                if thismod and parset_functions[mtype] is not None:
                    modifiers_builders[mtype].required_parsets.setdefault(
                        thismod["name"], [parset_functions[mtype](found[0]["data"], thismod["data"])]
                    )

    # 4-6. as pyhf
    nominal_rates = nominal.finalize()
    finalizd_builder_data = {k: modifiers_builders[k].finalize() for k in modifier_set}
    _required_paramsets: dict[str, list] = {}
    for v in list(modifiers_builders.values()):
        for pname, req_list in v.required_parsets.items():
            _required_paramsets.setdefault(pname, [])
            _required_paramsets[pname] += req_list
    user_parameters = spec.get("parameters", [])
    _required_paramsets = _finalize_parameters_specs(user_parameters, _required_paramsets)
    if not _required_paramsets:
        raise exceptions.InvalidModel("No parameters specified for the Model.")
    _prameter_objects, _auxdata, _auxdata_order = _create_parameters_from_spec(_required_paramsets)
    config.set_parameters(_prameter_objects)
    config.set_auxinfo(_auxdata, _auxdata_order)
    the_modifiers = {}
    for k, (builder, applier) in modifier_set.items():
        the_modifiers[k] = applier(
            modifiers=[x for x in config.modifiers if x[1] == k],
            pdfconfig=config,
            builder_data=finalizd_builder_data.get(k),
            batch_size=batch_size,
            **config.modifier_settings.get(k, {}),
        )
    return the_modifiers, nominal_rates
