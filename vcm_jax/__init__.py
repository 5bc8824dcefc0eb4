"""vcm_jax: causal modelling under unknown interventional regimes, in pure JAX.

The public entry is ``vcm_jax.fit(x, graph)`` (``api.py``); the modules below it
are pure functions a researcher can call inside their own JAX code. ``vcm_jax.families``
(the held-out simulators, NumPy and SciPy's ``stats``) is imported on its own:
``from vcm_jax import families``.
"""
from vcm_jax import (api, baselines, capacity, checks, choose, clustering, config, datasets,
                     densities, diagnose, elbo, evaluate, graphs, gumbel,
                     identifiability, identify, init, inputs, io, learn, metrics, mixture_scm,
                     model, named, networks, parameters, predict, regime_table, rows, scm,
                     select, sharding, structure, train, units)
from vcm_jax.api import Fit, FitError, FitWarning, fit, fit_graph
from vcm_jax.config import FitConfig

__version__ = "0.1.0"
__all__ = ["Fit", "FitConfig", "FitError", "FitWarning", "fit", "fit_graph", "api", "baselines",
           "capacity", "checks", "choose", "clustering", "config", "datasets", "densities",
           "diagnose", "elbo", "evaluate", "graphs", "gumbel", "identifiability",
           "identify", "init", "inputs", "io", "learn", "metrics", "mixture_scm", "model",
           "named", "networks", "parameters", "predict", "regime_table", "rows", "scm",
           "select", "sharding", "structure", "train", "units"]
