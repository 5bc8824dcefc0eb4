"""A structure-free yardstick for every own-data run: a full-covariance Gaussian mixture
with K chosen by BIC, fitted beside the structural model, and its ``log p(x)``.

When this mixture, which knows nothing of the DAG, explains the data better (by BIC)
than the structural model, the structural fit is suspect: ``compare`` says so.

BIC follows ``vcm_jax.choose``'s convention, the penalised log-likelihood
``sum log p(x) - 0.5 log(n) * n_parameters``: **higher is better**.

The mixture is fitted on standardised columns (zero mean, unit variance over all rows),
so ``reg_covar`` is relative to each column's variance; ``log p`` is reported in data
units (the standardisation's ``- sum log std`` added back, exactly).
"""
from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from vcm_jax import padding, units
from vcm_jax.baselines.mixture import GMMResult, gaussian_mixture, gmm_log_marginal

_CHUNK = 16384  # rows per block when scoring all rows (bounds the [rows, K, N] buffers)


def gmm_n_parameters(k: int, n: int) -> int:
  """Free parameters of a K-component full-covariance Gaussian mixture in N dimensions:
  means ``K N``, covariances ``K N (N + 1) / 2``, weights ``K - 1``."""
  return k * n + k * n * (n + 1) // 2 + k - 1


def bic(log_px: float, n_parameters: int, n_rows: int) -> float:
  """``n_rows * log_px - 0.5 log(n_rows) n_parameters`` (``log_px`` the mean per row;
  higher is better, as ``vcm_jax.choose``)."""
  return float(n_rows * log_px - 0.5 * math.log(n_rows) * n_parameters)


