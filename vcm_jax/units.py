"""Data units and the standardised units fits work in.

Every fit standardises its training data column-wise and reports in the data's
own units; densities then lose ``sum(log scale)`` (the change of variables).
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np


def standardize(x: jax.Array, robust: bool = False):
  """Column-wise standardisation of ``x: [S, N]``: ``((x - loc) / scale, loc, scale)``.

  ``robust``: the median and the interquartile range / 1.349 (the standard deviation
  of a normal law), which a few gross errors cannot move; else the mean and std.
  The robust scale is at least a quarter of the standard deviation: a column that is
  mostly one value (a floor, a ceiling, zeros) has an IQR near 0, and dividing by it
  would put its other values millions of units out (gross errors inflate the standard
  deviation far less than 4x before they dominate the data). A constant column keeps
  scale 1 (``api`` refuses one before a fit)."""
  std = x.std(axis=0)
  if robust:
    q1, loc, q3 = jnp.quantile(x, jnp.array([0.25, 0.5, 0.75]), axis=0)
    scale = jnp.maximum((q3 - q1) / 1.349, 0.25 * std)
  else:
    loc, scale = x.mean(axis=0), std
  scale = jnp.where(scale > 0, scale, 1.0)
  return (x - loc) / scale, loc, scale


# The default noise floor: this share of a column's standard deviation, or its rounding.
FLOOR_SHARE = 1e-3


def default_noise_floor(x: jax.Array) -> jax.Array:
  """``[N]`` the default floor of the noise scales, data units (``FitConfig.noise_floor``):
  the larger of ``FLOOR_SHARE`` x each column's standard deviation and its resolution
  / sqrt(12), the resolution being the smallest gap between two distinct values (a
  reading rounded to a grid of step d carries a uniform error of sd d / sqrt(12): no
  mechanism can be surer of it). Jit-safe."""
  return jnp.maximum(FLOOR_SHARE * x.std(axis=0), resolution(x) / jnp.sqrt(12.0))


def resolution(x, xp=jnp):
  """``[N]`` each column's resolution: the smallest gap between two of its distinct values
  in ``x: [S, N]`` (0 where a column holds one value). ``xp``: ``jnp`` (jit-safe) or ``np``
  (on the host, in the array's own precision)."""
  gaps = xp.diff(xp.sort(x, axis=0), axis=0)
  step = xp.min(xp.where(gaps > 0, gaps, xp.inf), axis=0, initial=xp.inf)
  return xp.where(xp.isfinite(step), step, 0.0)


def rounding_step(x) -> np.ndarray:
  """``[N]``: each column's resolution (``resolution``) where it sets the column's noise
  floor (``default_noise_floor``: the rounding's sd d / sqrt(12) above ``FLOOR_SHARE``
  sd) and its readings tie (at most half as many distinct values as rows): counts and
  coarsely rounded readings; else 0, a continuous column (a few continuous rows can
  have a wide smallest gap, but no ties). NumPy."""
  x = np.asarray(x, np.float64)
  step = resolution(x, np)
  distinct = np.array([np.unique(column).size for column in x.T])
  tied = 2 * distinct <= x.shape[0]
  return np.where((step / math.sqrt(12.0) > FLOOR_SHARE * x.std(0)) & tied, step, 0.0)


def dequantised(x, step, seed: int = 0) -> np.ndarray:
  """``x: [S, N]`` (host) with each reading spread uniformly over its rounding cell:
  ``x + U(-d/2, d/2)``, ``d = step [N]`` (``rounding_step``). A column of counts or of
  rounded readings then has a density, the probability of its value divided by d,
  which no model can make unbounded by putting a component on tied values; a column
  of step 0 (``rounding_step``'s continuous ones) is unchanged. NumPy, the draws from
  ``seed``."""
  x = np.asarray(x, np.float64)
  step = np.asarray(step, np.float64)[None]
  u = np.random.default_rng(seed).random(x.shape)
  return np.where(step > 0, x + (u - 0.5) * step, x)


def interior_spikes(x: jax.Array, share: float, ratio: float):
  """The columns of ``x: [S, N]`` holding a spike inside their bulk: ``(found [N] bool,
  centre [N])``. Jit-safe.

  In each column, the narrowest window of ``m = ceil(share S)`` sorted values that
  touches neither the column's smallest nor its largest value (a pinned bound is
  censoring's: ``FitConfig.censor_share``) and is wider than 0 (tied values are rounding
  or a bound, not a mechanism). A spike where it is narrower than ``ratio`` times the
  width that m rows need at the densest point of a Gaussian of the column's spread,
  ``m / S * sqrt(2 pi) sd``; its centre is the window's middle value. A hard
  intervention do(X_j = v) makes one: its rows sit on v whatever X_j's parents say.
  Scale-free: the same columns in any units.
  """
  n_rows, n = x.shape
  m = max(2, math.ceil(share * n_rows))
  if m >= n_rows - 1:
    return jnp.zeros(n, bool), jnp.zeros(n, x.dtype)
  s = jnp.sort(x, axis=0)
  low, high = s[:-m], s[m:]
  width = jnp.where((low > s[:1]) & (high < s[-1:]) & (high > low), high - low, jnp.inf)
  first = jnp.argmin(width, axis=0)
  found = width.min(axis=0) < ratio * (m / n_rows) * math.sqrt(2 * math.pi) * x.std(axis=0)
  return found, s[first + m // 2, jnp.arange(n)]


def to_standard(x, loc, scale):
  """Data units -> standardised units."""
  return (x - loc) / scale


def to_data(xs, loc, scale):
  """Standardised units -> data units."""
  return xs * scale + loc


def log_jacobian(scale):
  """What a standardised-unit log-density loses in data units: ``sum(log scale)``."""
  return jnp.log(scale).sum(-1)
