"""The number of regimes, chosen by held-out likelihood (free decoder, K unknown)."""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from vcm_jax.config import FitConfig


class Selection(NamedTuple):
  n_regimes: int
  heldout_log_px: dict  # {K: mean held-out log p(x), data units}


def default_k(n_nodes: int) -> tuple[int, ...]:
  """The K tried when none are given (the free decoder's K here, the sparse latent's in
  ``choose``): 2, 3, 4, 6, 8, 12, at most N + 1 (the single-target count)."""
  return tuple(k for k in (2, 3, 4, 6, 8, 12) if k <= n_nodes + 1)


def seed_of(key) -> int:
  """The integer a ``jax.random.key(seed)`` was made from (its last key word): the seed
  of the NumPy draws (row splits, subsets) that go with a fit's key."""
  return int(np.asarray(jax.random.key_data(key)).ravel()[-1])


def heldout_split(seed: int, n_rows: int, heldout_fraction: float = 0.1):
  """Sorted (train rows, held-out rows) of a random split drawn with ``seed`` (NumPy):
  the own-data command's split and this module's."""
  perm = np.random.default_rng(seed).permutation(n_rows)
  # 0: every row fitted, none held out (the own-data command then fits what vcm_jax.fit does)
  n_test = max(int(round(heldout_fraction * n_rows)), 1) if heldout_fraction > 0 else 0
  return np.sort(perm[n_test:]), np.sort(perm[:n_test])


def choose_n_regimes(key, x, adj, *, config: FitConfig, max_parents: int,
                     x_heldout=None, heldout_fraction: float = 0.1) -> Selection:
  """Fit each candidate K (``config.k_candidates``, or ``default_k``) and
  keep the one with the best mean held-out exact ``log p(x)``.

  ``x_heldout`` defaults to a random ``heldout_fraction`` of ``x``'s rows, then left
  out of the fits. The candidates are fitted as the model choice fits its own
  (``choose.fit_candidates``): K close enough to share a padded program are one
  compiled ``vmap``, and a fit with no finite start is an error, not a score.
  """
  from vcm_jax import choose  # (choose imports this module)
  x = jnp.asarray(x)
  k_split, k_fit = jax.random.split(key)
  if x_heldout is not None:
    k_fit = key
  else:
    train_rows, test_rows = heldout_split(seed_of(k_split), x.shape[0], heldout_fraction)
    x, x_heldout = x[train_rows], x[test_rows]
  ks = list(config.k_candidates) or list(default_k(x.shape[1]))
  fitted = choose.fit_candidates(k_fit, x, adj, [config.replace(
      n_regimes=k, max_parents=max_parents) for k in ks], x_heldout)
  scores = {k: f.row["heldout_log_px"] for k, f in zip(ks, fitted)}
  return Selection(max(scores, key=scores.get), scores)
