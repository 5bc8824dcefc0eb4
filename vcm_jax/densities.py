"""The noise densities of the mechanisms, elementwise: one definition for the
fitted decoders, the true SCMs and the baselines."""
from __future__ import annotations

import math

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


def log_density(noise: str):
  """The elementwise ``(x, mean, log_scale) -> log p`` of a noise family by name."""
  if noise == "gauss":
    return gaussian_log_density
  if noise == "laplace":
    return laplace_log_density
  raise ValueError(f"unknown noise {noise!r}; expected gauss or laplace")
