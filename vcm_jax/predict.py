"""What a finished fit says about data, in the data's own units.

Pure functions of ``(model, result, x, parent_idx, parent_mask)`` with raw
samples ``x: [S, N]``; whole datasets are scored in row blocks
(``rows.map_rows``, ``rows.sum_rows``), so memory stays that of one block.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from vcm_jax import elbo as elbo_lib
from vcm_jax import units
from vcm_jax.model import Model
from vcm_jax.rows import map_rows, rows_per_block, sum_rows
from vcm_jax.train import FitResult


def log_prob(model: Model, result: FitResult, x, parent_idx, parent_mask):
  """Fitted ``log p(x)`` in data units, ``[S]`` (standardisation Jacobian included)."""
  xs = units.to_standard(x, result.loc, result.scale)
  log_px = map_rows(lambda b: model.log_marginal(result.params, b, parent_idx, parent_mask), xs)
  return log_px - units.log_jacobian(result.scale)


def regime_log_likelihoods(model: Model, result: FitResult, x, parent_idx, parent_mask):
  """Fitted ``log p(x | regime k)`` in data units, ``[S, K]``."""
  xs = units.to_standard(x, result.loc, result.scale)
  ll = map_rows(lambda b: model.regime_log_likelihoods(result.params, b, parent_idx,
                                                      parent_mask), xs)
  return ll - units.log_jacobian(result.scale)


def elbo(model: Model, result: FitResult, x, parent_idx, parent_mask):
  """ELBO with the recipe's q (beta = 1), data units, ``[S]``: ``log p(x)`` minus
  ``KL(q || p(z | x))``, so equal to ``log_prob`` when the posterior is exact."""
  xs = units.to_standard(x, result.loc, result.scale)

  def rows(b):
    ll = model.regime_log_likelihoods(result.params, b, parent_idx, parent_mask)
    q = model.q_logits(result.params, b, parent_idx, parent_mask)
    return elbo_lib.elbo_exact(q, ll, model.log_prior(result.params))[0]

  return map_rows(rows, xs) - units.log_jacobian(result.scale)


def exact_posterior(model: Model, result: FitResult, x, parent_idx, parent_mask):
  """Exact regime posterior of the fitted model, ``[S, K]``."""
  xs = units.to_standard(x, result.loc, result.scale)
  return map_rows(lambda b: model.posterior(result.params, b, parent_idx, parent_mask), xs)


def posterior(model: Model, result: FitResult, x, parent_idx, parent_mask):
  """The regime posterior a recipe assigns with, ``[S, K]``: the q it trains its
  decoder against (the exact posterior by default, the encoder's for the paper's VAE)."""
  xs = units.to_standard(x, result.loc, result.scale)
  return map_rows(lambda b: jax.nn.softmax(
      model.q_logits(result.params, b, parent_idx, parent_mask), axis=-1), xs)


def outlier_score(model: Model, result: FitResult, x, parent_idx, parent_mask):
  """``[S]`` per row, the probability that its most suspect cell is a gross error
  (``Model.outlier_scores``), in blocks of rows sized so ``[rows, K, N]`` stays small."""
  xs = units.to_standard(x, result.loc, result.scale)
  return map_rows(lambda b: model.outlier_scores(result.params, b, parent_idx, parent_mask), xs,
                  rows_per_block(model.n_categories * model.n_nodes))


# Where two regimes are compared (``regime_mechanisms``' msd): their own rows, and a
# share of every row so small that only a pair of empty regimes is compared over all.
_EVERY_ROW = 1e-3


def regime_mechanisms(model: Model, result: FitResult, x, parent_idx, parent_mask, *,
                      msd: bool = False):
  """Every node's conditional mean and noise scale under every regime, data units.

  Means are averaged over the samples ``x`` with parents as observed (also for a
  recipe without teacher forcing, whose propagated means would move a target's
  descendants too); ``mean[k] - mean[0]`` is how regime k moves each mechanism
  relative to regime 0.

  An average can hide a change: a regime that doubles a slope moves the mechanism's
  mean on every row, up on one side of the parent's mean and down on the other, and
  leaves the average where it was. ``msd`` therefore also compares two regimes' means
  row by row, on the rows of the two regimes (posterior-weighted: a regime's own
  mechanism, read far from its rows, extrapolates, and an over-split fit's small
  clusters then differed from the rest where no row of theirs lies);
  ``identify.mechanism_divergence`` reads it as the rows' own divergence (a change of
  slope or gain shows; a shift reads as before, whatever the rows).

  Returns:
    mean, scale: ``[K, N]``; with ``msd``, also ``[K, K, N]``: the mean of
    ``(mean_a(x) - mean_b(x)) ** 2`` over the rows, each row weighted by its posterior
    of a plus that of b, data units squared.
  """
  xs = units.to_standard(x, result.loc, result.scale)
  k, n = model.n_categories, model.n_nodes
  # The single-target latent changes node j in regime j + 1 alone: every other regime's
  # mean of node j is regime 0's, exactly, so the gaps to regime 0 ([K, N] a row) give
  # every pair's. Other decoders: every pair, [K, K, N] a row.
  pairs = msd and not model.structured

  def per_row(b):
    mean, log_scale = model.observed_regime_means(result.params, b, parent_idx, parent_mask)
    shape = (b.shape[0],) + mean.shape[1:]
    mean = jnp.broadcast_to(mean, shape)
    out = (mean, jnp.broadcast_to(jnp.exp(log_scale), shape))
    if not msd:
      return out
    q = jax.nn.softmax(model.q_logits(result.params, b, parent_idx, parent_mask), axis=-1)
    q = q + _EVERY_ROW
    if pairs:  # [B, K, K, N]: a's weight on the rows; b's comes by symmetry below
      gap = q[:, :, None, None] * (mean[:, :, None] - mean[:, None]) ** 2
    else:  # [B, K, N]: node j's gap (regime j + 1's, the only one), each regime's weight
      gap = q[:, :, None] * ((mean - mean[:, :1]) ** 2).sum(1, keepdims=True)
    return out + (gap, q)

  # A block holds [rows, K, N] arrays ([rows, K, K, N] for every pair): at N = 300 that
  # is 90,300 numbers a row, so blocks get fewer rows as K * N grows (memory O(K * N),
  # or O(K * K * N), whatever the rows).
  chunk = rows_per_block(k * n * (k if pairs else 1))
  sums = sum_rows(per_row, xs, chunk)
  mean, scale = (a / x.shape[0] for a in sums[:2])
  mean, scale = units.to_data(mean, result.loc, result.scale), scale * result.scale
  if not msd:
    return mean, scale
  gap, weight = sums[2:]
  if not pairs:  # pairs that differ at node j: regime j + 1 and any other
    hit = jnp.eye(k, n, -1, dtype=bool)
    gap = (gap[:, None] + gap[None]) * (hit[:, None] | hit[None])
  else:
    gap = gap + jnp.swapaxes(gap, 0, 1)
  gap = gap * (1.0 - jnp.eye(k))[:, :, None] / (weight[:, None] + weight[None])[:, :, None]
  return mean, scale, gap * result.scale ** 2


def sample(key, model: Model, result: FitResult, regimes, parent_idx, parent_mask, order):
  """Samples in data units under chosen ``regimes: [S]``, drawn in topological ``order``."""
  xs = model.sample(key, result.params, regimes, parent_idx, parent_mask, order)
  return units.to_data(xs, result.loc, result.scale)
