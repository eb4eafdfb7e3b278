"""Asymptotic CLs with pyhf's model, fits reused across values of mu and across signal points.

Where the time goes with ``pyhf.infer.hypotest`` (measured on the published
sbottom and 1Lbb likelihoods): five fits per call, all started from the
suggested initial values; with numpy, gradients by finite differences; with
jax, one XLA compilation per :class:`pyhf.Model` object (1.4 s for a 64
parameter sbottom model, 7 s for the 126 parameter 1Lbb model) because the
model is a static argument of pyhf's jitted objective.

This module keeps pyhf's model (``Model.logpdf``, ``Model.expected_data``) and
pyhf's asymptotic formulae (:class:`pyhf.infer.calculators.AsymptoticCalculator`
computes every p-value), and changes only how the fits run:

- the three fits that do not depend on mu (free fit to the data, the
  background-only fit that makes the Asimov data, free fit to the Asimov data)
  are done once per signal point, not once per mu; the free fit to the Asimov
  data is no fit at all: the background-only fit that made them is its exact
  minimum;
- every fit starts from the nearest solution already known (warm start); a
  conditional fit from the best of the candidates (each evaluated once),
  among them the same mu's fit on the other dataset moved by the difference
  of the two free fits (the nuisance parameters respond to mu nearly alike);
- and with the curvature already known: the background fit (from pyhf's
  start, pyhf's path: its parameters make the Asimov data) ends with SLSQP's
  quasi-Newton estimate of the Hessian, and the fits after it (the free fit
  to the data, the fits at fixed mu, whose numbers enter only through their
  minima) start SLSQP with that matrix instead of the identity
  (:func:`slsqp`): 50 evaluations a fit become 13 on sbottom, 90 become 30
  on 1Lbb, with the same minima (CLs within 5e-6 of the fits from the identity);
- the checks of :mod:`recast.likelihood.quality` (a probe of each minimum,
  one vectorised evaluation with jax; more starts only when it fires);
- with jax, ``Model.logpdf`` is traced to a jaxpr whose constants (the model's
  yields and modifier data) become arguments of the compiled function; two
  models whose traced programs are identical (the same structure, other
  numbers) share one compilation, so a scan over the signal points of one
  analysis compiles once per structure instead of once per point; and it
  traces once per structure too: a later model of a known structure (the
  same parameters, channels, modifiers and sample order) gets its numbers
  from its own arrays, at the places where the first model's traced
  constants were found, checked against pyhf's numpy likelihood at two
  parameter points (traced after all when they differ).

Fits are SLSQP (scipy), as pyhf's default ``scipy_optimizer``, with an
exact gradient: the compact likelihood's (numpy, :mod:`recast.likelihood.compact`)
or jax's; finite differences only for a model the compact likelihood does not
compute on numpy. Fixed parameters (the POI in conditional
fits, and the model's ``suggested_fixed``) are removed from the minimisation
rather than constrained.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Callable

import numpy as np


TEST_STATISTICS = ("qtilde", "q")


class CompiledFunctions:
    """jitted pyhf model functions shared by all models whose traced programs are identical.

    Models are built with pyhf's numpy backend (building one with the jax
    backend costs ten times more in eager jax operations); only the tracing of
    ``Model.logpdf`` sees pyhf's jax backend. One instance lives as long as a
    process: a scan keeps it across points.
    """

    def __init__(self) -> None:
        self._jitted: dict[tuple[str, str], Callable] = {}
        # model structure -> [key, jaxpr, consts, paths]: binds a model of a known structure without tracing
        self._templates: dict[tuple, list] = {}
        self.compilations = 0
        self.reuses = 0
        self.traces = 0  # models traced (the first of each structure, and any whose numbers were not found)
        self.retraced = 0  # of those, models bound from a template that did not reproduce pyhf

    def bind(self, kind: str, function: Callable, *example_args, grad: bool = False, batched: bool = False,
             model=None, trace: bool = False):
        """``function`` (pure in its array arguments) as a compiled callable of those arguments.

        With ``batched``, also a compiled function of a batch of first
        arguments (``jax.vmap``; one call evaluates many parameter points),
        returned second; it is compiled when first called.

        With ``model`` (the pyhf model whose method ``function`` calls), a
        model of a structure traced before is not traced again (23 to 40 ms a
        sbottom point, a third of its time): its numbers are read from the
        model's own arrays where the first model of the structure had them
        (:func:`_const_paths`). The caller must check the result against
        pyhf (:meth:`Fitter._compiled_mismatch`) and bind again with ``trace``
        when it differs. ``self.last`` is (key, jaxpr, consts, traced).
        """
        import jax

        signature = (kind, grad, _model_signature(model)) if model is not None else None
        # a model of another parameter set but the same shapes (1Lbb's points carry different
        # systematics) may still be the same program: tried, and checked like any template
        coarse = (kind, grad, _shape_signature(model)) if model is not None else None
        template = None if trace or signature is None else self._templates.get(signature) or self._templates.get(coarse)
        if template is not None:
            key, jaxpr, template_consts, paths = template
            if not isinstance(paths, list):  # (the traced model, its constants): located at first use
                paths = template[3] = _const_paths(*paths)
            consts = [jax.device_put(_resolve(model, path, const)) for path, const in zip(paths, template_consts)]
            traced = False
        else:
            with _jax_tensorlib():
                closed = jax.make_jaxpr(function)(*example_args)
            key, jaxpr = (kind, hashlib.sha256(str(closed.jaxpr).encode()).hexdigest()), closed.jaxpr
            # on the device once: passed as host arrays they would be copied at every call
            consts = [jax.device_put(c) for c in closed.consts]
            traced = True
            self.traces += 1
            if signature is not None:
                self.retraced += trace
                # where the constants are among the model's arrays is looked up when a second model of
                # the structure comes (0.15 s for 1Lbb: not for a command of one point)
                self._templates[signature] = self._templates[coarse] = [key, jaxpr, consts, (model, closed.consts)]
        jitted = self._jitted.get(key)
        if jitted is None:

            def run(consts, *args):
                return jax.core.eval_jaxpr(jaxpr, consts, *args)[0]

            jitted = (
                jax.jit(jax.value_and_grad(run, argnums=1) if grad else run),
                jax.jit(jax.vmap(run, in_axes=(None, 0, *[None] * (len(example_args) - 1)))),
            )
            self._jitted[key] = jitted
            self.compilations += 1
        else:
            self.reuses += 1
        self.last = (key, jaxpr, consts, traced)
        single, batch = jitted
        if batched:
            return (lambda *args: single(consts, *args)), (lambda *args: batch(consts, *args))
        return lambda *args: single(consts, *args)


def _model_signature(model) -> tuple:
    """What must be equal for two pyhf models to trace to the same program: names, shapes, interpolation codes."""
    config = model.config
    position = {name: i for i, name in enumerate(config.samples)}
    # samples by their place in pyhf's order, not by name (a scan's signal sample is named after its point)
    samples = tuple(
        (channel["name"], tuple(sorted(
            (position[sample["name"]], tuple(sorted((m["name"], m["type"]) for m in sample["modifiers"])))
            for sample in channel["samples"]
        )))
        for channel in model.spec["channels"]
    )
    return (
        tuple(config.par_order),
        tuple((name, config.param_set(name).n_parameters) for name in config.par_order),
        tuple(config.channels),
        len(config.samples),
        samples,
        tuple(tuple(m) for m in config.modifiers),
        tuple(sorted(config.channel_nbins.items())),
        tuple(config.auxdata_order),
        repr(getattr(config, "modifier_settings", None)),
        config.poi_index,
    )


def _shape_signature(model) -> tuple:
    """The shapes of a model's program without the names: parameters' sizes, bins, samples, modifiers by type."""
    config = model.config
    kinds: dict[str, int] = {}
    for _, kind in config.modifiers:
        kinds[kind] = kinds.get(kind, 0) + 1
    return (
        tuple(config.param_set(name).n_parameters for name in config.par_order),
        tuple(config.channel_nbins[c] for c in config.channels),
        len(config.samples),
        tuple(sorted(kinds.items())),
        len(config.auxdata),
        repr(getattr(config, "modifier_settings", None)),
        config.poi_index,
    )


def _model_arrays(model) -> list[tuple[tuple, np.ndarray]]:
    """Every numpy array reachable from ``model``'s attributes, with its path (attribute names, keys, indices)."""
    found, seen, stack = [], set(), [(model, ())]
    while stack:
        node, path = stack.pop()
        if id(node) in seen or len(path) > 12:
            continue
        seen.add(id(node))
        if isinstance(node, np.ndarray):
            found.append((path, node))
        elif isinstance(node, dict):
            stack.extend((v, path + (("key", k),)) for k, v in node.items())
        elif isinstance(node, (list, tuple)):
            stack.extend((v, path + (("index", i),)) for i, v in enumerate(node))
        elif hasattr(node, "__dict__") and not isinstance(node, type):
            stack.extend((v, path + (("attr", k),)) for k, v in vars(node).items() if k != "spec")
    return found


