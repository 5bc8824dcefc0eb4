"""vcm_jax: causal modelling under unknown interventional regimes, in pure JAX."""
from vcm_jax import (baselines, clustering, elbo, graphs, gumbel, identify, io, metrics, models,
                     scm, train)

__version__ = "0.1.0"
__all__ = ["baselines", "clustering", "elbo", "graphs", "gumbel", "identify", "io", "metrics",
           "models", "scm", "train"]
