"""The mechanisms' capacity on few rows: linear or MLP, by a cross-validated likelihood.

Why: the default's mechanisms are MLPs (``FitConfig.mechanism``). On a few hundred
rows they overfit: heteroscedastic development seed 0 at 300 rows, the single-target
MLP fit has log p(x) -11.4 nats a row on its rows and -14.3 on rows it did not see
(5-fold), the linear one -13.4. BIC is no judge here: it charges the MLP for every
weight, and preferred linear mechanisms on every 300-row set tried, also on the
physical family, whose near-deterministic nonlinear sensors the MLP does fit out of
sample (-2.2 against -3.2 nats a row) and whose regimes it finds (ARI 0.70 against
0.47). A held-out likelihood asks the question that decides: which mechanisms predict
rows they were not fitted to.

``heldout_log_px`` scores one model by k-fold cross-validation, the folds' fits one
vmapped program; ``choose_mechanism`` puts linear and MLP mechanisms to it.
"""
from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from vcm_jax import api, graphs
from vcm_jax.config import FitConfig


def fold_rows(n_rows: int, folds: int, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
  """``(train, test)`` row indices of ``folds`` folds of a random permutation: every row
  is tested once; every training set has the same size (the smallest, ``n_rows`` less
  the largest fold), so that one compiled program fits them all."""
  if not 2 <= folds <= n_rows:
    raise ValueError(f"cross-validation needs 2 <= folds <= rows; got {folds} folds, "
                     f"{n_rows} rows")
  perm = np.random.default_rng(seed).permutation(n_rows)
  tests = np.array_split(perm, folds)
  size = n_rows - max(len(t) for t in tests)
  out = []
  for i, test in enumerate(tests):
    train = np.concatenate([t for j, t in enumerate(tests) if j != i])[:size]
    out.append((np.sort(train), np.sort(test)))
  return out


def heldout_log_px(key, x, adj, cfg: FitConfig, folds: int = 5, seed: int = 0) -> float:
  """The mean log p(x) a row of ``cfg``'s model (one model, no choice) on rows it was
  not fitted to: k-fold cross-validation of the rows ``x`` (data units) on the DAG
  ``adj``, each fold's fit on the others' rows (``fold_rows``), in one program."""
  x = np.asarray(x, np.float32)
  split = fold_rows(len(x), folds, seed)
  adj = np.asarray(adj)
  mp = graphs.resolve_max_parents(adj, cfg.max_parents)
  # (the folds' training sets batched: one program, one key)
  batch = api.jit_fit_batch(cfg, mp, (None, 0, None))(
      key, jnp.asarray(np.stack([x[tr] for tr, _ in split])), jnp.asarray(adj, jnp.float32))
  fits = api.unstack(batch, folds)
  for f in fits:
    api.check_finite(f.result, f"the {cfg.mechanism} mechanisms' cross-validation fit")
  scored = [np.asarray(f.log_prob(jnp.asarray(x[te])), np.float64) for f, (_, te)
            in zip(fits, split)]
  return float(np.concatenate(scored).mean())


def choose_mechanism(key, x, adj, cfg: FitConfig, folds: int = 5, seed: int = 0) -> dict:
  """Linear or MLP mechanisms for ``cfg``'s model (its other settings as they are) by
  ``heldout_log_px``: ``{"mechanism": the higher, "heldout_log_px": {mechanism: nats a
  row}, "folds": folds}`` (and ``"failed"``: why, for a family whose folds' fit had no
  finite start; it scores -inf); a tie keeps the MLP (it contains the linear
  mechanisms: ``FitConfig.linear_skip``)."""
  scores, failed = {}, {}
  for m in ("mlp", "linear"):
    try:
      scores[m] = heldout_log_px(key, x, adj, cfg.replace(mechanism=m), folds, seed)
    except api.FitError as err:  # a fold with no finite start: that family scores -inf
      scores[m], failed[m] = -np.inf, str(err)
  best = "linear" if scores["linear"] > scores["mlp"] else "mlp"
  return {"mechanism": best, "heldout_log_px": scores, "folds": folds,
          **({"failed": failed} if failed else {})}
