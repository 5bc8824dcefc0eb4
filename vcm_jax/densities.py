"""The noise densities of the mechanisms, elementwise: one definition for the
fitted decoders, the true SCMs and the baselines."""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

# Python floats: nothing may touch the XLA backend at import (jax.distributed.initialize
# must come first on several hosts), and they stay exact in float64.
LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)
_LOG_SQRT_2 = 0.5 * math.log(2.0)


def gaussian_log_density(x, mean, log_scale):
  """``log N(x; mean, exp(log_scale)^2)``, elementwise."""
  return -0.5 * jnp.square((x - mean) * jnp.exp(-log_scale)) - log_scale - LOG_SQRT_2PI


def laplace_log_density(x, mean, log_scale):
  """Log-density of the Laplace law with mean ``mean`` and *standard deviation*
  ``exp(log_scale)`` (its scale parameter is ``exp(log_scale) / sqrt(2)``), elementwise."""
  log_b = log_scale - _LOG_SQRT_2
  return -jnp.abs(x - mean) * jnp.exp(-log_b) - log_b - math.log(2.0)


def student_t_log_density(x, mean, log_scale, dof):
  """Log-density of Student's t with ``dof > 2`` degrees of freedom, mean ``mean`` and
  *standard deviation* ``exp(log_scale)`` (scale parameter ``sd * sqrt((dof - 2) / dof)``)."""
  log_s = log_scale + 0.5 * math.log((dof - 2.0) / dof)
  z = (x - mean) * jnp.exp(-log_s)
  const = (math.lgamma((dof + 1) / 2) - math.lgamma(dof / 2) - 0.5 * math.log(dof * math.pi))
  return const - log_s - 0.5 * (dof + 1) * jnp.log1p(jnp.square(z) / dof)


def log_cdf(noise: str, dof: float = 4.0):
  """``(x, mean, log_scale) -> log P(X <= x)`` of a noise family by name (``log_scale`` the
  log standard deviation, as ``log_density``), elementwise: a reading censored at a
  floor has this probability, not a density (``log P(X >= x)``: mirror the arguments)."""
  if noise == "gauss":
    return lambda x, mean, log_scale: jax.scipy.special.log_ndtr((x - mean) * jnp.exp(-log_scale))
  if noise == "laplace":
    def laplace(x, mean, log_scale):
      z = (x - mean) * jnp.exp(-(log_scale - _LOG_SQRT_2))
      return jnp.where(z < 0, z - math.log(2.0), jnp.log1p(-0.5 * jnp.exp(-jnp.abs(z))))
    return laplace
  if noise == "student_t" and dof == 4.0:
    return _student_t4_log_cdf
  if noise == "student_t":
    # Far out the tail is c nu^((nu - 1) / 2) |t|^-nu (the density's power law integrated),
    # where float32's betainc underflows to 0.
    log_c = (math.lgamma((dof + 1) / 2) - math.lgamma(dof / 2) - 0.5 * math.log(dof * math.pi)
             + 0.5 * (dof - 1) * math.log(dof))

    def student_t(x, mean, log_scale):
      t = (x - mean) * jnp.exp(-(log_scale + 0.5 * math.log((dof - 2.0) / dof)))
      # P(T < -|t|) in two forms, each where it is accurate and its gradient finite:
      # near 0 through the complement (the other form's derivative is infinite at t = 0),
      # further out directly (the complement would cancel).
      # One betainc call for both forms (its parameters chosen per cell): it dominates
      # a censored Student-t fit's step.
      t2 = jnp.square(t)
      is_near = t2 < 1.0
      incomplete = jax.scipy.special.betainc(
          jnp.where(is_near, 0.5, dof / 2), jnp.where(is_near, dof / 2, 0.5),
          jnp.where(is_near, jnp.maximum(t2, 1e-12) / (dof + t2),
                    dof / (dof + jnp.maximum(t2, 1.0))))
      tail = 0.5 * jnp.where(is_near, 1.0 - incomplete, incomplete)
      far = log_c - dof * jnp.log(jnp.maximum(jnp.abs(t), 1.0))
      lower = jnp.where(tail > 1e-30, jnp.log(jnp.maximum(tail, 1e-30)), far)
      return jnp.where(t < 0, lower, jnp.log1p(-tail))
    return student_t
  raise ValueError(f"unknown noise {noise!r}; expected gauss, laplace or student_t")