def _const_paths(model, consts) -> list[tuple | None]:
    """For each constant of a traced program, the path of the one array of ``model`` equal to it, else None.

    A constant found nowhere, or in several arrays, keeps the traced model's
    value for every model of the structure (masks and indices of the
    structure are such constants); the check against pyhf catches the rest.
    """
    by_shape: dict[tuple, list] = {}
    for path, array in _model_arrays(model):
        by_shape.setdefault(array.shape, []).append((path, array))
    paths = []
    for const in consts:
        const = np.asarray(const)
        hits = {path for path, array in by_shape.get(const.shape, []) if np.array_equal(np.asarray(array, dtype=const.dtype), const)}
        paths.append(hits.pop() if len(hits) == 1 else None)
    return paths


def _resolve(model, path: tuple | None, default):
    """The array at ``path`` in ``model`` (as ``default``'s dtype and shape), or ``default``."""
    if path is None:
        return default
    node = model
    for kind, step in path:
        node = getattr(node, step) if kind == "attr" else node[step]
    array = np.asarray(node, dtype=default.dtype)
    return array if array.shape == default.shape else default


class _jax_tensorlib:
    """pyhf's jax backend as the current tensorlib, without pyhf's backend-change events.

    ``pyhf.set_backend`` would convert every live model to jax tensors; here
    the model stays a numpy model and jax only traces it. The traced function
    is checked against the numpy model (:meth:`Fitter._compiled_mismatch`).
    """

    _backend = None

    @classmethod
    def enable_float64(cls):
        """pyhf's jax backend, created once; creating it switches jax to float64."""
        import pyhf

        if cls._backend is None:
            import jax

            enable_compilation_cache()
            # the fits make thousands of tiny calls, each result needed at once: jax's asynchronous
            # dispatch on CPU only hands every call to another thread and back (sbottom: 159 -> 135 µs
            # a call with its gradient, 1Lbb: 360-430 -> 315 µs; the same results)
            jax.config.update("jax_cpu_enable_async_dispatch", False)
            backend = pyhf.tensor.jax_backend(precision="64b")
            backend._setup()
            cls._backend = backend
        return cls._backend

    def __enter__(self):
        from pyhf.tensor import manager

        _jax_tensorlib.enable_float64()
        self._saved = manager.get_backend()
        manager.this.state["current"] = (_jax_tensorlib._backend, self._saved[1])
        return self

    def __exit__(self, *exc):
        from pyhf.tensor import manager

        manager.this.state["current"] = self._saved
        return False


def compilation_cache_dir():
    """Where compiled likelihoods are kept across processes: $RECAST_JAX_CACHE, else ~/.cache/recast/jax."""
    import os
    from pathlib import Path

    configured = os.environ.get("RECAST_JAX_CACHE")
    if configured is not None:
        return Path(configured) if configured else None  # empty: no persistent cache
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "recast" / "jax"


def enable_compilation_cache() -> None:
    """jax's persistent compilation cache, so a new process (a scan's worker, the next command) skips XLA.

    The compiled function takes the model's numbers as arguments
    (:class:`CompiledFunctions`), so one cache entry serves every point of a
    structure in every later process. A cache that cannot be created is skipped.
    """
    import jax

    folder = compilation_cache_dir()
    if folder is None:
        return
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return
    jax.config.update("jax_compilation_cache_dir", str(folder))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


