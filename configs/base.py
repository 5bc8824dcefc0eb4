"""Config groups every experiment config shares, built from ``vcm_jax.FitConfig``.

The fit's keys, their defaults and allowed values are defined once, in the
library; the ``model`` and ``train`` groups here are that definition plus the
loop's own keys (``log_every``, ``checkpoint_every``).
"""
import ml_collections

from vcm_jax import config as fit_config


def fit_groups(recipe: dict | None = None):
  """``(model, train)`` ConfigDicts: FitConfig's defaults with ``recipe``'s overrides."""
  groups = fit_config.config_groups(fit_config.FitConfig(**(recipe or {})))
  model = ml_collections.ConfigDict(groups["model"])
  train = ml_collections.ConfigDict(groups["train"])
  train.log_every = 100
  train.checkpoint_every = 100   # steps per compiled chunk and checkpoint; 0: one chunk
  return model, train


def mesh_config():
  """Devices: runs spread over ``runs``, one dataset's samples split over ``data``."""
  c = ml_collections.ConfigDict()
  c.runs = 1
  c.data = 1
  return c
