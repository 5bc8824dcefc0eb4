"""vcm_jax: causal modelling under unknown interventional regimes, in pure JAX."""
from vcm_jax import elbo, graphs, gumbel, identify, metrics, models, scm, train

__version__ = "0.1.0"
__all__ = ["elbo", "graphs", "gumbel", "identify", "metrics", "models", "scm", "train"]