_PROCESS_FUNCTIONS: CompiledFunctions | None = None


def precompile_probe(model) -> float:
    """Compile only the probe's batched likelihood of ``model``'s structure (:meth:`Fitter.probe`);
    the seconds its compilation took (or its loading from the persistent cache).

    A scan's forked worker does this while the calling process compiles the
    likelihood's gradient for the same structure; each then finds the other's
    compilation in the persistent cache instead of compiling it too.
    """
    import time

    import jax.numpy as jnp

    _jax_tensorlib.enable_float64()
    init = np.asarray(model.config.suggested_init(), dtype=float)
    data0 = jnp.asarray(np.asarray(model.expected_data(init)))
    _, batch = process_functions().bind(
        "logpdf", lambda p, d: model.logpdf(p, d)[0], jnp.asarray(init), data0, grad=True, batched=True, model=model,
    )
    started = time.perf_counter()
    np.asarray(batch(np.tile(init, (PROBE_CHUNK, 1)), data0))
    return time.perf_counter() - started


def process_functions() -> CompiledFunctions:
    """The compiled functions of this process (created on first use)."""
    global _PROCESS_FUNCTIONS
    if _PROCESS_FUNCTIONS is None:
        _PROCESS_FUNCTIONS = CompiledFunctions()
    return _PROCESS_FUNCTIONS


@dataclass
class FitResult:
    pars: np.ndarray
    twice_nll: float
    iterations: int = 0
    converged: bool = True
    message: str = ""
    start: str = ""
    moved: bool = True
    # SLSQP's quasi-Newton matrix at the end (free parameters of this fit, in their order), or None
    curvature: np.ndarray | None = field(default=None, repr=False)
    free: np.ndarray | None = field(default=None, repr=False)

    def summary(self, poi: int, conditional: bool = False) -> dict:
        return {
            "twice_nll": self.twice_nll,
            "mu" if conditional else "mu_hat": float(self.pars[poi]),
            "converged": self.converged,
            "iterations": self.iterations,
            "start": self.start,
            **({} if self.converged else {"message": self.message}),
            **({} if self.moved else {"stayed_at_start": True}),
        }


PYHF_START = "pyhf's start (suggested init)"
# SLSQP's tolerance for fits with exact gradients (scaled parameters; see Fitter.__post_init__)
EXACT_TOLERANCE = 1e-8
SCALED_FITS = False  # see Fitter.__post_init__: faster, but not pyhf's numbers to 1e-5
# The fits after the background fit (the free fit to the data, the fits at fixed mu) start SLSQP's
# quasi-Newton matrix from the background fit's final one instead of the identity (see slsqp())
CURVATURE_WARM_START = True
# rows of one vectorised evaluation of the probe (Fitter.probe)
PROBE_CHUNK = 32
# a step of 1e-3 of the POI range off a bound that lowers -2 log L by more than this: the fit stopped early
BOUND_DECREASE = 1e-6


