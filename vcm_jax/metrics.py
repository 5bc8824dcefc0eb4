"""Clustering and identification metrics, jittable with a static number of labels."""
from __future__ import annotations

import jax
import jax.numpy as jnp


def contingency(labels_true: jax.Array, labels_pred: jax.Array, n_true: int, n_pred: int):
  """``[n_true, n_pred]`` counts of label pairs."""
  flat = labels_true * n_pred + labels_pred
  counts = jnp.zeros(n_true * n_pred, jnp.float32).at[flat].add(1.0)
  return counts.reshape(n_true, n_pred)


def _comb2(n):
  return n * (n - 1) / 2


def adjusted_rand_index(labels_true, labels_pred, n_true: int, n_pred: int | None = None):
  """Adjusted Rand index (Hubert & Arabie 1985), equal to scikit-learn's."""
  table = contingency(labels_true, labels_pred, n_true, n_pred or n_true)
  n = table.sum()
  index = _comb2(table).sum()
  rows, cols = _comb2(table.sum(1)).sum(), _comb2(table.sum(0)).sum()
  expected = rows * cols / jnp.maximum(_comb2(n), 1.0)
  max_index = 0.5 * (rows + cols)
  denom = max_index - expected
  # Both partitions trivial (one cluster, or all singletons): scikit-learn says 1.
  return jnp.where(denom == 0, 1.0, (index - expected) / jnp.where(denom == 0, 1.0, denom))


def _entropy(counts):
  p = counts / jnp.maximum(counts.sum(), 1.0)
  return -jnp.sum(jnp.where(p > 0, p * jnp.log(jnp.where(p > 0, p, 1.0)), 0.0))


def normalized_mutual_info(labels_true, labels_pred, n_true: int, n_pred: int | None = None):
  """NMI with the arithmetic mean of the entropies (scikit-learn's default)."""
  table = contingency(labels_true, labels_pred, n_true, n_pred or n_true)
  p = table / jnp.maximum(table.sum(), 1.0)
  outer = p.sum(1, keepdims=True) * p.sum(0, keepdims=True)
  ratio = jnp.where(p > 0, p / jnp.where(outer > 0, outer, 1.0), 1.0)
  mi = jnp.sum(jnp.where(p > 0, p * jnp.log(ratio), 0.0))
  h_true, h_pred = _entropy(table.sum(1)), _entropy(table.sum(0))
  norm = 0.5 * (h_true + h_pred)
  both_trivial = (h_true == 0) & (h_pred == 0)
  return jnp.where(both_trivial, 1.0, jnp.maximum(mi, 0.0) / jnp.where(norm > 0, norm, 1.0))


def target_accuracy(true_targets, pred_targets):
  """Fraction of samples whose inferred target (``-1`` = observational) is right."""
  return jnp.mean((true_targets == pred_targets).astype(jnp.float32))
