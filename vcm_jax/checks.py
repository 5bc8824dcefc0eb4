"""Does a fit's latent explain the data? A check of the mechanisms it keeps shared.

A fit says which mechanisms each regime changes (the structured latent: its one
target; the sparse latent: its gates) and shares every other mechanism with the
observational regime. Where that holds, mechanism j's observational density fits
the rows of a regime that keeps j exactly as well as the rows of every other
regime that keeps j, once each cell is read against what it should score for its
parents: ``log p_obs(x_j | pa_j)`` minus its expectation under ``p_obs(. | pa_j)``
(``model.cell_expected_log_density``) has mean 0 whatever the parents do where the
mechanism is right. (The raw log-density has not: a noise scale that grows with the
parents, or a floor the parents push readings onto, moves it with the parents, and
a regime that moves the parents then read as a change. Heteroscedastic development
seeds 0 and 1 of ``vcm_jax.families``: single-target fits at the Bayes ceiling had 41
and 45 cells flagged, largest gaps 1.4 and 1.9 nats; centred, none, 0.07 and 0.10.
For a constant scale and no floor the centring is a constant per node, and the gaps
are those of the raw densities.) Where a regime moves j too (a second target, an
edge missing from the graph), its rows sit worse, or better, under the shared
mechanism.

``shared_mechanism_check`` measures this per regime and mechanism on the fitted
rows: the posterior-weighted mean of the centred ``log p_obs(x_j | pa_j)`` over
regime k's rows against the same mean over the other regimes that keep j, in nats
per row, with its standard error. A cell is flagged when the gap is both large (beyond
``effect`` nats a row) and sure (beyond ``z`` standard errors). The thresholds
were calibrated with structured fits on single-target synthetic data, where no cell
should be flagged (largest gaps 0.04-0.08 nats, largest |z| 4.4), against a
two-target regime (0.38 nats, z 23) and a dropped edge (0.18, z 6.8): the README's
model-choice section gives the settings. A mechanism family the decoder lacks can
misfit a regime whose intervention moves its parents, and reads as a change; the
model choice weighs it (``choose.ModelChoice.misfit_confirmed``: where the latents
that could hold a second change lose on BIC, the verdict does not count it).

Pure JAX for the sums (row blocks, jit-safe); the flags are NumPy on ``[K, N]``.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from vcm_jax import densities, units
from vcm_jax.rows import rows_per_block, sum_rows

EFFECT = 0.1  # nats a row: below, a shared mechanism fits a regime's rows as well as any
Z = 6.0       # standard errors: a gap this sure is not the sampling of a few thousand rows


@functools.partial(jax.jit, static_argnums=(0, 5))
def _moments(model, result, x, parent_idx, parent_mask, gross_fraction=0.0):
  """Posterior-weighted sums over rows of the shared mechanisms' centred cell
  log-densities (module doc): ``(w, w2, l, l2)`` with ``w: [K]`` weights, ``w2: [K]``
  squared weights and ``l, l2: [K, N]`` sums of the centred ``log p_shared(x_j | pa_j)``
  and of its square."""
  xs = units.to_standard(x, result.loc, result.scale)
  params = result.params

  def per_row(b):
    post = model.posterior(params, b, parent_idx, parent_mask)  # [B, K]
    mean, log_scale = model.shared_means(params, b, parent_idx, parent_mask)
    cell = model.cell_log_density(b, mean, log_scale, params)
    if model.cfg.outlier_fraction == 0:  # a wild cell costs at most a gross error's price
      cell = densities.contaminated(cell, b, gross_fraction)
    # centred on what the cell averages to under its own law for these parents (module doc)
    cell = cell - model.cell_expected_log_density(mean, log_scale, params)
    return (post, post ** 2, post[:, :, None] * cell[:, None], post[:, :, None] * cell[:, None] ** 2)

  return sum_rows(per_row, xs, rows_per_block(model.n_categories * model.n_nodes))


def applies(model) -> bool:
  """Whether a model's latent says which mechanisms its regimes share (structured or
  sparse decoder; the free decoder shares none)."""
  return model.structured or model.sparse


def changed_sets(fit) -> np.ndarray:
  """``[K, N]`` bool: the mechanisms each regime of ``fit`` changes, as the latent says
  (structured: regime k its node k - 1; sparse: its gates; regime 0 none)."""
  model = fit.model
  if not applies(model):
    raise ValueError("the shared-mechanism check needs a latent that says which mechanisms "
                     "each regime keeps: decoder structured or sparse, not free")
  if model.structured:
    return np.eye(model.n_categories, model.n_nodes, -1, dtype=bool)
  return np.asarray(model.gates_on(fit.result.params))


def shared_mechanism_check(fit, x, *, effect: float = EFFECT, z: float = Z,
                           gross_fraction: float = 0.0) -> dict:
  """Per regime and mechanism the latent keeps shared: is it really shared? (module doc)

  Args:
    fit: a ``vcm_jax.Fit`` with a structured or sparse decoder.
    x: ``[S, N]`` rows (data units), the fitted ones.
    effect, z: a cell is flagged when ``|gap| > effect`` nats a row and ``|gap| > z`` se.
    gross_fraction: read every cell's density as a mixture with a gross error of this
      probability (``densities.contaminated``; a fit without gross errors), so that a
      few wild cells cannot move a regime's mean.

  Returns:
    ``{"gap": [K, N] nats a row (0 where the regime changes the mechanism or has no
    rows), "z": [K, N], "flagged": [K, N] bool, "regimes": the regimes with a flagged
    cell, "holds": no cell flagged, "largest_gap": the largest |gap|, "insufficient":
    None, or why the fit cannot be checked}`` (NumPy). A fit with NaN in its sums or
    fewer than two regimes holding rows is *insufficient*: it does not hold.
  """
  changes = changed_sets(fit)
  w, w2, l, l2 = (np.asarray(a, np.float64) for a in _moments(
      fit.model, fit.result, jnp.asarray(x, jnp.float32), fit.parent_idx, fit.parent_mask,
      float(gross_fraction)))
  insufficient = None
  if not all(np.isfinite(a).all() for a in (w, w2, l, l2)):
    insufficient = "the fit's densities are not finite (NaN in its parameters?)"
  elif (w >= 1.0).sum() < 2:
    insufficient = f"{int((w >= 1.0).sum())} regime(s) hold rows: nothing to compare"
  if insufficient is not None:
    shape = changes.shape
    return {"gap": np.zeros(shape), "z": np.zeros(shape), "flagged": np.zeros(shape, bool),
            "regimes": [], "holds": False, "largest_gap": float("nan"),
            "insufficient": insufficient}
  keeps = ~changes  # [K, N]
  # Regime k's mean against the pooled mean of the other regimes that keep j.
  n_k = np.maximum(w, 1e-12)[:, None]
  mean_k = l / n_k
  var_k = np.maximum(l2 / n_k - mean_k ** 2, 0.0)
  pool_w = (keeps * w[:, None]).sum(0)[None] - keeps * w[:, None]
  pool_l = (keeps * l).sum(0)[None] - keeps * l
  pool_l2 = (keeps * l2).sum(0)[None] - keeps * l2
  pool_w2 = (keeps * w2[:, None]).sum(0)[None] - keeps * w2[:, None]
  n_pool = np.maximum(pool_w, 1e-12)
  mean_pool = pool_l / n_pool
  var_pool = np.maximum(pool_l2 / n_pool - mean_pool ** 2, 0.0)
  # Kish's effective sizes: soft weights count for less than whole rows.
  eff_k = w[:, None] ** 2 / np.maximum(w2[:, None], 1e-12)
  eff_pool = pool_w ** 2 / np.maximum(pool_w2, 1e-12)
  se = np.sqrt(var_k / np.maximum(eff_k, 1e-12) + var_pool / np.maximum(eff_pool, 1e-12))
  usable = keeps & (eff_k >= 2) & (eff_pool >= 2)
  gap = np.where(usable, mean_k - mean_pool, 0.0)
  zs = np.where(usable, gap / np.maximum(se, 1e-12), 0.0)
  flagged = usable & (np.abs(gap) > effect) & (np.abs(zs) > z)
  return {"gap": gap, "z": zs, "flagged": flagged,
          "regimes": [int(k) for k in np.flatnonzero(flagged.any(1))],
          "holds": not bool(flagged.any()), "largest_gap": float(np.abs(gap).max()),
          "insufficient": None}
