"""Linear-Gaussian baselines: structured EM, the pooled fit and the label-knowing oracle.

Every function is pure, jittable (ints marked *static* below must be static
under ``jax.jit``) and vmappable over a leading batch of ``(key, x, adj)``.

* ``linear_em``: exact EM for the linear-Gaussian *structured* mixture, the
  model class of the VAE with linear mechanisms, fitted without gradients: what
  the VAE's recipe should reach on linear data.
* ``pooled_fit``: one mechanism per node fitted to all data, every sample in
  regime 0: what ignoring the regimes costs (ARI 0).
* ``oracle_fit``: the structured model fitted with the true labels: on
  held-out data its ARI is near the Bayes ceiling.

The three linear fits share one weighted least-squares solver. Linear systems
are solved by Gauss-Jordan elimination written in ``jnp`` (no LAPACK custom
call): ``jnp.linalg.solve`` inside large vmapped programs has deadlocked
XLA:CPU here, and the systems are small (``N + 1`` unknowns) and positive
definite, where elimination without pivoting is stable.
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from vcm_jax import elbo, graphs
from vcm_jax.densities import gaussian_log_density
from vcm_jax.units import log_jacobian, standardize


class LinearMechanisms(NamedTuple):
  """``x_j = bias_j + sum_i weights[i, j] x_i + scale_j eps_j`` for every node j."""
  weights: jax.Array  # [..., N, N], zero off the graph (adj convention: i -> j)
  bias: jax.Array     # [..., N]
  scale: jax.Array    # [..., N]


class StructuredLinear(NamedTuple):
  """A linear-Gaussian structured mixture: each mechanism in both states, regime prior.

  Regime 0 has every mechanism observational; regime ``k >= 1`` switches node
  ``k - 1`` to its intervened state (``elbo.structured_log_likelihoods``).
  """
  obs: LinearMechanisms
  intervened: LinearMechanisms
  log_prior: jax.Array  # [N + 1]


class EMResult(NamedTuple):
  """``linear_em``'s fit; parameters and densities in data units."""
  params: StructuredLinear
  posterior: jax.Array       # [S, K] exact posterior of the final parameters
  log_likelihood: jax.Array  # [] mean log p(x) of the final parameters
  trace: jax.Array           # [num_iters + 1] mean log p(x) before each M-step, then final


class BaselineFit(NamedTuple):
  """``pooled_fit`` / ``oracle_fit``: parameters (data units), posterior and mean log p(x)."""
  params: StructuredLinear
  posterior: jax.Array       # [S, K]
  log_likelihood: jax.Array  # []


# --- linear algebra -------------------------------------------------------------------------


