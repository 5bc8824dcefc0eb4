"""vcm_jax: causal modelling under unknown interventional regimes, in pure JAX.

The public entry is ``vcm_jax.fit(x, graph)`` (``api.py``); the modules below it
are pure functions a researcher can call inside their own JAX code.
"""
from vcm_jax import (api, baselines, choose, clustering, config, densities, diagnose, elbo,
                     evaluate, graphs,
                     gumbel, identify, init, io, metrics, model, named, networks, predict, rows, scm,
                     select, train, units)
from vcm_jax.api import Fit, FitError, FitWarning, fit, fit_graph
from vcm_jax.config import FitConfig

__version__ = "0.1.0"
__all__ = ["Fit", "FitConfig", "FitError", "FitWarning", "fit", "fit_graph", "api", "choose", "named", "baselines", "clustering", "config",
           "densities", "elbo", "evaluate", "graphs", "gumbel", "identify", "init", "io",
           "metrics", "model", "networks", "predict", "rows", "scm", "select", "train", "units"]
