"""How many free parameters a fit has: BIC's and ICL's penalty, and the sparse decoder's
price of a changed mechanism.

Counted from the parameters the decoder actually has (``networks``), per mechanism i
with ``p_i`` parents (the parent table's padding is not a parameter):

* its *copy* (what a regime that changes it, or the intervened state, adds): the
  linear part ``w`` (``p_i``, when there is one), the intercept and the noise scale,
  plus, for an MLP mechanism with parents, the regime's input weights into the first
  hidden layer (``z_kernel``, one per hidden unit);
* its *trunk* (an MLP mechanism with parents; shared by every copy): the hidden
  layers' kernels and biases and the output weights (and the scale's head where the
  noise scale depends on the parents, ``scale_model='parents'``).

A root's MLP reads only the regime, which its intercept already carries: no trunk,
no ``z_kernel``. The regime weights add ``K - 1``; the gross-error fraction and the
noise floor are fixed, not fitted. (Until issue 23 only the linear part was counted:
with 2 parents and 16 hidden units 4 of a mechanism's 84 parameters.)
"""
from __future__ import annotations

import jax.numpy as jnp

from vcm_jax.config import FitConfig


def per_mechanism(cfg: FitConfig, parent_mask):
  """``(copy, trunk)``, each ``[N]`` (jit-safe): the parameters one copy of each mechanism
  adds, and those its copies share (module doc)."""
  p = parent_mask.sum(-1)
  has_linear = cfg.mechanism == "linear" or cfg.linear_skip
  copy = (p if has_linear else 0.0) + 2.0
  if cfg.mechanism != "mlp":
    return copy, jnp.zeros_like(p)
  widths = tuple(cfg.hidden)
  with_parents = p > 0
  trunk = p * widths[0] + widths[0] + widths[-1]
  for fan_in, width in zip(widths[:-1], widths[1:]):
    trunk = trunk + (fan_in + 1) * width
  if cfg.scale_model == "parents":  # the scale's head on the last hidden layer
    trunk = trunk + widths[-1]
  return (copy + jnp.where(with_parents, widths[0], 0.0),
          jnp.where(with_parents, trunk, 0.0))


def count(model, params, parent_mask, n_active=None):
  """Free parameters of a fit (module doc), jit-safe; ``n_active``: a padded fit's regimes."""
  copy, trunk = per_mechanism(model.cfg, parent_mask)
  k = model.n_categories if n_active is None else n_active
  if model.structured:  # the observational state and the intervened one
    return trunk.sum() + 2 * copy.sum() + k - 1
  if model.sparse:  # the shared copy, and a regime's own copy where its gate is on
    on = model.gates_on(params)
    if n_active is not None:
      on = on & (jnp.arange(on.shape[0]) < n_active)[:, None]
    return trunk.sum() + copy.sum() + (on * copy).sum() + k - 1
  return trunk.sum() + k * copy.sum() + k - 1


def per_regime(model, params, parent_mask):
  """``[K]`` (jit-safe): the parameters only regime ``k`` uses, what a model without it
  saves: its prior weight, and its own copies of mechanisms: the structured latent's
  intervened copy of node ``k - 1`` (regime 0 owns its weight alone), the sparse
  latent's copies where its gates are on, the free latent's whole SCM. ``count`` with
  one regime fewer (``n_active``) is ``count`` less the last regime's."""
  copy, _ = per_mechanism(model.cfg, parent_mask)
  if model.structured:
    return 1.0 + jnp.concatenate([jnp.zeros(1), copy])
  if model.sparse:
    return 1.0 + model.gates_on(params).astype(copy.dtype) @ copy
  return jnp.full(model.n_categories, 1.0 + copy.sum())
