"""Clustering and identification metrics, jittable with a static number of labels."""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

# Jitted with the numbers of labels static: one program a shape, where the eager ops
# compiled one program each (some 300 in a run of the test suite).
_static_counts = functools.partial(jax.jit, static_argnames=("n_true", "n_pred"))


def _same_rows(labels_true, labels_pred) -> None:
  """A ``ValueError`` where the two label arrays' shapes differ (static: under jit too)."""
  if np.shape(labels_true) != np.shape(labels_pred):
    raise ValueError(f"labels_true and labels_pred label different rows: shapes "
                     f"{np.shape(labels_true)} and {np.shape(labels_pred)}")


def _checked(fn):
  """``fn(labels_true, labels_pred, n_true, n_pred=None)`` with its labels' range checked
  where they are concrete: a label outside ``0..n - 1`` is a ``ValueError`` naming it
  (the table's flat index spilled into the next row or was dropped: labels 5 and 7 with
  ``n_true=2`` read as a perfect ARI where scikit-learn says -0.5). Traced labels (under
  ``jit`` or ``vmap``) cannot raise: there the result is NaN."""
  @functools.wraps(fn)
  def run(labels_true, labels_pred, n_true: int, n_pred: int | None = None):
    _same_rows(labels_true, labels_pred)
    for labels, n, what in ((labels_true, n_true, "labels_true"),
                            (labels_pred, n_pred or n_true, "labels_pred")):
      if isinstance(labels, jax.core.Tracer):
        continue
      values = np.asarray(labels)
      if values.size and (values.min() < 0 or values.max() >= n):
        raise ValueError(
            f"{what} must lie in 0..{n - 1} ({'n_true' if what == 'labels_true' else 'n_pred'}"
            f" = {n}); got labels {values.min()}..{values.max()}: relabel them with "
            "np.unique(labels, return_inverse=True)[1], or use adjusted_mutual_info, which "
            "takes any labels")
    return fn(labels_true, labels_pred, n_true, n_pred or n_true)
  return run


def _out_of_range(labels_true, labels_pred, n_true: int, n_pred: int):
  return (jnp.any((labels_true < 0) | (labels_true >= n_true))
          | jnp.any((labels_pred < 0) | (labels_pred >= n_pred)))


@_static_counts
def _contingency(labels_true, labels_pred, n_true: int, n_pred: int):
  flat = labels_true * n_pred + labels_pred
  counts = jnp.zeros(n_true * n_pred, jnp.float32).at[flat].add(1.0)
  table = counts.reshape(n_true, n_pred)
  return jnp.where(_out_of_range(labels_true, labels_pred, n_true, n_pred), jnp.nan, table)


@_checked
def contingency(labels_true: jax.Array, labels_pred: jax.Array, n_true: int, n_pred: int):
  """``[n_true, n_pred]`` counts of label pairs (labels in ``0..n - 1``; NaN where a
  traced label is not)."""
  return _contingency(labels_true, labels_pred, n_true, n_pred)


def _comb2(n):
  return n * (n - 1) / 2


@_checked
@_static_counts
def adjusted_rand_index(labels_true, labels_pred, n_true: int, n_pred: int | None = None):
  """Adjusted Rand index (Hubert & Arabie 1985), equal to scikit-learn's. Labels in
  ``0..n_true - 1`` and ``0..n_pred - 1`` (``n_pred`` default ``n_true``): another label
  is a ``ValueError``, or NaN where the labels are traced."""
  table = _contingency(labels_true, labels_pred, n_true, n_pred)
  n = table.sum()
  index = _comb2(table).sum()
  rows, cols = _comb2(table.sum(1)).sum(), _comb2(table.sum(0)).sum()
  expected = rows * cols / jnp.maximum(_comb2(n), 1.0)
  max_index = 0.5 * (rows + cols)
  denom = max_index - expected
  # Both partitions trivial (one cluster, or all singletons): scikit-learn says 1.
  # (a NaN table, labels out of range, gives NaN here on its own)
  return jnp.where(denom == 0, 1.0, (index - expected) / jnp.where(denom == 0, 1.0, denom))


def _entropy(counts):
  p = counts / jnp.maximum(counts.sum(), 1.0)
  return -jnp.sum(jnp.where(p > 0, p * jnp.log(jnp.where(p > 0, p, 1.0)), 0.0))


@_checked
@_static_counts
def normalized_mutual_info(labels_true, labels_pred, n_true: int, n_pred: int | None = None):
  """NMI with the arithmetic mean of the entropies (scikit-learn's default). Labels as
  in ``adjusted_rand_index``."""
  table = _contingency(labels_true, labels_pred, n_true, n_pred)
  p = table / jnp.maximum(table.sum(), 1.0)
  outer = p.sum(1, keepdims=True) * p.sum(0, keepdims=True)
  ratio = jnp.where(p > 0, p / jnp.where(outer > 0, outer, 1.0), 1.0)
  mi = jnp.sum(jnp.where(p > 0, p * jnp.log(ratio), 0.0))
  h_true, h_pred = _entropy(table.sum(1)), _entropy(table.sum(0))
  norm = 0.5 * (h_true + h_pred)
  both_trivial = (h_true == 0) & (h_pred == 0)
  value = jnp.where(both_trivial, 1.0, jnp.maximum(mi, 0.0) / jnp.where(norm > 0, norm, 1.0))
  return jnp.where(jnp.isnan(table.sum()), jnp.nan, value)


def target_accuracy(true_targets, pred_targets):
  """Fraction of samples whose inferred target (``-1`` = observational) is right."""
  return jnp.mean((true_targets == pred_targets).astype(jnp.float32))


def adjusted_mutual_info(labels_true, labels_pred) -> float:
  """AMI with the arithmetic mean of the entropies (scikit-learn's default; Vinh,
  Epps and Bailey 2010), host-side NumPy: the expected MI under random labelings
  sums a hypergeometric law over every cell's possible counts. SciPy's ``gammaln`` in
  float64, not JAX's: JAX computes it in float32 where x64 is off, and compiled one
  program per cell's count range (35 compiles in one test module)."""
  import numpy as np
  from scipy.special import gammaln

  _same_rows(labels_true, labels_pred)
  _, a = np.unique(np.asarray(labels_true), return_inverse=True)
  _, b = np.unique(np.asarray(labels_pred), return_inverse=True)
  n = len(a)
  table = np.zeros((a.max() + 1, b.max() + 1))
  np.add.at(table, (a, b), 1.0)
  rows, cols = table.sum(1), table.sum(0)
  entropy = lambda c: -np.sum((c / n)[c > 0] * np.log((c / n)[c > 0]))
  h_true, h_pred = entropy(rows), entropy(cols)
  if h_true == 0 and h_pred == 0 or len(rows) == len(cols) == n:
    return 1.0
  nz = table > 0
  mi = np.sum(table[nz] / n * np.log(n * table[nz] / np.outer(rows, cols)[nz]))
  lg = lambda v: gammaln(np.asarray(v, np.float64) + 1.0)
  emi = 0.0
  for ai in rows:
    for bj in cols:
      nij = np.arange(max(1, ai + bj - n), min(ai, bj) + 1)
      if nij.size == 0:
        continue
      log_p = (lg(ai) + lg(bj) + lg(n - ai) + lg(n - bj) - lg(n) - lg(nij) - lg(ai - nij)
               - lg(bj - nij) - lg(n - ai - bj + nij))
      emi += np.sum(nij / n * np.log(n * nij / (ai * bj)) * np.exp(log_p))
  denom = 0.5 * (h_true + h_pred) - emi
  return float((mi - emi) / denom) if denom != 0 else 1.0
