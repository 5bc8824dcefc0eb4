"""Structured regime likelihoods, exact marginal and posterior, ELBO estimators.

The structured latent (DESIGN section 2): category 0 leaves every mechanism in
its observational state, category ``k >= 1`` switches mechanism ``k - 1`` to its
intervened state. Given node log-densities in both states, ``l_obs`` and
``l_int`` of shape ``[..., N]``, all ``K = N + 1`` conditional likelihoods cost
one sum:

  log p(x | z = 0) = L_obs,   log p(x | z = k) = L_obs + l_int[k-1] - l_obs[k-1].
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import optax

from vcm_jax import gumbel


def structured_log_likelihoods(l_obs: jax.Array, l_int: jax.Array) -> jax.Array:
  """``log p(x | z = k)`` for every k: ``[..., N]`` x2 -> ``[..., N + 1]``."""
  total = l_obs.sum(axis=-1, keepdims=True)
  return jnp.concatenate([total, total + (l_int - l_obs)], axis=-1)


def log_marginal(log_lik: jax.Array, log_prior: jax.Array) -> jax.Array:
  """Exact ``log p(x) = logsumexp_k(log pi_k + log p(x | z = k))``: ``[..., K] -> [...]``."""
  return jax.nn.logsumexp(log_prior + log_lik, axis=-1)


def posterior_logits(log_lik: jax.Array, log_prior: jax.Array) -> jax.Array:
  """Normalised log posterior ``log p(z = k | x)``, ``[..., K]``."""
  return jax.nn.log_softmax(log_prior + log_lik, axis=-1)


def kl_categorical(q_logits: jax.Array, p_log_probs: jax.Array) -> jax.Array:
  """``KL(q || p)`` over the last axis, from logits; finite when q has zeros.

  ``q * log q`` is taken as ``softmax * log_softmax``: ``log_softmax`` never
  returns ``-inf`` for finite logits, so ``0 * log 0`` cannot produce a NaN
  (the failure that killed two runs in ten of the public code's, per its data.csv).
  """
  log_q = jax.nn.log_softmax(q_logits, axis=-1)
  q = jnp.exp(log_q)
  # A category with q = 0 contributes 0 even where p = 0 (log p = -inf) or its logit is
  # -inf (a masked category: log q = -inf); the inner wheres keep inf out of the masked
  # branch so gradients stay finite there too.
  safe_log_p = jnp.where(q > 0, p_log_probs, 0.0)
  safe_log_q = jnp.where(q > 0, log_q, 0.0)
  return jnp.sum(jnp.where(q > 0, q * (safe_log_q - safe_log_p), 0.0), axis=-1)


def expected_log_likelihood(q_logits: jax.Array, log_lik: jax.Array) -> jax.Array:
  """Exact ``E_q[log p(x | z)] = sum_k q_k log p(x | z = k)``."""
  return jnp.sum(jax.nn.softmax(q_logits, axis=-1) * log_lik, axis=-1)


def elbo_exact(q_logits, log_lik, log_prior, beta=1.0):
  """ELBO with the expectation over z enumerated (no sampling noise).

  Returns ``(elbo, expected_log_lik, kl)``, each ``[...]``; ``beta`` weights the
  KL term of the returned ``elbo``.
  """
  ell = expected_log_likelihood(q_logits, log_lik)
  kl = kl_categorical(q_logits, log_prior)
  return ell - beta * kl, ell, kl


def elbo_sampled(key, q_logits, log_prior, node_log_density: Callable, *, estimator: str,
                 temperature: float, beta=1.0):
  """ELBO with one relaxed (``gumbel``) or straight-through (``straight_through``) z.

  ``node_log_density(z)`` maps the sampled (relaxed) one-hot ``z: [..., K]`` to
  ``[..., N]`` node log-densities (the structured decoder reads its per-node
  states ``z[..., 1:]``; the free decoder mixes its regimes by ``z``). The KL is exact.
  """
  if estimator == "gumbel":
    z = gumbel.gumbel_softmax(key, q_logits, temperature)
  elif estimator == "straight_through":
    z = gumbel.straight_through(key, q_logits, temperature)
  else:
    raise ValueError(f"unknown sampled estimator {estimator!r}")
  ll = node_log_density(z).sum(axis=-1)
  kl = kl_categorical(q_logits, log_prior)
  return ll - beta * kl, ll, kl


def kl_weight_schedule(kind: str, *, num_steps: int, warmup_steps: int = 0,
                       cycles: int = 4, ratio: float = 0.5) -> optax.Schedule:
  """KL weight ``beta(step)``: ``constant`` (1), ``warmup`` (0 -> 1 linearly),
  ``cyclical`` (Fu et al. 2019: ``cycles`` ramps from 0 to 1 over the first
  ``ratio`` of each cycle, then 1), or ``reference`` (the public code's epochs)."""
  if kind == "constant":
    return optax.constant_schedule(1.0)
  if kind == "warmup":
    if warmup_steps <= 0:
      return optax.constant_schedule(1.0)
    return optax.linear_schedule(0.0, 1.0, int(warmup_steps))
  if kind == "cyclical":
    period = max(num_steps // max(cycles, 1), 1)

    def schedule(step):
      phase = jnp.mod(step, period) / (period * ratio)
      return jnp.minimum(phase, 1.0)

    return schedule
  if kind == "reference":
    return reference_kl_schedule
  raise ValueError(f"unknown KL schedule {kind!r}; expected constant, warmup, cyclical or "
                   f"reference")


def reference_kl_schedule(step, steps_per_epoch: int = 31):
  """The public code's KL weight (``task.py``, ``train.yaml``): per epoch of
  ``steps_per_epoch`` steps (10000 samples x 0.1 of the batches of 32), 0 for 3
  epochs, then 10 cycles of 5 epochs weighted 0, 0.4, 0.8, 1, 1, then 1."""
  epoch = step // steps_per_epoch
  cycle = jnp.array([0.0, 0.4, 0.8, 1.0, 1.0])[jnp.mod(epoch - 3, 5)]
  return jnp.where(epoch < 3, 0.0, jnp.where(epoch < 53, cycle, 1.0))