def solve_spd(a: jax.Array, b: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Solve ``a x = b`` for symmetric positive-definite ``a``; also ``log det a``.

  Gauss-Jordan without pivoting, ``P`` rank-one updates in a ``fori_loop``:
  batched over leading axes, matmul-free and LAPACK-free. The pivots are the
  Schur complements (Cholesky's squared diagonal), so their logs sum to
  ``log det a``.

  Args:
    a: ``[..., P, P]``; b: ``[..., P, M]``.

  Returns:
    x: ``[..., P, M]``; logdet: ``[...]``.
  """
  p = a.shape[-1]
  tiny = jnp.finfo(a.dtype).tiny

  def eliminate(k, carry):
    a, b, logdet = carry
    row_a = jax.lax.dynamic_index_in_dim(a, k, axis=-2, keepdims=False)  # [..., P]
    row_b = jax.lax.dynamic_index_in_dim(b, k, axis=-2, keepdims=False)  # [..., M]
    piv = jnp.maximum(jax.lax.dynamic_index_in_dim(row_a, k, axis=-1, keepdims=False), tiny)
    row_a, row_b = row_a / piv[..., None], row_b / piv[..., None]
    # Row i != k loses a_ik times the pivot row; row k becomes the pivot row.
    col = jax.lax.dynamic_index_in_dim(a, k, axis=-1, keepdims=False) - (jnp.arange(p) == k)
    a = a - col[..., :, None] * row_a[..., None, :]
    b = b - col[..., :, None] * row_b[..., None, :]
    return a, b, logdet + jnp.log(piv)

  _, x, logdet = jax.lax.fori_loop(0, p, eliminate, (a, b, jnp.zeros(a.shape[:-2], a.dtype)))
  return x, logdet


def cholesky(a: jax.Array) -> jax.Array:
  """The lower Cholesky factor ``l`` of symmetric positive-definite ``a``: ``a = l l^T``.

  LAPACK-free, as ``solve_spd`` (and for its reason): ``P`` rank-one downdates of the
  Schur complement in a ``fori_loop``, batched over leading axes. A pivot at or below
  ``eps`` times the largest diagonal entry (there the matrix is singular or indefinite,
  to rounding) gives a zero column: a matrix that rounding left not quite positive
  definite gets a finite factor of its positive part, never a NaN or an overflow.

  Args:
    a: ``[..., P, P]``.

  Returns:
    ``[..., P, P]``, zero above the diagonal.
  """
  p = a.shape[-1]
  rows = jnp.arange(p)
  floor = jnp.maximum(jnp.finfo(a.dtype).eps * jnp.diagonal(a, axis1=-2, axis2=-1).max(-1),
                      jnp.finfo(a.dtype).tiny)[..., None]                  # [..., 1]

  def downdate(k, carry):
    rest, l = carry  # rest: what is left to factor (zero in the rows and columns done)
    col = jax.lax.dynamic_index_in_dim(rest, k, axis=-1, keepdims=False)        # [..., P]
    piv = jax.lax.dynamic_index_in_dim(col, k, axis=-1, keepdims=True)         # [..., 1]
    ok = piv > floor
    lk = jnp.where((rows >= k) & ok, col / jnp.sqrt(jnp.where(ok, piv, 1.0)), 0.0)
    return (rest - lk[..., :, None] * lk[..., None, :],
            l + lk[..., :, None] * (rows == k).astype(a.dtype))

  return jax.lax.fori_loop(0, p, downdate, (a, jnp.zeros_like(a)))[1]


# --- linear-Gaussian mechanisms ---------------------------------------------------------------


def weighted_least_squares(x: jax.Array, weights: jax.Array, adj: jax.Array, *,
                           ridge: float = 1e-6, min_scale: float = 1e-3) -> LinearMechanisms:
  """Each node regressed on its parents and a bias, samples weighted per node.

  Node j's fit minimises ``sum_s weights[s, j] (x_sj - b_j - x_s w_j)^2`` over
  ``w_j`` supported on j's parents; its scale is the weighted residual standard
  deviation (the Gaussian MLE). All nodes (and any leading axes of ``weights``,
  e.g. two mechanism states) are one batch of dense ``[N + 1, N + 1]`` normal
  equations: non-parent rows and columns of the Gram matrix are replaced by the
  identity with a zero right-hand side, which pins their coefficients to 0.

  Dense in the nodes: ``O(S (N + 1)^2)`` memory, meant for the N <= ~20 of the
  baselines' experiments (a parent-table version would suit large sparse graphs).

  A state with (almost) no weight stays finite: the ridge (times the sample
  count) keeps the system regular, pulling its coefficients to 0, and its scale
  is floored at ``min_scale`` (in the units of ``x``).

  Args:
    x: ``[S, N]`` samples.
    weights: ``[..., S, N]`` non-negative sample weights of each node's fit.
    adj: ``[N, N]`` DAG, ``adj[i, j] = 1`` for ``i -> j``.

  Returns:
    ``LinearMechanisms`` with the leading axes of ``weights``.
  """
  s, n = x.shape
  design = jnp.concatenate([x, jnp.ones((s, 1), x.dtype)], axis=1)  # [S, P]
  # mask[j, a]: coefficient a (parent a, or the bias at a = N) is free for node j.
  mask = jnp.concatenate([(adj.T > 0), jnp.ones((n, 1), bool)], axis=1).astype(x.dtype)
  # One [N, S] x [S, P * P] matmul gives every node's weighted Gram matrix.
  outer = (design[:, :, None] * design[:, None, :]).reshape(s, -1)
  gram = jnp.einsum("...sj,sc->...jc", weights, outer).reshape(
      weights.shape[:-2] + (n, n + 1, n + 1)) / s                         # [..., N, P, P]
  rhs = jnp.einsum("...sj,sa->...ja", weights * x, design) / s            # [..., N, P]
  eye = jnp.eye(n + 1, dtype=x.dtype)
  free = mask[:, :, None] * mask[:, None, :]
  gram = gram * free + eye * (1.0 - mask)[:, :, None] + ridge * eye
  coef, _ = solve_spd(gram, (rhs * mask)[..., None])
  coef = coef[..., 0] * mask                                                # [..., N, P]
  w = jnp.swapaxes(coef[..., :n], -1, -2)                                   # [..., N(i), N(j)]
  bias = coef[..., n]
  resid = x - jnp.einsum("si,...ij->...sj", x, w) - bias[..., None, :]
  total = weights.sum(axis=-2)
  var = (weights * jnp.square(resid)).sum(axis=-2) / jnp.maximum(total, jnp.finfo(x.dtype).tiny)
  return LinearMechanisms(w, bias, jnp.sqrt(jnp.maximum(var, min_scale ** 2)))


def _gauss_logpdf(x, mech: LinearMechanisms):
  return gaussian_log_density(x, mech.bias + x @ mech.weights, jnp.log(mech.scale))


def state_log_densities(params: StructuredLinear, x: jax.Array):
  """``log p(x_j | pa_j)`` in both states: ``(l_obs, l_int)``, each ``[S, N]``."""
  return _gauss_logpdf(x, params.obs), _gauss_logpdf(x, params.intervened)


def regime_log_likelihoods(params: StructuredLinear, x: jax.Array) -> jax.Array:
  """``log p(x | regime = k)``, ``[S, N + 1]``."""
  return elbo.structured_log_likelihoods(*state_log_densities(params, x))


def structured_log_marginal(params: StructuredLinear, x: jax.Array) -> jax.Array:
  """``log p(x)`` of a fitted structured model (any of the linear baselines), ``[S]``."""
  return elbo.log_marginal(regime_log_likelihoods(params, x), params.log_prior)


def structured_posterior(params: StructuredLinear, x: jax.Array) -> jax.Array:
  """Exact regime posterior of a fitted structured model for any samples, ``[S, N + 1]``.

  Scores held-out data for ``linear_em``, ``pooled_fit`` and ``oracle_fit`` alike.
  """
  return jnp.exp(elbo.posterior_logits(regime_log_likelihoods(params, x), params.log_prior))


def _to_data_units(mech: LinearMechanisms, loc, sd) -> LinearMechanisms:
  """Mechanisms fitted on ``z = (x - loc) / sd`` rewritten for ``x``."""
  w = mech.weights * sd[..., None, :] / sd[..., :, None]
  bias = loc + sd * mech.bias - jnp.einsum("i,...ij->...j", loc, w)
  return LinearMechanisms(w, bias, mech.scale * sd)


def _params_to_data_units(params: StructuredLinear, loc, sd) -> StructuredLinear:
  return StructuredLinear(_to_data_units(params.obs, loc, sd),
                          _to_data_units(params.intervened, loc, sd), params.log_prior)


def _split_states(mech: LinearMechanisms):
  """``[2, ...]`` stacked (observational, intervened) -> two ``LinearMechanisms``."""
  return jax.tree.map(lambda a: a[0], mech), jax.tree.map(lambda a: a[1], mech)


def safe_log(p):
  return jnp.log(jnp.maximum(p, jnp.finfo(p.dtype).tiny))


# --- structured EM ---------------------------------------------------------------------------


def linear_em(key: jax.Array, x: jax.Array, adj: jax.Array, *, num_iters: int = 100,
              init_scale_factor: float = 3.0, obs_prior: float = 0.5, min_scale: float = 1e-3,
              ridge: float = 1e-6) -> EMResult:
  """Exact EM for the linear-Gaussian structured mixture on a known DAG.

  E-step: the exact posterior ``r [S, K]`` of the current model. M-step: each
  node's observational mechanism is weighted least squares with sample weights
  ``1 - r[:, j + 1]`` (every regime that leaves j alone), its intervened one
  with ``r[:, j + 1]``; the prior is ``r.mean(0)``. Both are exact
  maximisers, so the trace of ``log p(x)`` never decreases (up to the ridge).

  Initialisation ("surprise", as the VAE's): both states start from the pooled
  fit, the intervened one ``init_scale_factor`` times broader, so the first
  E-step explains each node's outliers by its intervention; prior ``obs_prior``
  on regime 0, the rest uniform.

  The fit runs on column-standardised ``x`` (``min_scale`` is in those units);
  the returned parameters, ``log_likelihood`` and ``trace`` are in data units.

  Args:
    key: unused (the initialisation is deterministic); kept so every baseline
      vmaps over ``(key, x, adj)``.
    x: ``[S, N]`` pooled samples; adj: ``[N, N]`` DAG (a concrete one with a cycle is a
      ``ValueError``: the product of its conditionals is no density).
    num_iters: EM iterations, static.
  """
  del key
  graphs.check_concrete_dag(adj)
  s, n = x.shape
  z, loc, sd = standardize(x)
  pooled = weighted_least_squares(z, jnp.ones_like(z), adj, ridge=ridge, min_scale=min_scale)
  log_prior = jnp.concatenate([jnp.full((1,), jnp.log(obs_prior), z.dtype),
                               jnp.full((n,), jnp.log((1.0 - obs_prior) / n), z.dtype)])
  params = StructuredLinear(pooled, pooled._replace(scale=pooled.scale * init_scale_factor),
                            log_prior)

  def e_step(params):
    ll = regime_log_likelihoods(params, z)
    log_post = elbo.posterior_logits(ll, params.log_prior)
    return jnp.exp(log_post), elbo.log_marginal(ll, params.log_prior).mean()

  def iteration(params, _):
    post, log_px = e_step(params)
    hit = post[:, 1:]
    state_weights = jnp.stack([jnp.clip(1.0 - hit, 0.0, 1.0), hit])  # [2, S, N]
    obs, intervened = _split_states(
        weighted_least_squares(z, state_weights, adj, ridge=ridge, min_scale=min_scale))
    return StructuredLinear(obs, intervened, safe_log(post.mean(axis=0))), log_px

  params, trace = jax.lax.scan(iteration, params, None, length=num_iters)
  post, log_px = e_step(params)
  jacobian = log_jacobian(sd)  # standardisation is a change of variables
  trace = jnp.concatenate([trace, log_px[None]]) - jacobian
  return EMResult(_params_to_data_units(params, loc, sd), post, log_px - jacobian, trace)


# --- pooled and oracle fits ------------------------------------------------------------------


def pooled_fit(x: jax.Array, adj: jax.Array, *, min_scale: float = 1e-3,
               ridge: float = 1e-6) -> BaselineFit:
  """One mechanism per node fitted to all samples, ignoring regimes.

  As a structured model: both states equal, prior one-hot on regime 0
  (``log_prior`` is ``-inf`` elsewhere), so the posterior puts every sample in
  regime 0 (ARI 0) and ``log_likelihood`` is the pooled model's mean log p(x).
  """
  z, loc, sd = standardize(x)
  mech = _to_data_units(weighted_least_squares(z, jnp.ones_like(z), adj, ridge=ridge,
                                               min_scale=min_scale), loc, sd)
  n = x.shape[1]
  log_prior = jnp.log(jax.nn.one_hot(0, n + 1, dtype=x.dtype))
  params = StructuredLinear(mech, mech, log_prior)
  return BaselineFit(params, structured_posterior(params, x),
                     structured_log_marginal(params, x).mean())


def oracle_fit(x: jax.Array, regimes: jax.Array, adj: jax.Array, *,
               n_regimes: int | None = None, min_scale: float = 1e-3,
               ridge: float = 1e-6) -> BaselineFit:
  """The structured model fitted with the true regime labels.

  Node j's observational mechanism is fitted on the samples of every regime
  that does not target j, its intervened one on regime ``j + 1``'s; the prior
  is the label frequencies. Score held-out data with ``structured_posterior``.

  Args:
    x: ``[S, N]``; regimes: ``[S]`` int labels in ``[0, N]``; adj: ``[N, N]``.
    n_regimes: K, static; must be ``N + 1`` (the default).
  """
  n = x.shape[1]
  if n_regimes is not None and n_regimes != n + 1:
    raise ValueError(f"n_regimes must be N + 1 = {n + 1}, got {n_regimes}")
  z, loc, sd = standardize(x)
  hit = jax.nn.one_hot(regimes - 1, n, dtype=x.dtype)  # zero row for regime 0
  mech = weighted_least_squares(z, jnp.stack([1.0 - hit, hit]), adj, ridge=ridge,
                                min_scale=min_scale)
  freq = jnp.bincount(regimes, length=n + 1).astype(x.dtype) / x.shape[0]
  params = _params_to_data_units(StructuredLinear(*_split_states(mech), safe_log(freq)), loc, sd)
  return BaselineFit(params, structured_posterior(params, x),
                     structured_log_marginal(params, x).mean())
