"""From posteriors to answers: regime per sample, regime targets, observational regime."""
from __future__ import annotations

import jax
import jax.numpy as jnp

OBSERVATIONAL = -1  # target code of the observational regime


def assign_regimes(posterior: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Argmax regime per sample and its posterior probability: ``[S, K] -> ([S], [S])``."""
  regime = jnp.argmax(posterior, axis=-1).astype(jnp.int32)
  return regime, jnp.take_along_axis(posterior, regime[:, None], axis=-1)[:, 0]


def structured_targets(regimes: jax.Array) -> jax.Array:
  """Target node of each regime under the structured latent: ``k -> k - 1``, 0 -> -1."""
  return regimes - 1


def observational_identified(true_regimes, pred_regimes, n_regimes: int,
                             true_obs: int = 0, pred_obs: int = 0) -> jax.Array:
  """Whether the inferred observational regime is the true one.

  True when most truly observational samples land in the inferred observational
  regime and most samples of that regime are truly observational.
  """
  true_is_obs = true_regimes == true_obs
  pred_is_obs = pred_regimes == pred_obs
  both = jnp.sum(true_is_obs & pred_is_obs)
  recall = both / jnp.maximum(jnp.sum(true_is_obs), 1)
  precision = both / jnp.maximum(jnp.sum(pred_is_obs), 1)
  return (recall > 0.5) & (precision > 0.5)