def _student_t4_log_cdf(x, mean, log_scale):
  """``log P(X <= x)`` of Student's t with 4 degrees of freedom (the default), in closed
  form: with ``r = sqrt(4 + t^2)`` and ``y = |t| / r``, the tail ``P(T < -|t|)`` is
  ``I_{4/r^2}(2, 1/2) / 2 = (1 - y)^2 (1 + y / 2) / 2``, and ``1 - y = 4 / (r (r + |t|))``
  has no cancellation, so the log tail is accurate from the mean to ``|t| ~ 1e18``.
  Equal to the ``betainc`` form (SciPy's ``t.logcdf``, tests/test_failsafe.py); a
  censored sparse Student-t step on Sachs takes 18 ms instead of 126 (``betainc`` ran on
  every cell of every regime copy; ``python -m experiments.bench --cases=censored_t``).
  Two logarithms and no exponential: the tail itself is formed once, for both branches
  (the tail and its complement), instead of from its logarithm."""
  t = (x - mean) * jnp.exp(-(log_scale + 0.5 * math.log(0.5)))  # scale sd * sqrt(2 / 4)
  a = jnp.abs(t)
  r = jnp.sqrt(4.0 + jnp.square(t))
  u = 4.0 / (r * (r + a))  # 1 - y
  h = 1.0 + 0.5 * a / r    # 1 + y / 2
  log_tail = math.log(0.5) + 2.0 * jnp.log(u) + jnp.log(h)
  return jnp.where(t < 0, log_tail, jnp.log1p(-0.5 * jnp.square(u) * h))


# A reading within this share of a bound's size of it is at the bound: a bound and the
# readings are each put in the fit's units by their own program, and XLA's vectorised
# division can differ from its scalar one by an ulp (measured: (-3.046875 + 2.2842884) /
# 1.3244971 gives -0.5757556 alone, -0.57575554 over a [1000, 8] array). A
# floored-counts development fit read a floor held by 29% of the rows as no reading at
# it, and regimes formed on its tied values (ARI 0.11 against a ceiling of 0.74).
BOUND_RTOL = 1e-6


def at_bounds(x, lower, upper):
  """``(at or below lower, at or above upper)``, elementwise, within ``BOUND_RTOL`` of a
  finite bound's size (``-inf`` / ``inf``: no bound)."""
  slack = lambda b: BOUND_RTOL * jnp.abs(jnp.where(jnp.isfinite(b), b, 0.0))
  return x <= lower + slack(lower), x >= upper - slack(upper)


def censored(log_p, x, mean, log_scale, lower, upper, log_cdf_fn):
  """``log_p`` where a cell lies inside ``(lower, upper)``; at or beyond a bound
  (``at_bounds``), the probability of the tail beyond it (a reading pinned at a floor or
  a ceiling)."""
  at_lower, at_upper = at_bounds(x, lower, upper)
  # One tail per cell, in one call: P(X <= l) at a floor, P(-X <= -u) = P(X >= u) at a
  # ceiling. A cell at neither reads its own mean (a finite value: an infinite bound
  # there would put NaN in the gradient of the branch taken).
  sign = jnp.where(at_upper & ~at_lower, -1.0, 1.0)
  bound = jnp.where(at_lower, lower, jnp.where(at_upper, upper, mean))
  tail = log_cdf_fn(sign * bound, sign * mean, log_scale)
  return jnp.where(at_lower | at_upper, tail, log_p)


def two_point_atoms(mean, log_scale, lower, upper, two_point, log_cdf_fn):
  """``(log P(X <= lower), log P(X >= upper), log of their sum)`` of a censored cell's
  law, elementwise, where ``two_point`` (a column that holds only its two bounds: an
  on/off switch, a 0/1 indicator); elsewhere finite stand-ins (the bounds replaced by
  ``mean -/+ 1``, so that neither value nor gradient is infinite in the branch not taken).

  Why: censored at both bounds, a two-valued column still gives the interval between
  them probability, which no reading takes; the law reaches a Bernoulli's only as its
  scale and mean grow without bound. Conditioned on the two atoms it is a Bernoulli for
  finite parameters (``P(X >= upper) / (P(X <= lower) + P(X >= upper))``, a probit of the
  mechanism's mean), and what a regime does to the switch is a finite change."""
  lo = jnp.where(two_point, lower, mean - 1.0)
  hi = jnp.where(two_point, upper, mean + 1.0)
  log_low = log_cdf_fn(lo, mean, log_scale)
  log_high = log_cdf_fn(-hi, -mean, log_scale)
  return log_low, log_high, jnp.logaddexp(log_low, log_high)


def two_point(log_p, mean, log_scale, lower, upper, two_point_mask, log_cdf_fn):
  """``log_p`` (``censored``'s) renormalised to the two atoms where ``two_point_mask``
  (``two_point_atoms``): a two-valued column's cell reads a Bernoulli's probability."""
  total = two_point_atoms(mean, log_scale, lower, upper, two_point_mask, log_cdf_fn)[2]
  return jnp.where(two_point_mask, log_p - total, log_p)


def two_point_expected_log_density(mean, log_scale, lower, upper, two_point_mask,
                                   log_cdf_fn):
  """``E[log p]`` of a two-point cell under its own law, ``p log p + (1 - p) log(1 - p)``
  (``two_point``); 0 where not ``two_point_mask``."""
  log_low, log_high, total = two_point_atoms(mean, log_scale, lower, upper,
                                             two_point_mask, log_cdf_fn)
  a, b = log_low - total, log_high - total
  return jnp.where(two_point_mask, jnp.exp(a) * a + jnp.exp(b) * b, 0.0)


