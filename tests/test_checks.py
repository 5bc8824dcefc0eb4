"""vcm_jax.checks: the shared-mechanism check against NumPy, and what it flags."""
import functools
import sys
import os

import jax
import jax.numpy as jnp
import numpy as np

import vcm_jax
from vcm_jax import checks, scm, units

sys.path.insert(0, os.path.dirname(__file__))
import test_sparse  # noqa: E402  (the multi-target data)

CFG = vcm_jax.FitConfig(mechanism="linear", num_steps=300, pooled_steps=50, restarts=1)


def _fit(x):
  fit_graph = jax.jit(vcm_jax.fit_graph, static_argnames=("config", "max_parents"))
  return fit_graph(jax.random.key(0), jnp.asarray(x), jnp.asarray(test_sparse.ADJ, float),
                   config=CFG, max_parents=2)


@functools.cache
def _multi_target_fit():
  """The structured fit of test_sparse's multi-target data (4000 rows), made once: both
  tests read it. (Every fit here has 4000 rows: one compiled program.)"""
  return _fit(test_sparse._multi_target_data()[0])


def test_gap_and_z_match_numpy_on_the_whole_rows():
  """Block sums and the leave-one-regime-out pool, recomputed in NumPy from the fit's
  own posterior and observational cell densities on all rows at once."""
  x, _, _ = test_sparse._multi_target_data()
  fit = _multi_target_fit()
  got = checks.shared_mechanism_check(fit, x, effect=0.0, z=0.0)
  model, params = fit.model, fit.result.params
  xs = units.to_standard(jnp.asarray(x), fit.result.loc, fit.result.scale)
  post = np.asarray(model.posterior(params, xs, fit.parent_idx, fit.parent_mask), np.float64)
  z0 = jnp.zeros((len(x), model.n_categories)).at[:, 0].set(1.0)
  cell = np.asarray(model.cell_log_density(xs, *model.mixed_means(
      params, xs, z0, fit.parent_idx, fit.parent_mask)), np.float64)
  k_all, n = post.shape[1], x.shape[1]
  keeps = ~np.eye(k_all, n, -1, dtype=bool)
  for k in range(k_all):
    for j in range(n):
      if not keeps[k, j]:
        assert got["gap"][k, j] == 0.0
        continue
      pool = [m for m in range(k_all) if m != k and keeps[m, j]]
      w, wp = post[:, k], post[:, pool].sum(1)
      mean_k, mean_p = (w * cell[:, j]).sum() / w.sum(), (wp * cell[:, j]).sum() / wp.sum()
      var_k = (w * (cell[:, j] - mean_k) ** 2).sum() / w.sum()
      var_p = (wp * (cell[:, j] - mean_p) ** 2).sum() / wp.sum()
      eff_k, eff_p = w.sum() ** 2 / (w ** 2).sum(), wp.sum() ** 2 / (post[:, pool] ** 2).sum()
      se = np.sqrt(var_k / eff_k + var_p / eff_p)
      np.testing.assert_allclose(got["gap"][k, j], mean_k - mean_p, atol=2e-4)
      np.testing.assert_allclose(got["z"][k, j], (mean_k - mean_p) / se, rtol=2e-3, atol=2e-3)
  assert got["flagged"].sum() == (keeps & (got["gap"] != 0)).sum()  # thresholds 0: all flagged


def test_the_check_holds_on_single_target_data_and_fails_on_a_two_target_regime():
  true = scm.sample_linear_scm(jax.random.key(0), jnp.asarray(test_sparse.ADJ), shift=4.0)
  x, _ = scm.sample_data(jax.random.key(1), true, 4000)
  single = checks.shared_mechanism_check(_fit(x), np.asarray(x))
  assert single["holds"], single
  x2, _, _ = test_sparse._multi_target_data()
  multi = checks.shared_mechanism_check(_multi_target_fit(), x2)
  assert not multi["holds"]
  # The structured fit gives regime 2 (changes X2 and X3) one of them; the other's shared
  # mechanism misfits some regime's rows: only X2 or X3 can be flagged.
  assert set(np.flatnonzero(multi["flagged"].any(0))) <= {2, 3}, multi["flagged"]
