"""Synthetic experiment: sample graphs, SCMs and data, fit, evaluate, write results.

``make_run`` builds one jittable run (graph -> SCM -> data -> fit -> metrics);
``simulate`` vmaps it over runs in one compiled program.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from vcm_jax import graphs, identify, metrics, scm, train


def sample_graphs(key, config):
  """``[R, N, N]`` ER DAGs, one per run (one jitted call)."""
  keys = jax.random.split(key, config.num_runs)
  sample = lambda k: graphs.sample_er_dag(k, n_nodes=config.scm.n_nodes,
                                          edge_prob=config.scm.edge_prob)
  return jax.jit(jax.vmap(sample))(keys)


def make_run(config, *, max_parents: int):
  """``run(key, adj) -> dict`` of scalar metrics for one seed and graph (pure)."""
  c = config.scm
  n = c.n_nodes
  k_cat = n + 1
  fit_cfg = train.FitConfig.from_config(config.model, config.train)
  fit = train.make_fit(fit_cfg, n_nodes=n, max_parents=max_parents)
  model = fit.model

  def run(key, adj):
    k_scm, k_train, k_test, k_fit = jax.random.split(key, 4)
    true = scm.sample_linear_scm(k_scm, adj, shift=c.shift, noise_low=c.noise_low,
                                 noise_high=c.noise_high, obs_fraction=c.obs_fraction,
                                 intervention=c.intervention, variance_factor=c.variance_factor)
    x, _ = scm.sample_data(k_train, true, c.n_train, noise=c.noise)
    x_test, r_test = scm.sample_data(k_test, true, c.n_test, noise=c.noise)
    idx, mask = graphs.parent_table(adj, max_parents)
    result = fit(k_fit, x, idx, mask)

    # A recipe assigns regimes with the posterior it trains its decoder against:
    # the model's exact posterior (ours), or the encoder's q (the paper's VAE).
    exact_post = train.data_posterior(model, result, x_test, idx, mask)
    encoder_post = train.encoder_posterior(model, result, x_test)
    pred, prob = identify.assign_regimes(
        exact_post if fit_cfg.posterior == "exact" else encoder_post)
    other = identify.assign_regimes(
        encoder_post if fit_cfg.posterior == "exact" else exact_post)[0]
    bayes_pred, _ = identify.assign_regimes(scm.true_posterior(true, x_test, noise=c.noise))
    out = {
        "ari": metrics.adjusted_rand_index(r_test, pred, k_cat),
        "nmi": metrics.normalized_mutual_info(r_test, pred, k_cat),
        # The ARI of the other assignment (encoder's q for ours, exact posterior for the paper's).
        "ari_other_assignment": metrics.adjusted_rand_index(r_test, other, k_cat),
        "bayes_ari": metrics.adjusted_rand_index(r_test, bayes_pred, k_cat),
        "bayes_nmi": metrics.normalized_mutual_info(r_test, bayes_pred, k_cat),
        "target_accuracy": metrics.target_accuracy(identify.structured_targets(r_test),
                                                   identify.structured_targets(pred)),
        "bayes_target_accuracy": metrics.target_accuracy(
            identify.structured_targets(r_test), identify.structured_targets(bayes_pred)),
        "observational_identified": identify.observational_identified(r_test, pred, k_cat),
        "mean_posterior_probability": prob.mean(),
        "elbo": result.train_elbo,
        "train_log_px": result.restart_log_px.max(),
        "heldout_loglik": train.data_log_marginal(model, result, x_test, idx, mask).mean(),
        "true_heldout_loglik": scm.true_log_marginal(true, x_test, noise=c.noise).mean(),
        "n_edges": adj.sum(),
    }
    return out, result.history

  return run


def simulate(key, config):
  """All runs of a config in one compiled program: ``(adjs, metrics, history)``."""
  k_graph, k_runs = jax.random.split(key)
  adjs = sample_graphs(k_graph, config)
  max_parents = graphs.max_in_degree(adjs) if config.model.max_parents <= 0 \
      else config.model.max_parents
  run = make_run(config, max_parents=max_parents)
  keys = jax.random.split(k_runs, config.num_runs)
  out, history = jax.jit(jax.vmap(run))(keys, adjs)
  return adjs, jax.tree.map(np.asarray, out), jax.tree.map(np.asarray, history)
