"""Linear or MLP mechanisms by a cross-validated likelihood (vcm_jax.capacity)."""
import jax
import numpy as np
import pytest

from vcm_jax import api, capacity, graphs
from vcm_jax.config import FitConfig

# One model, a test's budget: 300 steps, one start.
CFG = FitConfig(num_steps=300, restarts=1)
ADJ = np.array([[0, 1], [0, 0]])
ROWS = 120


@pytest.mark.fast
def test_folds_test_every_row_once_and_train_on_equal_disjoint_sets():
  split = capacity.fold_rows(23, 5, seed=3)
  tests = np.concatenate([te for _, te in split])
  np.testing.assert_array_equal(np.sort(tests), np.arange(23))
  assert {len(tr) for tr, _ in split} == {23 - 5}  # 23 rows: folds of 5, 5, 5, 4, 4
  for tr, te in split:
    assert not set(tr) & set(te)
  with pytest.raises(ValueError, match="2 <= folds <= rows"):
    capacity.fold_rows(3, 5)


def _nonlinear(rows: int, seed: int) -> np.ndarray:
  """x1 = 2 sin(2 x0) + 0.1 noise: a law no linear mechanism holds."""
  rng = np.random.default_rng(seed)
  x0 = rng.normal(size=rows)
  return np.stack([x0, 2.0 * np.sin(2.0 * x0) + 0.1 * rng.normal(size=rows)], 1)


def test_heldout_log_px_is_each_fold_fitted_alone_and_scored_on_its_rows():
  """The folds' vmapped program against each fold's own fit (the jitted single fit with
  the same key), scored on the fold's held-out rows."""
  x = _nonlinear(ROWS, 0).astype(np.float32)
  key = jax.random.key(4)
  got = capacity.heldout_log_px(key, x, ADJ, CFG, seed=1)
  one = api._jit_fit_graph(CFG, graphs.resolve_max_parents(ADJ))
  scored = [np.asarray(one(key, x[tr], np.asarray(ADJ, np.float32)).log_prob(x[te]))
            for tr, te in capacity.fold_rows(ROWS, 5, seed=1)]
  np.testing.assert_allclose(got, np.concatenate(scored).mean(), rtol=1e-4, atol=1e-4)


def test_the_mechanism_that_predicts_unseen_rows_is_chosen():
  """A sine is MLP mechanisms' (linear ones cannot hold it); a line on as few rows is
  linear mechanisms' (the MLP's weights fit the noise). (One row count for the module:
  each mechanism family's folds compile once.)"""
  key = jax.random.key(0)
  curved = capacity.choose_mechanism(key, _nonlinear(ROWS, 1), ADJ, CFG)
  assert curved["mechanism"] == "mlp", curved
  assert curved["heldout_log_px"]["mlp"] > curved["heldout_log_px"]["linear"] + 0.5
  rng = np.random.default_rng(2)
  x0 = rng.normal(size=ROWS)
  line = np.stack([x0, 0.8 * x0 + rng.normal(size=ROWS)], 1)
  straight = capacity.choose_mechanism(key, line, ADJ, CFG)
  assert straight["mechanism"] == "linear", straight


@pytest.mark.fast
def test_a_family_whose_folds_fail_scores_minus_infinity_and_says_why(monkeypatch):
  def heldout(key, x, adj, cfg, folds, seed):
    if cfg.mechanism == "mlp":
      raise api.FitError("the mlp mechanisms' cross-validation fit: every start NaN")
    return -3.0
  monkeypatch.setattr(capacity, "heldout_log_px", heldout)
  found = capacity.choose_mechanism(None, np.zeros((20, 2)), ADJ, CFG)
  assert found["mechanism"] == "linear" and found["heldout_log_px"]["mlp"] == -np.inf
  assert "every start NaN" in found["failed"]["mlp"], found