# Gauss-Legendre nodes and weights on [0, 1] (``expected_log_density``'s quadrature),
# Python floats like the constants above.
_QUAD_NODES, _QUAD_WEIGHTS = (tuple(float(v) for v in a) for a in (
    (lambda t, w: ((t + 1) / 2, w / 2))(*np.polynomial.legendre.leggauss(64))))
_QUAD_RANGE = 40.0  # standard deviations: beyond, a density's own mass is negligible


def expected_log_density(noise: str, dof: float, mean, log_scale, lower=None, upper=None):
  """``E[log p(X)]`` for ``X`` drawn from the cell's own law (minus its entropy),
  elementwise, on the scale ``log_density`` and ``censored`` read a cell: the density
  inside the bounds, the tail's probability at a bound (``lower``, ``upper``: None or
  ``-inf`` / ``inf`` where a cell has none).

  Without bounds it is ``-log_scale`` plus the family's constant. With them, the pinned
  tails' ``P log P`` plus the density part, integrated over the standardised residual by
  64-point Gauss-Legendre on each side of the mode, between the bounds (within 40
  standard deviations)."""
  if lower is None and upper is None:
    zero = jnp.zeros(())
    return -log_scale + _standard_entropy_term(noise, dof, zero - jnp.inf, zero + jnp.inf)
  inv = jnp.exp(-log_scale)
  a = jnp.broadcast_to((lower - mean) * inv, jnp.shape(mean))
  b = jnp.broadcast_to((upper - mean) * inv, jnp.shape(mean))
  cdf = log_cdf(noise, dof)
  zero = jnp.zeros_like(a)
  log_p_low = cdf(jnp.clip(a, -1e4, 1e4), zero, zero)   # log P(Z <= a)
  log_p_high = cdf(-jnp.clip(b, -1e4, 1e4), zero, zero)  # log P(Z >= b)
  pinned = lambda lp, finite: jnp.where(finite, jnp.exp(lp) * lp, 0.0)
  inside_mass = 1.0 - jnp.where(jnp.isfinite(a), jnp.exp(log_p_low), 0.0) \
      - jnp.where(jnp.isfinite(b), jnp.exp(log_p_high), 0.0)
  return (pinned(log_p_low, jnp.isfinite(a)) + pinned(log_p_high, jnp.isfinite(b))
          + _standard_entropy_term(noise, dof, a, b) - inside_mass * log_scale)


def _standard_entropy_term(noise, dof, a, b):
  """``int_a^b f log f`` of the family's standard density ``f`` (sd 1), elementwise."""
  lo = jnp.clip(a, -_QUAD_RANGE, _QUAD_RANGE)
  hi = jnp.clip(b, -_QUAD_RANGE, _QUAD_RANGE)

  def part(lo, hi):  # one side of the mode (Laplace's kink sits there)
    z = lo[..., None] + (hi - lo)[..., None] * jnp.asarray(_QUAD_NODES)
    log_f = log_density(noise, dof)(z, 0.0, 0.0)
    return (hi - lo) * jnp.sum(jnp.asarray(_QUAD_WEIGHTS) * jnp.exp(log_f) * log_f, axis=-1)

  return part(lo, jnp.minimum(hi, 0.0)) * (lo < 0) + part(jnp.maximum(lo, 0.0), hi) * (hi > 0)


def cauchy_log_density(x):
  """Standard Cauchy: the broad law of a gross error (standardised units)."""
  return -math.log(math.pi) - jnp.log1p(jnp.square(x))


def log_density(noise: str, dof: float = 4.0):
  """The elementwise ``(x, mean, log_scale) -> log p`` of a noise family by name."""
  if noise == "gauss":
    return gaussian_log_density
  if noise == "laplace":
    return laplace_log_density
  if noise == "student_t":
    return lambda x, mean, log_scale: student_t_log_density(x, mean, log_scale, dof)
  raise ValueError(f"unknown noise {noise!r}; expected gauss, laplace or student_t")


def contaminated(log_p, x, outlier_fraction: float):
  """``log((1 - eps) p + eps cauchy(x))``: a cell is a gross error with probability eps.

  A cell far out in every regime then costs every regime about ``log(eps cauchy(x))``,
  the same, so it no longer decides the regime (a Gaussian tail would let it)."""
  if outlier_fraction <= 0:
    return log_p
  return jnp.logaddexp(log_p + math.log1p(-outlier_fraction),
                       cauchy_log_density(x) + math.log(outlier_fraction))


def outlier_probability(log_p, x, outlier_fraction: float):
  """Posterior probability that a cell is a gross error (``contaminated``'s mixture)."""
  if outlier_fraction <= 0:
    return jnp.zeros(jnp.broadcast_shapes(jnp.shape(log_p), jnp.shape(x)))
  bad = cauchy_log_density(x) + math.log(outlier_fraction)
  return jax.nn.sigmoid(bad - log_p - math.log1p(-outlier_fraction))
