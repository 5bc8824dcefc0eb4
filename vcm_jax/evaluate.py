"""Judging a fit (DESIGN section 4): one path for synthetic runs, the comparison
grid and own data with labels.

``score_assignment`` scores any method's posterior and regime targets against
true regimes (jittable); ``against_truth`` adds what a ``Fit`` knows beyond that
(likelihoods, mechanisms) next to the Bayes ceiling of the true SCM;
``label_metrics`` scores own data against a label column (host).
"""
from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from vcm_jax import identify, io, metrics, predict, scm

NO_TARGETS = -2  # target code of a method with no notion of targets (a plain mixture)


def score_assignment(posterior, targets, r_true, n_true: int, observational=0):
  """Scores of the argmax assignment of ``posterior: [S, K]`` against ``r_true: [S]``.

  ``targets: [K]`` is each regime's main target node (``identify.OBSERVATIONAL``
  for the observational one, ``NO_TARGETS`` where a method has none); true
  regime ``k >= 1`` targets node ``k - 1``.
  """
  pred, prob = identify.assign_regimes(posterior)
  k_pred = posterior.shape[-1]
  has_targets = jnp.all(targets != NO_TARGETS)
  acc = metrics.target_accuracy(identify.structured_targets(r_true), targets[pred])
  return {
      "ari": metrics.adjusted_rand_index(r_true, pred, n_true, k_pred),
      "nmi": metrics.normalized_mutual_info(r_true, pred, n_true, k_pred),
      "target_accuracy": jnp.where(has_targets, acc, jnp.nan),
      "observational_identified": identify.observational_identified(
          r_true, pred, n_true, pred_obs=observational),
      "mean_posterior_probability": prob.mean(),
  }, pred, prob


def bayes_ceiling(truth: scm.SCM, x_test, r_test, *, noise: str = "gauss"):
  """ARI, NMI and target accuracy of the argmax of the exact posterior under the true SCM.

  The argmax maximises the expected accuracy, not the ARI: a fit can score slightly
  above it on one draw, and is good when it is close to it on average.
  """
  n_true = truth.regime_probs.shape[-1]
  post = scm.true_posterior(truth, x_test, noise=noise)
  scores, _, _ = score_assignment(post, jnp.arange(n_true) - 1, r_test, n_true)
  return {"bayes_ari": scores["ari"], "bayes_nmi": scores["nmi"],
          "bayes_target_accuracy": scores["target_accuracy"]}


def against_truth(fit, x_train, x_test, r_test, truth: scm.SCM, *, noise: str = "gauss"):
  """Every figure of a synthetic run (jittable; vmaps over runs): ``(scalars, details)``."""
  n_true = truth.regime_probs.shape[-1]
  ident = fit.identification
  post = predict.posterior(fit.model, fit.result, x_test, fit.parent_idx, fit.parent_mask)
  scores, pred, prob = score_assignment(post, ident.target, r_test, n_true, ident.observational)
  mean, scale = predict.regime_mechanisms(fit.model, fit.result, x_train, fit.parent_idx,
                                          fit.parent_mask)
  nodes = jnp.arange(truth.shift.shape[-1])
  # Node j's intervened state: the regime targeting j that moves it most (structured:
  # regime j + 1); NaN where no regime targets j (a free decoder with too few regimes).
  targets_j = ident.target[None, :] == nodes[:, None]  # [N, K]
  by_target = jnp.argmax(jnp.where(targets_j, ident.divergence.T, -jnp.inf), axis=1)
  found = targets_j.any(axis=1)
  obs = ident.observational
  learned_shift = jnp.where(found, mean[by_target, nodes] - mean[obs], jnp.nan)
  learned_int_scale = jnp.where(found, scale[by_target, nodes], jnp.nan)
  heldout = predict.log_prob(fit.model, fit.result, x_test, fit.parent_idx, fit.parent_mask)
  scalars = dict(scores, **bayes_ceiling(truth, x_test, r_test, noise=noise))
  scalars.update({
      "elbo": fit.result.train_elbo,
      "train_log_px": fit.result.restart_log_px.max(),
      "steps_used": fit.result.steps_used,
      "heldout_loglik": heldout.mean(),
      "true_heldout_loglik": scm.true_log_marginal(truth, x_test, noise=noise).mean(),
      "shift_error": jnp.nanmean(jnp.abs(learned_shift - truth.shift)),
      "noise_scale_error": jnp.abs(scale[obs] - truth.noise_scale).mean(),
      "n_edges": truth.adj.sum(),
  })
  details = {
      "confusion": metrics.contingency(r_test, pred, n_true, post.shape[-1]),
      "probability": prob,
      "learned_shift": learned_shift, "true_shift": truth.shift,
      "learned_noise_scale": scale[obs], "true_noise_scale": truth.noise_scale,
      "learned_int_scale": learned_int_scale, "true_int_scale": truth.noise_scale * truth.int_scale,
  }
  return scalars, details


def per_target_ami(labels, assigned) -> dict:
  """Mameche et al. (2025): per targeted regime (every label but ``observational``), the
  AMI between its one-vs-rest indicator and the assignment (host)."""
  labels = np.asarray(labels)
  return {str(l): metrics.adjusted_mutual_info(labels == l, assigned)
          for l in np.unique(labels) if str(l) != "observational"}


def label_metrics(labels, assigned, regime_targets, names, observational: int = 0) -> dict:
  """ARI, NMI, AMI (whole and per targeted regime) and target accuracy of an assignment
  against a label column (host).

  Args:
    labels: ``[S]`` true regime labels (node names / 'observational', or ids 0..N).
    assigned: ``[S]`` inferred regime ids.
    regime_targets: ``[K]`` main target node per inferred regime (-1 observational).
    names: the N node names.
  """
  labels, assigned = np.asarray(labels), np.asarray(assigned)
  _, true = np.unique(labels, return_inverse=True)
  k_true = int(true.max()) + 1
  k_pred = int(max(assigned.max() + 1, len(regime_targets)))
  out = {"ari": float(metrics.adjusted_rand_index(jnp.asarray(true), jnp.asarray(assigned),
                                                   k_true, k_pred)),
         "nmi": float(metrics.normalized_mutual_info(jnp.asarray(true), jnp.asarray(assigned),
                                                     k_true, k_pred)),
         "ami": metrics.adjusted_mutual_info(true, assigned)}
  out["per_target_ami"] = per_target_ami(labels, assigned)
  true_targets = io.label_targets(labels, names)
  if true_targets is None:
    out["target_accuracy"] = None
    out["note"] = ("labels are neither node names (or 'observational') nor regime ids 0..N: "
                   "no target accuracy")
    return out
  pred_targets = np.where(assigned == observational, -1, np.asarray(regime_targets)[assigned])
  out["target_accuracy"] = float(np.mean(pred_targets == true_targets))
  out["observational_identified"] = bool(identify.observational_identified(
      jnp.asarray(true_targets), jnp.asarray(assigned), 0, true_obs=-1,
      pred_obs=observational))
  return out
