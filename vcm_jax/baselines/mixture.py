"""An unstructured full-covariance Gaussian mixture (scikit-learn's
``GaussianMixture(covariance_type='full')``), fitted by EM from a k-means start:
what ignoring the DAG costs. Pure and jittable (``n_components`` static)."""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from vcm_jax import clustering
from vcm_jax.baselines.linear import cholesky, solve_spd
from vcm_jax.densities import LOG_SQRT_2PI


class GMMResult(NamedTuple):
  """``gaussian_mixture``'s fit, in data units."""
  weights: jax.Array      # [K]
  means: jax.Array        # [K, D]
  covariances: jax.Array  # [K, D, D]
  posterior: jax.Array       # [S, K]
  log_likelihood: jax.Array  # []
  trace: jax.Array           # [num_iters + 1]


# --- Gaussian mixture ------------------------------------------------------------------------


# From this many columns the E-step's distances are one matmul for every component
# (``_gmm_log_joint``); below it, K batched products of the differences are the faster form
# (XLA:CPU, 16 starts of 5000 rows, K = D + 1, ms an iteration, batched / one matmul:
# D = 8: 14.7 / 16.2; 12: 31.4 / 40.1; 15: 119 / 58; 20: 174 / 102; 30: 369 / 228).
# From the same width the M-step's scatter is a Gram matrix (``_gmm_m_step``). Below it
# both keep the forms that earlier results were measured with, to the last digit.
GEMM_MIN_COLUMNS = 14


def _gmm_log_joint(weights, means, covariances, x):
  """``log pi_k + log N(x | mu_k, Sigma_k)``, ``[S, K]``."""
  (k, d), s = means.shape, x.shape[0]
  eye = jnp.broadcast_to(jnp.eye(d, dtype=x.dtype), covariances.shape)
  prec, logdet = solve_spd(covariances, eye)
  prec = 0.5 * (prec + jnp.swapaxes(prec, -1, -2))
  if d < GEMM_MIN_COLUMNS:
    # Component-major [K, S, D]: each product is then a plain batched matmul over
    # components (with the component axis in the middle, XLA:CPU transposes around the
    # contraction: 4x slower for 16 starts of 3000 x 4 rows, K = 10).
    diff = x[None] - means[:, None]
    maha = jnp.maximum((jnp.matmul(diff, prec) * diff).sum(-1).T, 0.0)     # [S, K]
  else:
    # |(x - mu_k) root_k|^2 with prec_k = root_k root_k^T: the rows' products with every
    # component's root are one [S, D] x [D, K D] matmul. Rows and means are first shifted
    # by the means' centre (the same shift for both leaves every distance as it is), so
    # that the two products stay small beside the data's own offset and their
    # difference keeps its digits.
    root = cholesky(prec)
    centre = means.mean(0)
    y = ((x - centre) @ jnp.transpose(root, (1, 0, 2)).reshape(d, k * d)).reshape(s, k, d)
    y = y - jnp.einsum("kd,kde->ke", means - centre, root)[None]
    maha = (y * y).sum(-1)                                                 # [S, K]
  # A component of weight 0 (a padded one, ``gaussian_mixture``'s ``n_active``) has
  # log weight -inf: no responsibility, no share of log p (the gradient stays finite).
  log_weights = jnp.where(weights > 0, jnp.log(jnp.where(weights > 0, weights, 1.0)), -jnp.inf)
  return log_weights - 0.5 * (d * 2 * LOG_SQRT_2PI + logdet + maha)


def _gmm_m_step(resp, x, reg_covar, active=None):
  """scikit-learn's full-covariance M-step (its ``10 eps`` guard on empty components).
  ``active`` (``[K]`` bool, None: all): a padded component has weight 0, mean 0 and
  covariance ``reg_covar I``; the active ones are those of the unpadded fit."""
  nk = resp.sum(axis=0) + 10 * jnp.finfo(x.dtype).eps
  if active is not None:
    nk = jnp.where(active, nk, 0.0)
    resp = jnp.where(active, resp, 0.0)
    safe_nk = jnp.where(active, nk, 1.0)
  else:
    safe_nk = nk
  means = resp.T @ x / safe_nk[:, None]
  diff = x[None] - means[:, None]                                          # [K, S, D]
  if x.shape[1] < GEMM_MIN_COLUMNS:
    scatter = jnp.matmul(jnp.swapaxes(resp.T[:, :, None] * diff, 1, 2), diff)
  else:
    # The same sum as a Gram matrix of the differences weighted by sqrt(resp): one
    # weighted operand, symmetric and positive semi-definite by construction (0.6x the
    # M-step's time at 16 starts of 5000 x 30, K = 31). (The floor keeps a gradient
    # through a zero responsibility finite.)
    z = jnp.sqrt(jnp.maximum(resp.T, jnp.finfo(x.dtype).tiny))[:, :, None] * diff
    scatter = jnp.einsum("ksd,kse->kde", z, z)
  cov = scatter / safe_nk[:, None, None] + reg_covar * jnp.eye(x.shape[1], dtype=x.dtype)
  return nk / nk.sum(), means, cov


