"""From a fit to answers: regime per sample, the observational regime, each regime's targets.

One readout for both decoders (``identify_regimes``): the structured latent's
labels carry their meaning (regime 0 observational, regime k targets node k - 1);
the free decoder's clusters are read off their mechanisms in data units.
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

OBSERVATIONAL = -1  # target code of the observational regime


def assign_regimes(posterior: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Argmax regime per sample and its posterior probability: ``[S, K] -> ([S], [S])``."""
  regime = jnp.argmax(posterior, axis=-1).astype(jnp.int32)
  return regime, jnp.take_along_axis(posterior, regime[:, None], axis=-1)[:, 0]


class Identification(NamedTuple):
  """What a fit says each regime is (a pytree: vmaps over fits)."""
  observational: jax.Array  # [] int32: the regime that changes no mechanism
  target: jax.Array         # [K] int32: each regime's main target node (OBSERVATIONAL for it)
  changed: jax.Array        # [K, N] bool: the mechanisms each regime changes
  divergence: jax.Array     # [K, N] how far each regime moves each mechanism from the
                            # observational regime (``mechanism_divergence``)


# A mechanism counts as changed when it moves by more than half a noise scale.
CHANGE_THRESHOLD = 0.5


def identify_regimes(mean, scale, weights, *, structured: bool, changed=None) -> Identification:
  """The observational regime and every regime's targets.

  Args:
    mean, scale: ``[K, N]`` every node's conditional mean (averaged over the
      training samples) and noise scale under every regime
      (``predict.regime_mechanisms``).
    weights: ``[K]`` the regimes' expected shares of the data (mean posterior):
      empty regimes do not vote for the observational one.
    structured: the structured latent (static).
    changed: ``[K, N]`` bool, the sparse decoder's gates: the mechanisms each regime
      changes, as fitted. The observational regime is then the non-empty regime that
      changes fewest (ties: the larger), and each regime's main target its changed
      mechanism that moves most.
  """
  k, n = mean.shape
  div = mechanism_divergence(mean, scale)
  if structured:
    obs = jnp.zeros((), jnp.int32)
    target = jnp.arange(k, dtype=jnp.int32) - 1
    changed = jnp.eye(k, n, -1, dtype=bool)
  elif changed is not None:
    n_changed = changed.sum(-1) + jnp.where(weights > 1e-3, 0.0, n + 1.0)
    obs = jnp.argmin(n_changed - 1e-3 * weights).astype(jnp.int32)
    div = mechanism_divergence(mean, scale)
    strength = jnp.where(changed, div[obs], -1.0)
    target = jnp.where(jnp.arange(k) == obs, OBSERVATIONAL,
                       jnp.argmax(strength, axis=-1)).astype(jnp.int32)
    changed = changed & (jnp.arange(k) != obs)[:, None]
  else:
    obs = free_observational(div, weights)
    target = free_targets(div, obs)
    moved = (div[obs] > CHANGE_THRESHOLD) | (jax.nn.one_hot(target, n) > 0)
    changed = moved & (jnp.arange(k) != obs)[:, None]
  return Identification(obs, target, changed, div[obs])


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


def mechanism_divergence(mean: jax.Array, scale: jax.Array) -> jax.Array:
  """How far each node's mechanism moves between every pair of regimes, ``[K, K, N]``.

  ``|mean_a - mean_b| / rms(scale_a, scale_b) + |log(scale_a / scale_b)|``, from
  ``[K, N]`` conditional means (averaged over the same samples) and noise scales.
  """
  rms = jnp.sqrt(0.5 * (scale[:, None] ** 2 + scale[None] ** 2))
  return jnp.abs(mean[:, None] - mean[None]) / rms + jnp.abs(jnp.log(scale[:, None] / scale[None]))


def free_observational(divergence: jax.Array, weights: jax.Array) -> jax.Array:
  """The regime from which every other regime differs in a single mechanism.

  For each candidate a, the divergence to every other regime b that is left after
  its largest single-node change, weighted by b's size ``weights: [K]`` (empty
  regimes do not vote). Under the single-target assumption it is ~0 for the true
  observational regime only; ties (K = 2) go to the larger regime.
  """
  residual = divergence.sum(-1) - divergence.max(-1)  # [K, K]
  score = residual @ weights
  # A regime without weight (a padded one) cannot be the observational regime.
  return jnp.argmin(jnp.where(weights > 0, score - 1e-6 * weights, jnp.inf)).astype(jnp.int32)


def free_targets(divergence: jax.Array, observational) -> jax.Array:
  """Main target node of every regime, ``[K]`` (``OBSERVATIONAL`` for the observational one):
  the node whose mechanism moves most against the observational regime."""
  target = jnp.argmax(divergence[observational], axis=-1).astype(jnp.int32)
  return jnp.where(jnp.arange(divergence.shape[0]) == observational, OBSERVATIONAL, target)
