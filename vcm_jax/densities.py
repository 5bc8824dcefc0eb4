"""The noise densities of the mechanisms, elementwise: one definition for the
fitted decoders, the true SCMs and the baselines."""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp

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