def gaussian_mixture(key: jax.Array, x: jax.Array, *, n_components: int, num_iters: int = 100,
                     reg_covar: float = 1e-6, init: str = "kmeans++", n_lloyd: int = 10,
                     init_resp: jax.Array | None = None, tol: float = 0.0,
                     n_active=None) -> GMMResult:
  """Full-covariance Gaussian mixture by EM, as scikit-learn's ``GaussianMixture``.

  Starts from an M-step on initial responsibilities: ``init_resp [S, K]`` when
  given, else hard labels from k-means++ seeding and ``n_lloyd`` Lloyd steps
  (``init='kmeans++'``). Then at most ``num_iters`` E/M iterations, stopping after the
  one whose mean log-likelihood moved by less than ``tol`` (scikit-learn's rule; its
  default is 1e-3; 0: never). From the same starting parameters this is
  scikit-learn's fit with ``max_iter=num_iters`` and the same ``tol``.
  ``reg_covar`` is added to every covariance's diagonal. ``trace`` holds the mean
  log-likelihood before each iteration and after the last, held at its final value
  after a stop. ``n_active`` (a traced int; None: ``n_components``): a fit of that many
  components padded to ``n_components`` (weight 0, no responsibility), the unpadded
  fit's numbers up to rounding, so that mixtures of several K are one compiled program.

  Args:
    key: PRNG key of the k-means++ seeding.
    x: ``[S, D]`` samples.
    n_components, num_iters, init, n_lloyd, tol: static (``n_components`` >= 1,
      ``num_iters`` >= 0: else a ``ValueError``).
  """
  if int(n_components) < 1 or int(num_iters) < 0:
    raise ValueError(f"n_components={n_components} must be >= 1 and num_iters={num_iters} "
                     ">= 0")
  if init_resp is None:
    if init != "kmeans++":
      raise ValueError(f"unknown init {init!r}; expected kmeans++ (or pass init_resp)")
    labels = clustering.kmeans(key, x, n_components, iters=n_lloyd, n_active=n_active)[1]
    init_resp = jax.nn.one_hot(labels, n_components, dtype=x.dtype)
  active = None if n_active is None else jnp.arange(n_components) < n_active
  m_step = lambda resp: _gmm_m_step(resp, x, reg_covar, active)
  params = m_step(init_resp.astype(x.dtype))

  def e_step(params):
    joint = _gmm_log_joint(*params, x)
    return jnp.exp(jax.nn.log_softmax(joint, axis=-1)), jax.nn.logsumexp(joint, axis=-1).mean()

  if tol <= 0:
    def iteration(params, _):
      resp, log_px = e_step(params)
      return m_step(resp), log_px

    params, trace = jax.lax.scan(iteration, params, None, length=num_iters)
  else:  # a while loop: under vmap it runs until every fit has stopped, each held after
    def body(carry):
      params, prev, i, trace, _ = carry
      resp, log_px = e_step(params)
      return (m_step(resp), log_px, i + 1, trace.at[i].set(log_px),
              jnp.abs(log_px - prev) < tol)

    def running(carry):
      return (carry[2] < num_iters) & ~carry[4]

    trace = jnp.full((num_iters,), jnp.nan, x.dtype)
    params, _, n_done, trace, _ = jax.lax.while_loop(
        running, body, (params, jnp.asarray(-jnp.inf, x.dtype), 0, trace, False))
  resp, log_px = e_step(params)
  if tol > 0:
    trace = jnp.where(jnp.arange(num_iters) < n_done, trace, log_px)
  return GMMResult(*params, resp, log_px, jnp.concatenate([trace, log_px[None]]))


def gmm_log_marginal(result: GMMResult, x: jax.Array) -> jax.Array:
  """``log p(x)`` of a fitted mixture, ``[S]``."""
  return jax.nn.logsumexp(_gmm_log_joint(result.weights, result.means, result.covariances, x),
                          axis=-1)


def gmm_posterior(result: GMMResult, x: jax.Array) -> jax.Array:
  """Component posterior of a fitted mixture for any samples, ``[S, K]``."""
  joint = _gmm_log_joint(result.weights, result.means, result.covariances, x)
  return jax.nn.softmax(joint, axis=-1)