def _mean_log_marginal(fit: GMMResult, z: jax.Array) -> jax.Array:
  """Mean ``log p(z)`` over the rows of ``z``, in blocks of ``_CHUNK`` rows."""
  s, d = z.shape
  if s <= _CHUNK:
    return gmm_log_marginal(fit, z).mean()
  n_blocks = -(-s // _CHUNK)
  pad = n_blocks * _CHUNK - s
  blocks = jnp.concatenate([z, jnp.zeros((pad, d), z.dtype)]).reshape(n_blocks, _CHUNK, d)
  lp = jax.lax.map(lambda b: gmm_log_marginal(fit, b), blocks).reshape(-1)[:s]
  return lp.mean()


def _finite(fit: GMMResult) -> jax.Array:
  return (jnp.isfinite(fit.log_likelihood) & jnp.all(jnp.isfinite(fit.weights))
          & jnp.all(jnp.isfinite(fit.means)) & jnp.all(jnp.isfinite(fit.covariances)))


def _single_gaussian(z_fit, reg_covar) -> GMMResult:
  """K = 1 in closed form (its MLE)."""
  d = z_fit.shape[1]
  mean = z_fit.mean(0)
  diff = z_fit - mean
  cov = diff.T @ diff / z_fit.shape[0] + reg_covar * jnp.eye(d, dtype=z_fit.dtype)
  one = jnp.ones((1,), z_fit.dtype)
  fit = GMMResult(one, mean[None], cov[None], one[None], jnp.zeros((), z_fit.dtype), one)
  return fit._replace(log_likelihood=gmm_log_marginal(fit, z_fit).mean())


@functools.partial(jax.jit, static_argnames=("with_single", "max_k", "num_iters", "tol"))
def _fit_and_score(keys, ks, z_fit, z_all, reg_covar, *, with_single, max_k, num_iters, tol):
  """Several K in one program: K = 1 in closed form (``with_single``), and each K of
  ``ks [G]`` (>= 2) by EM from each of its keys ``keys [G, restarts]`` (``vmap`` over K
  and restarts, padded to ``max_k`` components), keeping the restart with the best
  finite fit log-likelihood; each kept fit is scored on ``z_all``.

  Returns the all-rows log p per row, ``[with_single + G]`` in standardised units, K = 1
  first; NaN where no restart is finite.
  """
  nan = jnp.asarray(jnp.nan, z_fit.dtype)
  score = lambda fit: jnp.where(_finite(fit), _mean_log_marginal(fit, z_all), nan)

  def best_of_restarts(fits):  # fits of one K, [restarts, ...]
    ok = jax.vmap(_finite)(fits)
    best = jnp.argmax(jnp.where(ok, fits.log_likelihood, -jnp.inf))
    fit = jax.tree.map(lambda a: a[best], fits)
    return score(fit._replace(posterior=fit.posterior[:1]))  # (the rows' posterior unused)

  def every_fit(keys, ks):
    # One batch axis of K x restarts: a second vmap (over K, then restarts) makes every
    # dot batched twice, which XLA:CPU runs 3x slower (10000 x 10, K = 8: 2.4 s, not 0.8).
    g, r = keys.shape
    fits = jax.vmap(lambda key, k: gaussian_mixture(key, z_fit, n_components=max_k,
                                                    num_iters=num_iters, reg_covar=reg_covar,
                                                    tol=tol, n_active=k))(
        keys.reshape(g * r), jnp.repeat(ks, r))
    return jax.vmap(best_of_restarts)(jax.tree.map(lambda a: a.reshape((g, r) + a.shape[1:]),
                                                   fits))

  parts = [score(_single_gaussian(z_fit, reg_covar))[None]] if with_single else []
  if ks.shape[0]:
    parts.append(every_fit(keys, ks))
  return jnp.concatenate(parts)


@jax.jit
def _standardise(x):
  loc = x.mean(0)
  scale = x.std(0)
  scale = jnp.where(scale > 0, scale, 1.0)  # a constant column: left unscaled
  return (x - loc) / scale, scale, jnp.log(scale).sum()


def gaussian_mixture_yardstick(key: jax.Array, x, *, k_grid=(1, 2, 3, 4, 6, 8),
                               max_rows: int = 20000, restarts: int = 2, num_iters: int = 100,
                               reg_covar: float = 1e-6, tol: float = 0.0,
                               resolution_of=None) -> dict:
  """A full-covariance Gaussian mixture with K chosen by BIC, and its ``log p(x)``.

  Each K in ``k_grid`` is fitted (``gaussian_mixture``: EM from k-means++, ``restarts``
  seeds, the best fit log-likelihood kept; K = 1 in closed form; close K padded into one
  compiled program, ``_fit_and_score``) on at most ``max_rows``
  rows of ``x`` (a random subset drawn with ``key``), then scored on all rows. K is
  chosen by BIC on all rows (``bic``; higher is better). A K whose fit or score is not
  finite is skipped (recorded in ``by_k`` with ``skipped``).

  Args:
    key: PRNG key (the subset and every seeding).
    x: ``[S, N]`` samples in data units (numpy or jax).
    k_grid: the candidate K's.
    max_rows: the most rows any fit sees.
    restarts: k-means++ seeds per K (``vmap``-ed).
    num_iters, tol: EM iterations per fit, at most, and the stop (``gaussian_mixture``;
      0, the default: every iteration runs, the rival at its strongest).
    reg_covar: added to the covariances' diagonal, relative to each column's variance.
    resolution_of: ``[S', N]`` rows whose columns' resolution (``units.resolution``: the
      smallest gap d between two distinct values) floors the covariances' diagonal at
      ``d^2 / 12``, the variance of rounding to a grid of step d, as it floors the
      structural fit's noise scales (``units.default_noise_floor``); None: ``x`` itself.
      Pass every row where ``x`` is a subset (the rows without a censored reading: a
      3-valued switch is left holding its middle value alone). Without it, a column of
      a few discrete values gets a component of variance ``reg_covar`` on its tied
      readings and a density without bound (a 3-valued switch and its child, 3000 rows:
      20.0 nats a row, "better" than the true law's -3.2). On continuous data ``d`` is
      an ulp and nothing changes.

  Returns:
    ``{"k", "log_px" (mean log p(x) per row, all rows, data units), "bic",
    "n_parameters", "n_rows", "n_fit_rows", "by_k": [{"k", "log_px", "bic",
    "n_parameters"[, "skipped"]}]}``; ``k`` is None and the scores NaN when every K
    was skipped.
  """
  x = jnp.asarray(x)
  if not jnp.issubdtype(x.dtype, jnp.floating):
    x = x.astype(jnp.result_type(float))
  if x.ndim != 2 or x.shape[0] < 2:
    raise ValueError(f"x must be [S, N] with S >= 2; got shape {x.shape}")
  if not bool(jnp.all(jnp.isfinite(x))):
    raise ValueError("x has non-finite entries")
  s, n = x.shape
  k_grid = tuple(sorted({int(k) for k in k_grid}))
  if not k_grid or k_grid[0] < 1:
    raise ValueError(f"k_grid must hold positive integers; got {k_grid}")
  if restarts < 1:
    raise ValueError(f"restarts must be >= 1; got {restarts}")

  z, scale, log_scale = _standardise(x)
  scale, log_scale = np.asarray(scale), float(log_scale)
  step = units.resolution(np.asarray(x if resolution_of is None else resolution_of,
                                     np.float64), np)
  floor = np.square(step / scale) / 12.0
  k_subset, k_fit = jax.random.split(key)
  if s > max_rows:
    idx = jnp.sort(jax.random.permutation(k_subset, s)[:max_rows])
    z_fit = z[idx]
  else:
    z_fit = z
  reg = jnp.asarray(np.maximum(reg_covar, floor), z.dtype)

  # K = 1 in closed form; the others by EM, K of one run (``padding.close_runs``) padded
  # to the run's largest and fitted in one program (with K = 1 in the first).
  many = [k for k in k_grid if k > 1]
  runs = padding.close_runs(many, many)  # ([[]] for no K above 1)
  all_lp = []
  for i, run in enumerate(runs):
    ks = jnp.asarray(run, jnp.int32)
    keys = jax.vmap(lambda k: jax.random.split(jax.random.fold_in(k_fit, k), restarts))(ks)
    all_lp += list(np.asarray(_fit_and_score(
        keys, ks, z_fit, z, reg, with_single=i == 0 and k_grid[0] == 1,
        max_k=max(run, default=1), num_iters=num_iters, tol=tol)))
  by_k = []
  for k, lp in zip(k_grid, np.asarray(all_lp)):
    lp = float(lp) - log_scale
    p = gmm_n_parameters(k, n)
    row = {"k": k, "log_px": lp, "bic": bic(lp, p, s), "n_parameters": p}
    if not math.isfinite(lp):
      row.update(log_px=float("nan"), bic=float("nan"), skipped="non-finite fit")
    by_k.append(row)

  finite = [r for r in by_k if "skipped" not in r]
  best = max(finite, key=lambda r: r["bic"], default=None)
  out = {"k": None, "log_px": float("nan"), "bic": float("nan"), "n_parameters": None}
  if best is not None:
    out = {key_: best[key_] for key_ in ("k", "log_px", "bic", "n_parameters")}
  return dict(out, n_rows=s, n_fit_rows=int(z_fit.shape[0]), by_k=by_k)


# Nats a row the mixture must gain before it says the structure is wrong: on linear
# Gaussian SCM data the regimes *are* a Gaussian mixture, and a structural MLP fit sits
# about 0.01 nats a row below it (5 nodes, 3000 rows, development seed) with nothing wrong.
MARGIN = 0.05


def compare(yardstick: dict, structural_log_px: float, structural_n_parameters: int,
            n_rows: int, margin: float = MARGIN) -> dict | None:
  """A warning when the structure-free mixture beats the structural model by BIC and its
  ``log p(x)`` is more than ``margin`` nats a row higher.

  Both BICs are computed here on ``n_rows`` rows from the mean ``log p(x)`` per row
  (data units) and the parameter counts (``bic``: higher is better).

  Returns:
    ``{"message", "gmm_bic", "structural_bic"}`` when the mixture wins, else None (also
    when the yardstick has no finite fit).
  """
  if yardstick.get("k") is None or not math.isfinite(yardstick.get("log_px", float("nan"))):
    return None
  gmm_bic = bic(yardstick["log_px"], yardstick["n_parameters"], n_rows)
  structural_bic = bic(structural_log_px, structural_n_parameters, n_rows)
  if not (gmm_bic > structural_bic and yardstick["log_px"] > structural_log_px + margin):
    return None
  message = (f"a structure-free Gaussian mixture (K={yardstick['k']}, "
             f"{yardstick['n_parameters']} parameters, log p(x) {yardstick['log_px']:.3f}/row) "
             f"explains the data better than the structural model "
             f"({structural_n_parameters} parameters, log p(x) {structural_log_px:.3f}/row): "
             f"BIC {gmm_bic:.1f} vs {structural_bic:.1f} (higher is better)")
  return {"message": message, "gmm_bic": gmm_bic, "structural_bic": structural_bic}
