"""vcm_jax.checks: the shared-mechanism check against NumPy, and what it flags."""
import functools
import sys
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

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
  own posterior and observational cell densities (centred in closed form) on all rows
  at once."""
  x, _, _ = test_sparse._multi_target_data()
  fit = _multi_target_fit()
  got = checks.shared_mechanism_check(fit, x, effect=0.0, z=0.0)
  model, params = fit.model, fit.result.params
  xs = units.to_standard(jnp.asarray(x), fit.result.loc, fit.result.scale)
  post = np.asarray(model.posterior(params, xs, fit.parent_idx, fit.parent_mask), np.float64)
  z0 = jnp.zeros((len(x), model.n_categories)).at[:, 0].set(1.0)
  mean, log_scale = model.mixed_means(params, xs, z0, fit.parent_idx, fit.parent_mask)
  # centred on a Gaussian cell's expected log-density, -log(sd) - log(2 pi e) / 2
  cell = (np.asarray(model.cell_log_density(xs, mean, log_scale), np.float64)
          + np.asarray(log_scale, np.float64) + 0.5 * np.log(2 * np.pi * np.e))
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


def test_noise_that_grows_with_the_parents_and_a_floor_are_not_changes():
  """Rows drawn from a model's own law (so no mechanism misfits any regime) whose noise
  scale depends on the parents and whose last node is floored, with regimes that move
  the parents: the check holds. Uncentred, the cells' mean log-densities differ between
  the regimes by far more than the check's 0.1 nats (larger noise, more rows pinned at
  the floor), which is what the check read before each cell was centred on its
  expectation (``model.cell_expected_log_density``)."""
  from vcm_jax import api, graphs, model as model_lib, train
  adj = jnp.asarray([[0, 1, 0], [0, 0, 1], [0, 0, 0]], jnp.float32)  # X0 -> X1 -> X2
  idx, mask = graphs.parent_table(adj, 1)
  order = graphs.topological_order(adj)
  cfg = vcm_jax.FitConfig(decoder="structured", scale_model="parents")
  model = model_lib.build_model(cfg, n_nodes=3, max_parents=1)
  params = model_lib.init_params(jax.random.key(0), model, idx, mask)
  dec = dict(params["decoder"]["params"])
  dec["scale_out"] = 1.5 * jax.random.normal(jax.random.key(1), dec["scale_out"].shape)
  dec["db"] = jnp.full((3,), 3.0)  # each regime shifts its target, moving its children's parents
  params = dict(params, decoder={"params": dec},  # the regimes' true weights: 1/4 each
                prior_logits=jnp.zeros(4))
  regimes = jnp.repeat(jnp.arange(4), 1500)
  x = model.sample(jax.random.key(2), params, regimes, idx, mask, order)
  floor = float(jnp.quantile(x[regimes == 0, 2], 0.3))
  x = x.at[:, 2].max(floor)
  params = dict(params, censor_lower=jnp.asarray([-jnp.inf, -jnp.inf, floor]),
                censor_upper=jnp.full((3,), jnp.inf))
  result = train.FitResult(params, jnp.zeros(3), jnp.ones(3), None, jnp.zeros(1), jnp.zeros(()),
                           jnp.zeros((), jnp.int32), jnp.zeros((), bool))
  fit = jax.jit(api.from_result, static_argnums=0)(model, result, x, idx, mask, order)
  found = checks.shared_mechanism_check(fit, np.asarray(x))
  assert found["holds"], found
  assert found["largest_gap"] < 0.05, found["largest_gap"]
  # the raw log-densities of X1 and X2 by true regime (each regime keeps both but its own)
  cell = np.asarray(model.cell_log_density(x, *model.shared_means(params, x, idx, mask), params))
  for j in (1, 2):
    means = [cell[np.asarray(regimes) == k, j].mean() for k in range(4) if k != j + 1]
    assert max(means) - min(means) > 0.3, (j, means)


@pytest.mark.fast
def test_expected_log_density_matches_closed_forms_and_scipy():
  """``densities.expected_log_density``: minus the entropy of each family (SciPy), and,
  censored, the mixed law's ``E[log p]``: Gaussian in closed form, Student-t by SciPy's
  quadrature."""
  from scipy import integrate, stats
  from vcm_jax import densities
  mean, sd, lo, hi = 0.3, 1.7, -1.0, 2.5
  inf = np.inf
  expected = jax.jit(densities.expected_log_density, static_argnums=(0, 1))
  got = lambda noise, a, b: float(expected(noise, 4.0, jnp.float32(mean), jnp.float32(np.log(sd)),
                                           jnp.float32(a), jnp.float32(b)))
  t4 = stats.t(4, mean, sd * np.sqrt(0.5))
  laplace = stats.laplace(mean, sd / np.sqrt(2))
  for noise, law in (("gauss", stats.norm(mean, sd)), ("student_t", t4), ("laplace", laplace)):
    np.testing.assert_allclose(got(noise, -inf, inf), -law.entropy(), atol=1e-4)
  a = (lo - mean) / sd
  p0 = stats.norm.cdf(a)
  gauss_floor = (p0 * np.log(p0) + (1 - p0) * (-np.log(sd) - 0.5 * np.log(2 * np.pi))
                 - 0.5 * (1 - p0 + a * stats.norm.pdf(a)))
  np.testing.assert_allclose(got("gauss", lo, inf), gauss_floor, atol=1e-4)
  inside = integrate.quad(lambda v: t4.pdf(v) * t4.logpdf(v), lo, hi)[0]
  p_lo, p_hi = t4.cdf(lo), t4.sf(hi)
  np.testing.assert_allclose(got("student_t", lo, hi),
                             p_lo * np.log(p_lo) + p_hi * np.log(p_hi) + inside, atol=1e-4)
