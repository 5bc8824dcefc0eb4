"""Methods compared on the same data: VAE recipes, ablations and baselines.

Every method is ``fit_and_assign(key, data: RunData) -> (posterior [S_test, K], targets [K])``:
the held-out regime posterior and the target node of each of its K categories
(``identify.OBSERVATIONAL`` for the observational one; -2 where a method has no
notion of targets). Pure and vmappable over seeds, so one ``jit(vmap(...))``
runs every seed of a setting, and settings of equal shapes reuse the compiled
program.
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from configs import er, paper
from experiments.synthetic import RunData
from vcm_jax import baselines, identify, train

NO_TARGETS = -2

# The public reference code's choices (DESIGN section 2): straight-through z, every
# mechanism fed the whole one-hot z (the free decoder with K = N + 1), a fixed
# uniform prior, cyclical KL annealing, unit variance, random initialisation,
# its optimiser and batch, and a decoder that reads its own predicted means of
# the parents instead of their observed values (no teacher forcing).
REFERENCE = dict(paper.RECIPE)
REFERENCE.update({
    ("model", "decoder"): "free",
    ("model", "teacher_forcing"): False,
    ("train", "estimator"): "straight_through",
    ("train", "kl_schedule"): "cyclical",
    ("train", "kl_cycles"): 4,
})

# One choice of `vcm` flipped at a time (the paper's promised ablation).
ABLATIONS = {
    "vcm_gumbel": {("train", "estimator"): "gumbel", ("train", "posterior"): "encoder"},
    "vcm_straight_through": {("train", "estimator"): "straight_through",
                             ("train", "posterior"): "encoder"},
    "vcm_encoder_q": {("train", "posterior"): "encoder"},
    "vcm_uniform_prior": {("train", "prior"): "uniform"},
    "vcm_unit_variance": {("model", "scale"): "unit"},
    "vcm_free_decoder": {("model", "decoder"): "free"},
    "vcm_no_teacher_forcing": {("model", "teacher_forcing"): False},
    "vcm_random_init": {("train", "init"): "random", ("train", "pooled_steps"): 0},
    "vcm_one_restart": {("train", "restarts"): 1},
}

RECIPES = {"vcm": {}, "paper": dict(paper.RECIPE), "reference": REFERENCE, **ABLATIONS}
BASELINES = ("em", "gmm", "pooled", "oracle")
ALL = tuple(RECIPES) + BASELINES


def recipe_config(overrides: dict, n_nodes: int, max_steps: int = 0,
                  passes: int = 0) -> train.FitConfig:
  """A recipe's FitConfig: configs/er.py's model and train groups with ``overrides``;
  ``max_steps > 0`` caps the steps (smoke tests); ``passes`` bounds the graphs'
  longest path + 1 (decoders without teacher forcing need no more passes)."""
  model, tr = er.model_config(), er.train_config()
  for (group, key), value in overrides.items():
    (model if group == "model" else tr)[key] = value
  if max_steps > 0:
    tr.num_steps = min(tr.num_steps, max_steps)
    tr.pooled_steps = min(tr.pooled_steps, max_steps)
  cfg = train.FitConfig.from_config(model, tr)
  cfg = dataclasses.replace(cfg, propagation_passes=passes)
  if cfg.decoder == "free":
    cfg = dataclasses.replace(cfg, n_regimes=n_nodes + 1)
  return cfg


def uses_passes(name: str) -> bool:
  """Whether a method's compiled program depends on the graphs' depth."""
  return RECIPES.get(name, {}).get(("model", "teacher_forcing"), True) is False


def make_method(name: str, *, n_nodes: int, max_parents: int, max_steps: int = 0,
                passes: int = 0):
  """``fit_and_assign(key, data) -> (posterior, targets)`` for one method name."""
  if name in RECIPES:
    cfg = recipe_config(RECIPES[name], n_nodes, max_steps, passes if uses_passes(name) else 0)
    return _vae_method(cfg, n_nodes, max_parents)
  structured_targets = jnp.arange(n_nodes + 1) - 1
  if name == "em":
    def em(key, data: RunData):
      fit = baselines.linear_em(key, data.x, data.true.adj)
      return baselines.structured_posterior(fit.params, data.x_test), structured_targets
    return em
  if name == "gmm":
    def gmm(key, data: RunData):
      fit = baselines.gaussian_mixture(key, data.x, n_components=n_nodes + 1)
      return baselines.gmm_posterior(fit, data.x_test), jnp.full((n_nodes + 1,), NO_TARGETS)
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
  raise ValueError(f"unknown method {name!r}; expected one of {', '.join(ALL)}")


def _vae_method(cfg: train.FitConfig, n_nodes: int, max_parents: int):
  fit = train.make_fit(cfg, n_nodes=n_nodes, max_parents=max_parents)
  model = fit.model

  def vae(key, data: RunData):
    idx, mask = data.parent_idx, data.parent_mask
    result = fit(key, data.x, idx, mask)
    # A recipe assigns with the posterior it trains its decoder against.
    if cfg.posterior == "exact":
      post = train.data_posterior(model, result, data.x_test, idx, mask)
    else:
      post = train.encoder_posterior(model, result, data.x_test)
    if model.structured:
      return post, jnp.arange(n_nodes + 1) - 1
    # Free decoder: clusters carry no meaning; read the targets off the mechanisms.
    mean, scale = train.regime_mechanisms(model, result, data.x, idx, mask)
    div = identify.mechanism_divergence(mean, scale)
    sizes = train.data_posterior(model, result, data.x, idx, mask).mean(0)
    obs = identify.free_observational(div, sizes)
    return post, identify.free_targets(div, obs)

  return vae
