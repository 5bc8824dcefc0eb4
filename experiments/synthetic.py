"""Synthetic experiment: sample graphs, SCMs and data, fit, evaluate.

Every piece is pure and vmapped over runs: ``setup`` (graph -> SCM -> data ->
initial train state), the trainer's ``run_steps`` (a chunk of steps) and
``evaluate``. The driver (experiments/driver.py) jits each once and loops over
chunks on the host only to log and checkpoint.
"""
from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from vcm_jax import graphs, identify, metrics, scm, train


class RunData(NamedTuple):
  x: jax.Array          # [S, N] training samples
  r: jax.Array          # [S] their true regimes (for the oracle baseline only)
  x_test: jax.Array     # [S_test, N] held-out samples
  r_test: jax.Array     # [S_test] their true regimes
  parent_idx: jax.Array
  parent_mask: jax.Array
  true: scm.LinearSCM


class Experiment(NamedTuple):
  trainer: train.Trainer
  fit_cfg: train.FitConfig
  setup: Any     # (key, adj) -> (RunData, TrainState)
  evaluate: Any  # (TrainState, RunData) -> (scalars, details)


def sample_graphs(key, config):
  """``[R, N, N]`` ER DAGs, one per run (one jitted call)."""
  keys = jax.random.split(key, config.num_runs)
  sample = lambda k: graphs.sample_er_dag(k, n_nodes=config.scm.n_nodes,
                                          edge_prob=config.scm.edge_prob)
  return jax.jit(jax.vmap(sample))(keys)


def true_scm(key, adj, c) -> scm.LinearSCM:
  """The SCM on ``adj`` that the ``scm`` config group ``c`` describes."""
  return scm.sample_scm(key, adj, mechanism=c.mechanism, hidden=c.mlp_hidden, shift=c.shift,
                        noise_low=c.noise_low, noise_high=c.noise_high,
                        obs_fraction=c.obs_fraction, intervention=c.intervention,
                        variance_factor=c.variance_factor)


def simulate(key, adj, c, *, max_parents: int) -> RunData:
  """One SCM on ``adj`` from the ``scm`` config group ``c``, its training and held-out data."""
  k_scm, k_train, k_test = jax.random.split(key, 3)
  true = true_scm(k_scm, adj, c)
  x, r = scm.sample_data(k_train, true, c.n_train, noise=c.noise)
  x_test, r_test = scm.sample_data(k_test, true, c.n_test, noise=c.noise)
  idx, mask = graphs.parent_table(adj, max_parents)
  return RunData(x, r, x_test, r_test, idx, mask, true)


def make_experiment(config, *, max_parents: int) -> Experiment:
  c = config.scm
  n = c.n_nodes
  k_cat = n + 1
  fit_cfg = train.FitConfig.from_config(config.model, config.train)
  trainer = train.make_trainer(fit_cfg, n_nodes=n, max_parents=max_parents)
  model = trainer.model

  def setup(key, adj):
    k_data, k_fit = jax.random.split(key)
    data = simulate(k_data, adj, c, max_parents=max_parents)
    return data, trainer.init(k_fit, data.x, data.parent_idx, data.parent_mask)

  def evaluate(state, data: RunData):
    idx, mask, true, r_test = data.parent_idx, data.parent_mask, data.true, data.r_test
    result = trainer.finish(state, train.standardized(state, data.x), idx, mask)
    # A recipe assigns regimes with the posterior it trains its decoder against:
    # the model's exact posterior (ours), or the encoder's q (the paper's VAE).
    exact_post = train.data_posterior(model, result, data.x_test, idx, mask)
    encoder_post = train.encoder_posterior(model, result, data.x_test)
    use_exact = fit_cfg.posterior == "exact"
    pred, prob = identify.assign_regimes(exact_post if use_exact else encoder_post)
    other, _ = identify.assign_regimes(encoder_post if use_exact else exact_post)
    bayes_pred, _ = identify.assign_regimes(scm.true_posterior(true, data.x_test, noise=c.noise))
    shift, scale = train.mechanism_changes(model, result, data.x, idx, mask)
    targets = identify.structured_targets
    scalars = {
        "ari": metrics.adjusted_rand_index(r_test, pred, k_cat),
        "nmi": metrics.normalized_mutual_info(r_test, pred, k_cat),
        "bayes_ari": metrics.adjusted_rand_index(r_test, bayes_pred, k_cat),
        "bayes_nmi": metrics.normalized_mutual_info(r_test, bayes_pred, k_cat),
        # The ARI of the other assignment (encoder's q for ours, exact posterior for the paper's).
        "ari_other_assignment": metrics.adjusted_rand_index(r_test, other, k_cat),
        "target_accuracy": metrics.target_accuracy(targets(r_test), targets(pred)),
        "bayes_target_accuracy": metrics.target_accuracy(targets(r_test), targets(bayes_pred)),
        "observational_identified": identify.observational_identified(r_test, pred, k_cat),
        "mean_posterior_probability": prob.mean(),
        "elbo": result.train_elbo,
        "train_log_px": result.restart_log_px.max(),
        "heldout_loglik": train.data_log_marginal(model, result, data.x_test, idx, mask).mean(),
        "true_heldout_loglik": scm.true_log_marginal(true, data.x_test, noise=c.noise).mean(),
        "shift_error": jnp.abs(shift[1] - shift[0] - true.shift).mean(),
        "noise_scale_error": jnp.abs(scale[0] - true.noise_scale).mean(),
        "n_edges": data.true.adj.sum(),
    }
    details = {
        "confusion": metrics.contingency(r_test, pred, k_cat, k_cat),
        "probability": prob,
        "learned_shift": shift[1] - shift[0], "true_shift": true.shift,
        "learned_noise_scale": scale[0], "true_noise_scale": true.noise_scale,
        "learned_int_scale": scale[1], "true_int_scale": true.noise_scale * true.int_scale,
    }
    return scalars, details

  return Experiment(trainer, fit_cfg, setup, evaluate)


def max_parents_of(config, adjs) -> int:
  return graphs.max_in_degree(adjs) if config.model.max_parents <= 0 else config.model.max_parents