@dataclass
class Fitter:
    """Maximum-likelihood fits of one pyhf model (any data of its shape)."""

    model: object
    backend: str = "numpy"
    tolerance: float | None = None
    maxiter: int = 100000
    where: str = ""
    functions: CompiledFunctions | None = None
    init: np.ndarray = field(init=False)
    bounds: np.ndarray = field(init=False)
    fixed: np.ndarray = field(init=False)
    poi: int = field(init=False)

    def __post_init__(self) -> None:
        config = self.model.config
        self.init = np.asarray(config.suggested_init(), dtype=float)
        self.bounds = np.asarray(config.suggested_bounds(), dtype=float)
        self.fixed = np.asarray(config.suggested_fixed(), dtype=bool)
        self.poi = config.poi_index
        self.fits = 0
        self.compact = None  # the numpy backend's compact likelihood, when it reproduces pyhf's
        self._probed: tuple = (None, {})  # (data, {step's parameters: -2 log L}) of the probes on those data
        widths = constraint_widths(config)
        self.steps = _probe_steps(widths, self.bounds)
        # Optional (SCALED_FITS): with exact gradients (jax) the fits can run in each parameter's
        # natural unit (its constraint's width), so that a staterror gamma of width 0.02 and a normsys
        # alpha of width 1 look alike to SLSQP's first quasi-Newton steps (which start from the
        # identity), converged to EXACT_TOLERANCE. Measured on 40 sbottom points: 22% fewer
        # iterations, but CLs then move by 2e-5 at pyhf's tolerance, and the converged minimum is up
        # to 5e-5 away from the published expected bands (made with pyhf's unscaled fits at its
        # default tolerance). The engine promises pyhf's numbers to 1e-5, so it is off by default.
        exact = self.backend == "jax" and SCALED_FITS
        self.scales = np.where(np.isfinite(widths) & (widths > 0), 1.0 / np.where(widths > 0, widths, 1.0), 1.0)
        if not exact:
            self.scales = np.ones_like(self.scales)
        elif self.tolerance is None:
            self.tolerance = EXACT_TOLERANCE
        if self.backend == "jax":
            import jax.numpy as jnp

            _jax_tensorlib.enable_float64()  # before any jax array exists: example arguments must be float64
            functions = self.functions or process_functions()
            model = self.model
            pars0 = jnp.asarray(self.init)
            data0 = jnp.asarray(self.expected_data(self.init))
            for trace in (False, True):
                self._logpdf_and_grad, self._logpdf_batch = functions.bind(
                    "logpdf", lambda p, d: model.logpdf(p, d)[0], pars0, data0, grad=True, batched=True,
                    model=model, trace=trace,
                )
                mismatch = self._compiled_mismatch(np.asarray(data0))
                if mismatch is None:
                    break
                if functions.last[3]:  # traced, and still not pyhf's: a bug
                    raise RuntimeError(f"{self.where}: {mismatch}")
        elif self.backend == "numpy":
            # exact gradients from the model's compact likelihood (recast.likelihood.compact), checked
            # against pyhf's like the compiled one; else pyhf's likelihood and finite differences
            from recast.likelihood.compact import CompactLikelihood

            compact = CompactLikelihood.of(self.model)
            if compact is not None:
                self._logpdf_and_grad, self._logpdf_batch = compact.value_and_grad, compact.values
                if self._compiled_mismatch(self.expected_data(self.init)) is None:
                    self.compact = compact
                else:  # not pyhf's: never used
                    del self._logpdf_and_grad, self._logpdf_batch
        else:
            raise ValueError(f"backend {self.backend!r}: expected 'numpy' or 'jax'")

    def expected_data(self, pars: np.ndarray) -> np.ndarray:
        return np.asarray(self.model.expected_data(pars))

    @property
    def exact_gradients(self) -> bool:
        """Whether fits take exact gradients (jax, or the compact likelihood) rather than finite differences."""
        return self.backend == "jax" or self.compact is not None

    def twice_nll(self, pars: np.ndarray, data: np.ndarray) -> float:
        if self.exact_gradients:
            return -2.0 * float(self._logpdf_and_grad(np.asarray(pars, dtype=float), data)[0])
        return -2.0 * float(self.model.logpdf(np.asarray(pars, dtype=float), data)[0])

    def _check_points(self) -> list[np.ndarray]:
        """Parameter points where the compiled likelihood is compared with pyhf's: the POI mid-range, then every
        free parameter moved (so that every modifier's numbers count)."""
        pars = self.init.copy()
        pars[self.poi] = 0.5 * (self.bounds[self.poi, 0] + self.bounds[self.poi, 1])
        signs = np.where(np.arange(len(pars)) % 2 == 0, 0.37, -0.29)
        moved = np.where(self.fixed, pars, np.clip(pars + signs * self.steps, self.bounds[:, 0], self.bounds[:, 1]))
        return [pars, moved]

    def _compiled_mismatch(self, data: np.ndarray) -> str | None:
        """None when the compiled likelihood is pyhf's numpy likelihood at the check points, else what differs."""
        for pars in self._check_points():
            compiled = float(self._logpdf_and_grad(pars, data)[0])
            reference = float(self.model.logpdf(pars, data)[0])
            if not np.isclose(compiled, reference, rtol=1e-9, atol=1e-9):
                return f"compiled log-likelihood {compiled} differs from pyhf's {reference}"
        return None

    def fit(self, data: np.ndarray, poi_value: float | None = None, start: np.ndarray | None = None, label: str = "",
            maxiter: int | None = None, pyhf_like: bool = False, curvature: FitResult | None = None) -> FitResult:
        """Minimise -2 log L over the free parameters; ``poi_value`` fixes the POI (a conditional fit).

        A fit that does not converge is returned with ``converged=False`` (the
        caller decides: another start, a warning); it never raises. With
        ``pyhf_like``, the fit runs as pyhf's does (unscaled parameters): the
        cross-checks that ask where plain pyhf's fit ends.

        ``curvature``: a converged fit whose final quasi-Newton matrix starts
        this fit's (see :func:`slsqp`), on the parameters both fits leave free
        (identity elsewhere). Not with ``pyhf_like``.
        """
        import scipy.optimize

        fixed = self.fixed.copy()
        full = np.array(self.init if start is None else start, dtype=float)
        label = label or (PYHF_START if start is None else "given start")
        if poi_value is not None:
            fixed[self.poi] = True
            full[self.poi] = poi_value
        free = np.flatnonzero(~fixed)
        bounds = self.bounds[free]
        start_x = np.clip(full[free], bounds[:, 0], bounds[:, 1])
        # SLSQP sees z = (x - origin) * scale; unscaled, x itself (finite differences and SLSQP's
        # steps then follow pyhf's path exactly)
        scale = np.ones(len(free)) if pyhf_like else self.scales[free]
        origin = start_x if np.any(scale != 1.0) else np.zeros(len(free))
        z_bounds = (bounds - origin[:, None]) * scale[:, None]
        x0 = (start_x - origin) * scale

        if self.backend == "jax":
            import jax.numpy as jnp

            data_j = jnp.asarray(data)  # on the device once per fit

            def objective(z):
                full[free] = origin + z / scale
                # numpy parameters go straight into the compiled call (a jnp.asarray first costs 40% more per call)
                value, grad = self._logpdf_and_grad(full, data_j)
                return -2.0 * float(value), -2.0 * np.asarray(grad)[free] / scale

            jac = True
        elif self.compact is not None:
            data_n = np.asarray(data, dtype=float)
            value_and_grad = self.compact.value_and_grad

            def objective(z):
                full[free] = origin + z / scale
                value, grad = value_and_grad(full, data_n)
                return -2.0 * value, -2.0 * grad[free] / scale

            jac = True
        else:
            data_n = np.asarray(data)

            def objective(z):
                full[free] = origin + z / scale
                return -2.0 * float(self.model.logpdf(full, data_n)[0])

            jac = None
        tolerance = None if pyhf_like else self.tolerance
        hessian = None
        if curvature is not None and not pyhf_like and curvature.curvature is not None and np.all(scale == 1.0):
            hessian = _embed(curvature.curvature, curvature.free, free)
        if jac and _slsqp_kernel() is not None:
            result = slsqp(objective, x0, z_bounds, tolerance, maxiter or self.maxiter, hessian=hessian)
        else:
            result = scipy.optimize.minimize(
                objective, x0, method="SLSQP", jac=jac, bounds=z_bounds, tol=tolerance,
                options={"maxiter": maxiter or self.maxiter},
            )
        self.fits += 1
        full[free] = np.clip(origin + result.x / scale, bounds[:, 0], bounds[:, 1])
        return FitResult(
            pars=full.copy(), twice_nll=float(result.fun), iterations=int(result.nit), converged=bool(result.success),
            message=str(result.message), start=label, moved=bool(np.max(np.abs(full[free] - start_x), initial=0.0) > 1e-9),
            curvature=getattr(result, "hessian", None) if np.all(scale == 1.0) else None, free=free,
        )

    def probe(self, data: np.ndarray, result: FitResult, poi_fixed: bool) -> np.ndarray | None:
        """A point near ``result`` with a lower -2 log L, or None.

        Two kinds of steps: one along each parameter (half its constraint's
        width; lower by more than the tolerance means a saddle point, like the
        start of a symmetric systematic, or a fit stopped early: both pass the
        optimizer's own test), and, when mu_hat is at a bound of the POI, a
        small step into the range (any decrease: the fit stopped at the bound
        before the minimum, as SLSQP does along a flat POI direction). With
        jax, all steps are one vectorised evaluation.
        """
        from recast.likelihood.quality import BOUND_FRACTION, TWICE_NLL_TOLERANCE

        candidates, thresholds = [], []
        for index in np.flatnonzero(~self.fixed):
            if poi_fixed and index == self.poi:
                continue
            low, high = self.bounds[index]
            for sign in (-1.0, 1.0):
                pars = result.pars.copy()
                pars[index] = min(max(pars[index] + sign * self.steps[index], low), high)
                if pars[index] != result.pars[index]:
                    candidates.append(pars)
                    thresholds.append(result.twice_nll - TWICE_NLL_TOLERANCE)
        if not poi_fixed:
            low, high = self.bounds[self.poi]
            mu = result.pars[self.poi]
            if min(mu - low, high - mu) <= BOUND_FRACTION * (high - low):
                pars = result.pars.copy()
                pars[self.poi] = mu + (1e-3 if mu - low <= high - mu else -1e-3) * (high - low)
                candidates.append(pars)
                thresholds.append(result.twice_nll - BOUND_DECREASE)
        if not candidates:
            return None
        if self.exact_gradients:
            # vectorised in chunks of PROBE_CHUNK rows, one shape for every model (compiled once per
            # structure): a whole batch's intermediate tensors outgrow the caches (1Lbb: 253 rows of
            # pyhf's padded tensors, 72 ms in one call, 20 ms in chunks of 32). Steps probed before on
            # the same data are not evaluated again: a free fit that stays at the background fit
            # (sbottom's, mu_hat at 0) shares all its steps but the POI's with that fit's probe.
            if self._probed[0] is not data:
                self._probed = (data, {})
            known = self._probed[1]
            keys = [pars.tobytes() for pars in candidates]
            new = [i for i, key in enumerate(keys) if key not in known]
            if new:
                rows = -(-len(new) // PROBE_CHUNK) * PROBE_CHUNK
                batch = np.tile(result.pars, (rows, 1))
                batch[: len(new)] = [candidates[i] for i in new]
                found = -2.0 * np.concatenate([
                    np.asarray(self._logpdf_batch(batch[i : i + PROBE_CHUNK], data)) for i in range(0, rows, PROBE_CHUNK)
                ])
                known.update((keys[i], float(value)) for i, value in zip(new, found))
            values = np.array([known[key] for key in keys])
        else:
            values = np.array([self.twice_nll(pars, data) for pars in candidates])
        lower = np.flatnonzero(values < np.array(thresholds))
        if not len(lower):
            return None
        return candidates[int(lower[np.argmin(values[lower])])]

    def _at_poi_bound(self, result: FitResult) -> bool:
        from recast.likelihood.quality import BOUND_FRACTION

        low, high = self.bounds[self.poi]
        mu = result.pars[self.poi]
        return min(mu - low, high - mu) <= BOUND_FRACTION * (high - low)

    def minimum(self, data: np.ndarray, quality, name: str, start: np.ndarray | None, start_label: str,
                poi_value: float | None = None, curvature: FitResult | None = None) -> FitResult:
        """The lowest minimum found: one fit, then more starts where the cheap checks suggest trouble.

        Records the fit (and every alternative) in ``quality.fits[name]`` and
        warns when the starts disagree or nothing converged (see
        :mod:`recast.likelihood.quality`).
        """
        from recast.likelihood.quality import TWICE_NLL_TOLERANCE

        first = self.fit(data, poi_value=poi_value, start=start, label=start_label, curvature=curvature)
        results = [first]
        reasons = []
        if not first.converged:
            reasons.append(f"the fit did not converge ({first.message})")
        lower = self.probe(data, first, poi_fixed=poi_value is not None)
        if lower is not None:
            reasons.append("a step along one parameter lowers -2 log L (a saddle point or an early stop)")
            results.append(self.fit(data, poi_value=poi_value, start=lower, label="the probe's lower point"))
        if reasons and start is not None:
            results.append(self.fit(data, poi_value=poi_value, start=None, label=PYHF_START, pyhf_like=True))
        elif poi_value is None and start is not None and self._at_poi_bound(first):
            # mu_hat at a bound, and the fit converged to a point the probe cannot improve. Where would
            # plain pyhf's fit, from its suggested init, end? Where it starts if the gradient vanishes
            # there (issue 11's example): one SLSQP iteration tells; a fit that moves off pyhf's start
            # is not followed (the full fit from there runs when the checks above fire).
            side = "lower" if first.pars[self.poi] - self.bounds[self.poi, 0] <= self.bounds[self.poi, 1] - first.pars[self.poi] else "upper"
            step = self.fit(data, start=None, label=PYHF_START, maxiter=1, pyhf_like=True)
            if not step.moved:
                step.converged = True
                results.append(step)
                reasons.append(f"mu_hat at the {side} POI bound; pyhf's start is stationary (its fit stays there)")
            else:
                quality.note(f"{name}: mu_hat at the {side} POI bound, a minimum the probe cannot improve; pyhf's start is not stationary")
        converged = [r for r in results if r.converged] or results
        lowest = min(converged, key=lambda r: r.twice_nll)
        # minima within the tolerance are the same minimum: keep the first fit's, whose path is
        # pyhf's (its numbers then stay pyhf's to 1e-5), and move only to a genuinely lower one
        best = first if first in converged and first.twice_nll - lowest.twice_nll <= TWICE_NLL_TOLERANCE else lowest
        what = "free fit" if poi_value is None else f"fit with mu fixed at {poi_value:g}"
        summary = best.summary(self.poi, conditional=poi_value is not None)
        if len(results) > 1:
            summary["alternatives"] = [r.summary(self.poi, conditional=poi_value is not None) for r in results if r is not best]
        quality.fits[name] = summary
        spread = max(r.twice_nll for r in converged) - best.twice_nll
        from_pyhf_start = next((r for r in results if r.start == PYHF_START), None)
        data_name = "data" if "data" in name else "Asimov data"

        def described(r: FitResult) -> str:
            mu_text = "" if poi_value is not None else f" (mu_hat {r.pars[self.poi]:.4g})"
            return f"-2 log L {r.twice_nll:.4f}{mu_text} from {r.start}" + ("" if r.moved else ", where it started")

        if not best.converged:
            quality.warn(f"{self.where}: the {what} to the {data_name} did not converge from {len(results)} start(s): {best.message}")
        elif from_pyhf_start is not None and from_pyhf_start.converged and from_pyhf_start.twice_nll - best.twice_nll > TWICE_NLL_TOLERANCE:
            # plain pyhf starts there: its numbers come from the higher minimum
            quality.warn(
                f"{self.where}: the {what} to the {data_name} ends at {described(from_pyhf_start)}, but another start reaches "
                f"{described(best)}: the lowest is used; plain pyhf starts from its suggested init and gives other "
                "numbers. This point's result is doubtful"
            )
        elif spread > TWICE_NLL_TOLERANCE:
            others = "; ".join(described(r) for r in converged if r is not best)
            quality.note(f"{name}: {'; '.join(reasons)}: {others} stopped higher; the lowest, {described(best)}, is used")
        elif reasons:
            quality.note(f"{name}: {'; '.join(reasons)}: refitted from {len(results) - 1} other start(s), same minimum")
        return best


# scipy's SLSQP exit modes (scipy/optimize/_slsqp_py.py)
_SLSQP_EXIT = {
    0: "Optimization terminated successfully", 2: "More equality constraints than independent variables",
    3: "More than 3*n iterations in LSQ subproblem", 4: "Inequality constraints incompatible",
    5: "Singular matrix E in LSQ subproblem", 6: "Singular matrix C in LSQ subproblem",
    7: "Rank-deficient equality constraint subproblem HFTI", 8: "Positive directional derivative for linesearch",
    9: "Iteration limit reached",
}


def _slsqp_kernel():
    """scipy's compiled SLSQP step (scipy >= 1.16), or None: then ``scipy.optimize.minimize`` runs the fits."""
    try:
        from scipy.optimize._slsqplib import slsqp as kernel
    except ImportError:
        return None
    return kernel


def _embed(matrix: np.ndarray, known: np.ndarray, free: np.ndarray) -> np.ndarray:
    """``matrix`` (over the parameters ``known``) on the parameters ``free``: its entries where both
    are free, the identity (SLSQP's own start) for parameters it does not cover."""
    out = np.eye(len(free))
    where = {int(k): i for i, k in enumerate(known)}
    mine = np.array([i for i, f in enumerate(free) if int(f) in where], dtype=int)
    theirs = np.array([where[int(free[i])] for i in mine], dtype=int)
    if len(mine):
        out[np.ix_(mine, mine)] = matrix[np.ix_(theirs, theirs)]
    return out


def _packed_ldl(matrix: np.ndarray) -> np.ndarray | None:
    """A symmetric positive definite matrix as SLSQP keeps it: L D L', packed by columns, D on the
    diagonal places (scipy's slsqp.c); None when it is not positive definite."""
    try:
        chol = np.linalg.cholesky(matrix)
    except np.linalg.LinAlgError:
        return None
    diag = np.diag(chol)
    if not np.all(np.isfinite(chol)) or np.any(diag <= 0):
        return None
    unit = chol / diag  # columns scaled: unit lower triangular
    n = len(matrix)
    packed = np.empty(n * (n + 1) // 2)
    at = 0
    for j in range(n):
        packed[at] = diag[j] ** 2
        packed[at + 1 : at + n - j] = unit[j + 1 :, j]
        at += n - j
    return packed


def _unpacked(packed: np.ndarray, n: int) -> np.ndarray:
    """The matrix L D L' of SLSQP's packed factors."""
    unit = np.eye(n)
    d = np.empty(n)
    at = 0
    for j in range(n):
        d[j] = packed[at]
        unit[j + 1 :, j] = packed[at + 1 : at + n - j]
        at += n - j
    return (unit * d) @ unit.T


def slsqp(objective: Callable, x0: np.ndarray, bounds: np.ndarray, tolerance: float | None, maxiter: int,
          hessian: np.ndarray | None = None):
    """``scipy.optimize.minimize(objective, x0, method="SLSQP", jac=True, bounds=bounds, tol=tolerance)``, minus its wrappers.

    The same compiled SLSQP steps, called with the same arrays in the same
    order as scipy 1.17's ``_minimize_slsqp`` for bound constraints only (a
    test checks that both give the same fits, bit for bit). scipy's
    wrappers (ScalarFunction, MemoizeJac, bound and constraint handling) cost
    about 3 ms of a 12 ms fit of a sbottom model; here one evaluation gives the
    value and the gradient, kept for SLSQP's next request at the same point.

    ``hessian``: SLSQP's quasi-Newton matrix starts as this matrix instead of
    the identity (a converged neighbouring fit's, see :meth:`Fitter.fit`).
    SLSQP always starts from the identity, so it is entered as the BFGS
    update of an iteration that changes nothing: the step ``s`` and gradient
    change ``y = H s`` leave H as it is. The result's ``hessian`` is SLSQP's
    matrix at the end.
    """
    from scipy.optimize import OptimizeResult

    kernel = _slsqp_kernel()
    n = len(x0)
    low, high = bounds[:, 0].astype(float), bounds[:, 1].astype(float)
    x = np.clip(np.asarray(x0, dtype=float).reshape(-1), low, high)
    xl, xu = low.copy(), high.copy()
    xl[~np.isfinite(low)] = np.nan
    xu[~np.isfinite(high)] = np.nan
    acc = 1e-6 if tolerance is None else float(tolerance)
    state = {"acc": acc, "alpha": 0.0, "f0": 0.0, "gs": 0.0, "h1": 0.0, "h2": 0.0, "h3": 0.0, "h4": 0.0, "t": 0.0,
             "t0": 0.0, "tol": 10.0 * acc, "exact": 0, "inconsistent": 0, "reset": 0, "iter": 0,
             "itermax": int(maxiter), "line": 0, "m": 0, "meq": 0, "mode": 0, "n": n}
    indices = np.zeros(max(2 * n + 2, 1), dtype=np.int32)
    buffer = np.zeros(max(n * (n + 1) // 2 + 8 * n * n + 35 * n + 28 + 2 * n * (n + 1), 1), dtype=np.float64)
    mult = np.zeros(max(1, 2 * n + 2), dtype=np.float64)
    constraints = np.zeros((1, n), dtype=np.float64, order="F")
    values = np.zeros(1, dtype=np.float64)
    # the last evaluation: SLSQP asks for the value (mode 1), then maybe for the gradient at the same point (-1)
    cached = [x.copy(), *objective(x.copy())]
    evaluations = 1

    def evaluate(at: np.ndarray) -> None:
        nonlocal evaluations
        if not np.array_equal(at, cached[0]):
            cached[:] = [np.array(at, dtype=float), *objective(np.array(at, dtype=float))]
            evaluations += 1

    fx, g = float(cached[1]), cached[2]
    packed = None if hessian is None or n == 0 else _packed_ldl(np.asarray(hessian, dtype=float))
    if packed is not None:
        # the state MODE0 leaves after its first BFGS reset (slsqp.c), then the entry after a gradient
        # evaluation (mode -1): a BFGS update of the given matrix with s = e_0, y = H e_0, a no-op
        n2 = n * (n + 1) // 2
        state.update(exact=0, acc=abs(acc), tol=10.0 * abs(acc), iter=0, reset=1, mode=-1)
        buffer[:n2] = packed
        step = np.zeros(n)
        step[0] = 1.0
        s_at, v_at = n2 + n, n2 + n + 2 * (n + 1)  # s and v in the buffer (m = 0: no multipliers mu)
        buffer[s_at : s_at + n] = step
        buffer[v_at : v_at + n] = np.asarray(g, dtype=float) - hessian @ step
    while True:
        kernel(state, fx, g, constraints, values, x, mult, xl, xu, buffer, indices)
        if state["mode"] == 1:
            evaluate(x)
            fx = float(cached[1])
        elif state["mode"] == -1:
            evaluate(x)
            g = cached[2]
        else:
            break
    mode = state["mode"]
    hess = _unpacked(buffer[: n * (n + 1) // 2], n) if n else None
    return OptimizeResult(x=x, fun=fx, jac=g, nit=state["iter"], nfev=evaluations, status=mode,
                          message=_SLSQP_EXIT.get(mode, str(mode)), success=mode == 0, hessian=hess)


def constraint_widths(config) -> np.ndarray:
    """Each parameter's constraint width (1 for a normsys or histosys, the relative uncertainty of a
    staterror, 1/sqrt(tau) of a shapesys); NaN for an unconstrained parameter."""
    widths = np.full(len(config.suggested_init()), np.nan)
    for name in config.par_order:
        entry = config.par_map[name]
        paramset, where = entry["paramset"], entry["slice"]
        if not getattr(paramset, "constrained", False):
            continue
        try:
            found = np.asarray(paramset.width(), dtype=float)
        except (AttributeError, RuntimeError, TypeError):
            continue
        if found.size == where.stop - where.start:
            widths[where] = found
    return widths


def _probe_steps(widths: np.ndarray, bounds: np.ndarray) -> np.ndarray:
    """One probe step per parameter: half the constraint's width, or a tenth of a free parameter's range."""
    steps = 0.1 * (bounds[:, 1] - bounds[:, 0])
    constrained = np.isfinite(widths) & (widths > 0)
    steps[constrained] = np.minimum(0.5 * widths[constrained], steps[constrained])
    return steps


def make_calculator(fitter: Fitter, data, test_stat: str, sqrtqmuA: float):
    """pyhf's AsymptoticCalculator for a known sqrt(q_mu,A): its distributions and p-values, no fits."""
    from pyhf.infer.calculators import AsymptoticCalculator

    calculator = AsymptoticCalculator(
        data,
        fitter.model,
        init_pars=list(fitter.init),
        par_bounds=[list(b) for b in fitter.bounds],
        fixed_params=list(fitter.fixed),
        test_stat=test_stat,
    )
    calculator.sqrtqmuA_v = sqrtqmuA
    return calculator


class HypoTest:
    """CLs of one signal point at any mu, with the mu-independent fits done once.

    The numbers are pyhf's: the same fits (conditional and free, to the data
    and to the Asimov data made by the background-only fit), the same test
    statistic (``qtilde`` or ``q``) and pyhf's own asymptotic distributions.
    """

    def __init__(self, fitter: Fitter, data, test_stat: str = "qtilde", start: np.ndarray | None = None):
        from recast.likelihood.quality import FitQuality

        if test_stat not in TEST_STATISTICS:
            raise ValueError(f"test statistic {test_stat!r}: expected one of {', '.join(TEST_STATISTICS)}")
        self.fitter = fitter
        self.data = np.asarray(data, dtype=float)
        self.test_stat = test_stat
        self.start = start
        self.quality = FitQuality(fitter.where)
        self._free: dict[str, FitResult] = {}
        self._conditional: dict[str, dict[float, FitResult]] = {"data": {}, "asimov": {}}
        self._asimov: np.ndarray | None = None
        self._asimov_pars: np.ndarray | None = None
        self._curvature: FitResult | None = None

    # the fits that do not depend on mu
    @property
    def asimov_data(self) -> np.ndarray:
        if self._asimov is None:
            # qtilde and q build the Asimov data from the background-only (mu=0) fit to the data
            label = "a neighbouring point's background fit" if self.start is not None else PYHF_START
            fit = self.fitter.minimum(self.data, self.quality, "background_data", self.start, label, poi_value=0.0)
            self._asimov_pars = fit.pars
            # its quasi-Newton matrix starts the later fits (CURVATURE_WARM_START)
            self._curvature = fit if CURVATURE_WARM_START and fit.converged else None
            self._asimov = self.fitter.expected_data(fit.pars)
        return self._asimov

    def _dataset(self, which: str) -> np.ndarray:
        return self.data if which == "data" else self.asimov_data

    def free_fit(self, which: str) -> FitResult:
        if which not in self._free:
            self.asimov_data
            if which == "asimov":
                # The Asimov data (main and auxiliary) are the expectation at the background fit's
                # parameters: there every Poisson and constraint term is at its maximum, so that point
                # is the free fit's exact minimum; no fit is needed (pyhf's fit lands near it).
                pars = self._asimov_pars
                fit = FitResult(pars=pars.copy(), twice_nll=self.fitter.twice_nll(pars, self.asimov_data),
                                start="the background fit (the exact minimum)", moved=False)
                self.quality.fits["free_asimov"] = fit.summary(self.fitter.poi)
            else:
                fit = self.fitter.minimum(self.data, self.quality, "free_data", self._asimov_pars, "the background fit",
                                          curvature=self._curvature)
            self._free[which] = fit
        return self._free[which]

    def conditional_fit(self, which: str, mu: float) -> FitResult:
        from recast.likelihood.quality import TWICE_NLL_TOLERANCE

        done = self._conditional[which]
        if mu not in done:
            data = self._dataset(which)
            start, label = self._conditional_start(which, mu, data)
            fit = self.fitter.fit(data, poi_value=mu, start=start, label=label, curvature=self._curvature)
            self.quality.conditional_fits += 1
            if not fit.converged:
                retry = self.fitter.fit(data, poi_value=mu, start=None)
                if retry.converged:
                    fit = retry
                else:
                    self.quality.conditional_not_converged += 1
                    self.quality.warn(f"{self.fitter.where}: the fit to the {which} data with mu fixed at {mu:g} did not converge: {fit.message}")
            free = self.free_fit(which)
            if fit.twice_nll < free.twice_nll - TWICE_NLL_TOLERANCE:
                # the free fit missed the minimum: the conditional fit is below it; refit from there
                refit = self.fitter.fit(data, start=fit.pars, label=f"the fit at mu={mu:g}")
                self.quality.warn(
                    f"{self.fitter.where}: the fit to the {which} data with mu fixed at {mu:g} reaches -2 log L "
                    f"{fit.twice_nll:.4f}, below the free fit's {free.twice_nll:.4f}: the free fit missed the minimum "
                    f"(refitted: {refit.twice_nll:.4f}, mu_hat {refit.pars[self.fitter.poi]:.4g}); this point's result is doubtful"
                )
                if refit.twice_nll < free.twice_nll:
                    self._free[which] = refit
                    self.quality.fits[f"free_{'data' if which == 'data' else 'asimov'}"] = refit.summary(self.fitter.poi)
            done[mu] = fit
        return done[mu]

    def _conditional_start(self, which: str, mu: float, data: np.ndarray) -> tuple[np.ndarray, str]:
        """The lowest of the known points that can start the fit at ``mu``, each evaluated once.

        Candidates: this dataset's nearest conditional fit, or its free fit; and
        the other dataset's fit at the same mu moved by the difference of the
        two datasets' free fits. The data and their Asimov data share the
        background fit, and the nuisance parameters respond to mu nearly alike
        in both, so the second candidate is often close to the minimum (it
        halves the iterations of the conditional fits on the published
        likelihoods).
        """
        done = self._conditional[which]
        if done:
            nearest = min(done, key=lambda known: abs(known - mu))
            candidates = [(done[nearest].pars, f"the fit at mu={nearest:g}")]
        else:
            candidates = [(self.free_fit(which).pars, "the free fit")]
        other = "asimov" if which == "data" else "data"
        if mu in self._conditional[other] and other in self._free:
            shifted = self._conditional[other][mu].pars + self.free_fit(which).pars - self._free[other].pars
            shifted = np.clip(shifted, self.fitter.bounds[:, 0], self.fitter.bounds[:, 1])
            shifted[self.fitter.poi] = mu
            candidates.append((shifted, f"the {other} fit at mu={mu:g}, moved by the free fits' difference"))
        if len(candidates) == 1:
            return candidates[0]
        values = []
        for pars, _ in candidates:
            pars = pars.copy()
            pars[self.fitter.poi] = mu
            values.append(self.fitter.twice_nll(pars, data))
        return candidates[int(np.argmin(values))]

    def qmu(self, which: str, mu: float) -> float:
        """pyhf's qmu / qmu_tilde: 0 when the free fit's POI is above mu, else the clipped likelihood ratio."""
        if self.free_fit(which).pars[self.fitter.poi] > mu:
            return 0.0
        conditional = self.conditional_fit(which, mu)
        free = self.free_fit(which)  # the conditional fit may have found a better free minimum
        if free.pars[self.fitter.poi] > mu:
            return 0.0
        return max(conditional.twice_nll - free.twice_nll, 0.0)

    def _observed_teststat(self, mu: float, sqrtqmuA: float) -> float:
        sqrtqmu = float(np.sqrt(self.qmu("data", mu)))
        if self.test_stat == "q" or sqrtqmu <= sqrtqmuA:
            return sqrtqmu - sqrtqmuA
        return (sqrtqmu**2 - sqrtqmuA**2) / (2 * sqrtqmuA)

    def sqrtqmuA(self, mu: float) -> float:
        return float(np.sqrt(self.qmu("asimov", mu)))

    def cls_expected(self, mu: float) -> list[float]:
        """Expected CLs at -2, -1, 0, +1, +2 sigma (needs only the fits to the Asimov data)."""
        calculator = make_calculator(self.fitter, self.data, self.test_stat, self.sqrtqmuA(mu))
        sb, b = calculator.distributions(mu)
        _, _, cls_band = calculator.expected_pvalues(sb, b)
        return [float(v) for v in cls_band]

    def cls(self, mu: float) -> tuple[float, list[float]]:
        """Observed CLs and the expected band (-2..+2 sigma) at ``mu``."""
        sqrtqmuA = self.sqrtqmuA(mu)
        calculator = make_calculator(self.fitter, self.data, self.test_stat, sqrtqmuA)
        sb, b = calculator.distributions(mu)
        _, _, cls_obs = calculator.pvalues(self._observed_teststat(mu, sqrtqmuA), sb, b)
        _, _, cls_band = calculator.expected_pvalues(sb, b)
        return float(cls_obs), [float(v) for v in cls_band]

    def cls_observed(self, mu: float) -> float:
        return self.cls(mu)[0]

    @property
    def best_fit_background(self) -> np.ndarray | None:
        """Parameters of the background-only fit, to warm-start a neighbouring signal point."""
        return self._asimov_pars
