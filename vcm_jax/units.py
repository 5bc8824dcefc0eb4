"""Data units and the standardised units fits work in.

Every fit standardises its training data column-wise and reports in the data's
own units; densities then lose ``sum(log scale)`` (the change of variables).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp


def standardize(x: jax.Array, robust: bool = False):
  """Column-wise standardisation of ``x: [S, N]``: ``((x - loc) / scale, loc, scale)``.

  ``robust``: the median and the interquartile range / 1.349 (the standard deviation
  of a normal law), which a few gross errors cannot move; else the mean and std."""
  if robust:
    q1, loc, q3 = jnp.quantile(x, jnp.array([0.25, 0.5, 0.75]), axis=0)
    scale = jnp.maximum((q3 - q1) / 1.349, 1e-6)
    return (x - loc) / scale, loc, scale
  loc = x.mean(axis=0)
  scale = jnp.maximum(x.std(axis=0), 1e-6)
  return (x - loc) / scale, loc, scale


def to_standard(x, loc, scale):
  """Data units -> standardised units."""
  return (x - loc) / scale


def to_data(xs, loc, scale):
  """Standardised units -> data units."""
  return xs * scale + loc


def log_jacobian(scale):
  """What a standardised-unit log-density loses in data units: ``sum(log scale)``."""
  return jnp.log(scale).sum(-1)
