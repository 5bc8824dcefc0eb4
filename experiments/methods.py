"""Methods compared on the same data: the recipes of configs/recipes.py and the baselines.

Every method is ``fit_and_assign(key, data: RunData) -> (posterior [S_test, K], targets [K])``:
the held-out regime posterior and the main target node of each of its K regimes
(``identify.OBSERVATIONAL`` for the observational one; ``evaluate.NO_TARGETS``
where a method has no notion of targets). Pure and vmappable over seeds, so one
``jit(vmap(...))`` runs every seed of a setting.
"""
from __future__ import annotations

import jax.numpy as jnp

from configs.recipes import ABLATIONS, BASELINES, METHODS, RECIPES  # noqa: F401 (re-exported)
from experiments.synthetic import RunData
from vcm_jax import api, baselines, evaluate, graphs, predict, train
from vcm_jax.config import FitConfig


def recipe_config(name: str, n_nodes: int, max_steps: int = 0, passes: int = 0) -> FitConfig:
  """A recipe's FitConfig; ``max_steps > 0`` caps the steps (smoke tests); ``passes``
  bounds the graphs' longest path + 1 (decoders without teacher forcing need no more)."""
  cfg = FitConfig(**RECIPES[name])
  if max_steps > 0:
    cfg = cfg.replace(num_steps=min(cfg.num_steps, max_steps),
                      pooled_steps=min(cfg.pooled_steps, max_steps))
  if not cfg.teacher_forcing:
    cfg = cfg.replace(propagation_passes=passes)
  if cfg.decoder == "free":
    cfg = cfg.replace(n_regimes=n_nodes + 1)
  return cfg


def uses_passes(name: str) -> bool:
  """Whether a method's compiled program depends on the graphs' depth."""
  return RECIPES.get(name, {}).get("teacher_forcing", True) is False


def make_method(name: str, *, n_nodes: int, max_parents: int, max_steps: int = 0,
                passes: int = 0):
  """``fit_and_assign(key, data) -> (posterior, targets)`` for one method name."""
  if name in RECIPES:
    return _vae_method(recipe_config(name, n_nodes, max_steps, passes), n_nodes, max_parents)
  structured_targets = jnp.arange(n_nodes + 1) - 1
  if name == "em":
    def em(key, data: RunData):
      fit = baselines.linear_em(key, data.x, data.true.adj)
      return baselines.structured_posterior(fit.params, data.x_test), structured_targets
    return em
  if name == "gmm":
    def gmm(key, data: RunData):
      fit = baselines.gaussian_mixture(key, data.x, n_components=n_nodes + 1)
      return (baselines.gmm_posterior(fit, data.x_test),
              jnp.full((n_nodes + 1,), evaluate.NO_TARGETS))
    return gmm
  if name == "pooled":
    def pooled(key, data: RunData):
      fit = baselines.pooled_fit(data.x, data.true.adj)
      return baselines.structured_posterior(fit.params, data.x_test), structured_targets
    return pooled
  if name == "oracle":
    def oracle(key, data: RunData):
      fit = baselines.oracle_fit(data.x, data.r, data.true.adj, n_regimes=n_nodes + 1)
      return baselines.structured_posterior(fit.params, data.x_test), structured_targets
    return oracle
  raise ValueError(f"unknown method {name!r}; expected one of {', '.join(METHODS)}")


def _vae_method(cfg: FitConfig, n_nodes: int, max_parents: int):
  trainer = train.make_trainer(cfg, n_nodes=n_nodes, max_parents=max_parents)

  def vae(key, data: RunData):
    idx, mask = data.parent_idx, data.parent_mask
    result = train.fit_arrays(key, data.x, idx, mask, trainer=trainer)
    fit = api.from_result(trainer.model, result, data.x, idx, mask,
                          graphs.topological_order(data.true.adj))
    # A recipe assigns with the posterior it trains its decoder against.
    post = predict.posterior(trainer.model, result, data.x_test, idx, mask)
    return post, fit.identification.target

  return vae
