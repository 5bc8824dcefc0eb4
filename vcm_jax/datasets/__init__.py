"""Real data sets shipped with the package, readable without network access."""
from vcm_jax.datasets.sachs import SachsData, load_sachs

__all__ = ["SachsData", "load_sachs"]
