"""Gumbel-Softmax (Jang et al. 2017; Maddison et al. 2017) and straight-through samples."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def gumbel_softmax(key: jax.Array, logits: jax.Array, temperature) -> jax.Array:
  """Relaxed one-hot sample ``softmax((logits + g) / tau)``, ``g ~ Gumbel(0, 1)``.

  ``logits``: ``[..., K]``; ``temperature``: tau > 0 (a concrete one at or below 0 is a
  ``ValueError``: 0 divides by zero, a negative one favours the smallest logit). Returns
  ``[..., K]``, each row on the simplex; tau -> 0 approaches a one-hot draw of the
  categorical ``softmax(logits)``."""
  if not isinstance(temperature, jax.core.Tracer) and np.any(np.asarray(temperature) <= 0):
    raise ValueError(f"temperature={temperature} must be > 0")
  g = jax.random.gumbel(key, logits.shape, logits.dtype)
  return jax.nn.softmax((logits + g) / temperature, axis=-1)


def straight_through(key: jax.Array, logits: jax.Array, temperature) -> jax.Array:
  """Hard one-hot sample forward, Gumbel-Softmax gradient backward."""
  soft = gumbel_softmax(key, logits, temperature)
  hard = jax.nn.one_hot(jnp.argmax(soft, axis=-1), logits.shape[-1], dtype=soft.dtype)
  return soft + jax.lax.stop_gradient(hard - soft)


def relaxed_log_prob(sample: jax.Array, logits: jax.Array, temperature) -> jax.Array:
  """Density of the Concrete / relaxed one-hot distribution at ``sample`` (on the simplex,
  w.r.t. the first K - 1 coordinates), as in Maddison et al. (2017), eq. (1)."""
  k = logits.shape[-1]
  log_pi = jax.nn.log_softmax(logits, axis=-1)
  log_y = jnp.log(sample)
  t = jnp.asarray(temperature, sample.dtype)
  return (jax.scipy.special.gammaln(k) + (k - 1) * jnp.log(t)
          + jnp.sum(log_pi - (t + 1) * log_y, axis=-1)
          - k * jax.nn.logsumexp(log_pi - t * log_y, axis=-1))
