"""vcm_jax.baselines: weighted least squares, structured linear EM, GMM, pooled and oracle fits."""
import functools
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import adjusted_rand_score
from sklearn.mixture import GaussianMixture

from vcm_jax import baselines, graphs, metrics, scm

N, S = 5, 3000
K = N + 1

# Compiled once per shape: every test below that fits EM uses (S, N).
_em = jax.jit(functools.partial(baselines.linear_em, num_iters=100))


@functools.partial(jax.jit, static_argnames=("n", "s"))
def _problem(key, *, n=N, s=S, shift=10.0, obs_fraction=0.2):
  """A random ER DAG, a linear SCM on it, training and held-out samples."""
  kg, ks, kd, kt = jax.random.split(key, 4)
  adj = graphs.sample_er_dag(kg, n_nodes=n, edge_prob=0.5)
  model = scm.sample_linear_scm(ks, adj, shift=shift, obs_fraction=obs_fraction)
  x, regimes = scm.sample_data(kd, model, s)
  x_test, regimes_test = scm.sample_data(kt, model, s)
  return adj, model, x, regimes, x_test, regimes_test


def _ari(labels, posterior):
  return float(metrics.adjusted_rand_index(labels, jnp.argmax(posterior, -1), posterior.shape[-1]))


def _bayes_ari(model, x, labels):
  return _ari(labels, scm.true_posterior(model, x))


def _lstsq(x, y, w=None):
  """Weighted least squares in float64 numpy: coefficients and the MLE residual scale."""
  w = np.ones(len(y)) if w is None else w
  sw = np.sqrt(w)
  coef = np.linalg.lstsq(sw[:, None] * x, sw * y, rcond=None)[0]
  resid = y - x @ coef
  return coef, np.sqrt((w * resid ** 2).sum() / w.sum())


@pytest.mark.fast
def test_weighted_least_squares_matches_lstsq():
  rng = np.random.default_rng(0)
  n, s = 6, 400
  adj = np.asarray(graphs.sample_er_dag(jax.random.key(3), n_nodes=n, edge_prob=0.6))
  assert (adj.sum(0) == 0).any() and (adj.sum(0) >= 2).any()  # roots and multi-parent nodes
  x = rng.normal(size=(s, n)) @ rng.normal(size=(n, n)) + rng.normal(size=n)
  weights = np.stack([rng.uniform(size=(s, n)), rng.uniform(size=(s, n)) ** 4,
                      np.zeros((s, n))])  # the last state is empty
  fit = jax.jit(functools.partial(baselines.weighted_least_squares, ridge=0.0))
  got = fit(jnp.asarray(x, jnp.float32), jnp.asarray(weights, jnp.float32), jnp.asarray(adj))
  assert got.weights.shape == (3, n, n) and got.scale.shape == (3, n)
  # Non-parent coefficients are pinned to exactly 0.
  assert np.all(np.asarray(got.weights)[:, adj == 0] == 0)
  for state in range(2):
    for j in range(n):
      pa = np.flatnonzero(adj[:, j])
      design = np.column_stack([x[:, pa], np.ones(s)])
      coef, scale = _lstsq(design, x[:, j], weights[state, :, j])
      np.testing.assert_allclose(got.weights[state, pa, j], coef[:-1], rtol=2e-3, atol=2e-3)
      np.testing.assert_allclose(got.bias[state, j], coef[-1], rtol=2e-3, atol=2e-3)
      np.testing.assert_allclose(got.scale[state, j], scale, rtol=2e-3)
  # The empty state stays finite: zero coefficients, floored scale.
  assert np.all(np.isfinite(got.weights)) and np.all(np.isfinite(got.scale))
  np.testing.assert_allclose(got.weights[2], 0.0)
  np.testing.assert_allclose(got.bias[2], 0.0)
  np.testing.assert_allclose(got.scale[2], 1e-3, rtol=1e-5)


@pytest.mark.fast
def test_solve_spd_matches_numpy():
  rng = np.random.default_rng(1)
  a = rng.normal(size=(4, 7, 7))
  a = a @ np.swapaxes(a, -1, -2) + 0.1 * np.eye(7)
  b = rng.normal(size=(4, 7, 3))
  sol, logdet = jax.jit(baselines.solve_spd)(jnp.asarray(a, jnp.float32), jnp.asarray(b, jnp.float32))
  np.testing.assert_allclose(sol, np.linalg.solve(a, b), rtol=2e-3, atol=2e-3)
  np.testing.assert_allclose(logdet, np.linalg.slogdet(a)[1], rtol=1e-4, atol=1e-3)


@pytest.mark.fast
def test_cholesky_matches_numpy_and_stays_finite_off_definite():
  rng = np.random.default_rng(2)
  a = rng.normal(size=(3, 6, 6))
  a = a @ np.swapaxes(a, -1, -2) + 0.1 * np.eye(6)
  l = jax.jit(baselines.cholesky)(jnp.asarray(a, jnp.float32))
  np.testing.assert_allclose(l, np.linalg.cholesky(a), rtol=1e-3, atol=1e-4)
  # singular (rank one), then indefinite: finite factors; the singular one is exact
  v = rng.normal(size=(4, 1))
  bad = np.stack([v @ v.T, v @ v.T - 1e-3 * np.eye(4)]).astype(np.float32)
  l = np.asarray(baselines.cholesky(jnp.asarray(bad)))
  assert np.all(np.isfinite(l))
  np.testing.assert_allclose(l[0] @ l[0].T, bad[0], atol=1e-5)


@pytest.mark.fast
@pytest.mark.parametrize("d", [3, 16])  # the two forms of the E-step's distances
def test_gmm_densities_and_m_step_match_scipy_and_numpy_in_both_forms(d):
  """``gmm_log_marginal`` against scipy's multivariate normal densities, below and at
  ``mixture.GEMM_MIN_COLUMNS``, on rows offset far from the origin and a component
  a hundred times narrower than the others; the M-step against NumPy's weighted
  moments."""
  from scipy import stats
  from vcm_jax.baselines import mixture
  assert (d < mixture.GEMM_MIN_COLUMNS) != (d == 16)
  rng = np.random.default_rng(d)
  k = 3
  means = 50.0 + rng.normal(size=(k, d))
  a = rng.normal(size=(k, d, d)) / np.sqrt(d)
  cov = a @ np.swapaxes(a, -1, -2) + 0.5 * np.eye(d)
  cov[2] *= 1e-4
  weights = np.array([0.5, 0.3, 0.2])
  x = np.concatenate([rng.multivariate_normal(means[j], cov[j], size=20) for j in range(k)])
  want = np.log(sum(w * stats.multivariate_normal(m, c).pdf(x)
                    for w, m, c in zip(weights, means, cov)))
  res = baselines.GMMResult(*(jnp.asarray(v, jnp.float32) for v in (weights, means, cov)),
                            None, None, None)
  got = np.asarray(baselines.gmm_log_marginal(res, jnp.asarray(x, jnp.float32)))
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=0.01)  # (both: within 0.002)
  # The M-step's scatter (a Gram matrix from GEMM_MIN_COLUMNS) against NumPy's, on the
  # same rows centred (the offset would only test float32's digits) with soft weights.
  x = x - x.mean(0)
  resp = rng.dirichlet(np.ones(k), size=len(x))
  weights, means, cov = mixture._gmm_m_step(jnp.asarray(resp, jnp.float32),
                                            jnp.asarray(x, jnp.float32), 1e-6)
  nk = resp.sum(0)
  want_means = resp.T @ x / nk[:, None]
  want_cov = np.stack([(resp[:, j, None] * (x - want_means[j])).T @ (x - want_means[j]) / nk[j]
                       for j in range(k)]) + 1e-6 * np.eye(d)
  np.testing.assert_allclose(weights, nk / nk.sum(), rtol=1e-5)
  np.testing.assert_allclose(means, want_means, atol=1e-5)
  np.testing.assert_allclose(cov, want_cov, atol=1e-5)


def test_linear_em_recovers_regimes_and_never_decreases_log_likelihood():
  adj, model, x, regimes, _, _ = _problem(jax.random.key(0))
  res = _em(jax.random.key(0), x, adj)
  bayes = _bayes_ari(model, x, regimes)
  ari = _ari(regimes, res.posterior)
  assert bayes > 0.9
  assert ari >= 0.95 * bayes, (ari, bayes)
  # EM's trace of mean log p(x) is non-decreasing and ends at the reported value.
  trace = np.asarray(res.trace)
  assert trace.shape == (101,) and np.all(np.isfinite(trace))
  assert np.diff(trace).min() >= -1e-4, np.diff(trace).min()
  assert trace[-1] > trace[0] + 1.0
  assert float(res.log_likelihood) == pytest.approx(trace[-1])
  # The maximum likelihood fit explains its training data at least as well as the truth.
  assert float(res.log_likelihood) >= float(scm.true_log_marginal(model, x).mean()) - 1e-3
  # Parameters are in data units: re-scoring the raw samples reproduces the fit.
  np.testing.assert_allclose(baselines.structured_posterior(res.params, x), res.posterior,
                             atol=1e-3)
  np.testing.assert_allclose(baselines.structured_log_marginal(res.params, x).mean(),
                             res.log_likelihood, rtol=1e-5)
  shift = res.params.intervened.bias - res.params.obs.bias
  np.testing.assert_allclose(shift, model.shift, atol=0.3)
  np.testing.assert_allclose(jnp.exp(res.params.log_prior), model.regime_probs, atol=0.03)
  # Knowing regimes helps: far above the pooled fit.
  assert float(res.log_likelihood) > float(baselines.pooled_fit(x, adj).log_likelihood) + 1.0
  # A harder problem (shift 4, Bayes ARI ~ 0.9), scored on held-out samples.
  adj, model, x, _, x_test, regimes_test = _problem(jax.random.key(5), shift=4.0)
  res = _em(jax.random.key(5), x, adj)
  ari = _ari(regimes_test, baselines.structured_posterior(res.params, x_test))
  bayes = _bayes_ari(model, x_test, regimes_test)
  assert ari >= 0.95 * bayes, (ari, bayes)


def test_linear_em_vmap_matches_separate_runs_and_survives_empty_regimes():
  keys = jax.random.split(jax.random.key(1), 3)
  adj, _, x, _, _, _ = jax.vmap(_problem)(keys)
  batched = jax.jit(jax.vmap(functools.partial(baselines.linear_em, num_iters=100)))(keys, x, adj)
  for b in range(3):
    single = _em(keys[b], x[b], adj[b])
    np.testing.assert_allclose(batched.posterior[b], single.posterior, atol=1e-4)
    np.testing.assert_allclose(batched.log_likelihood[b], single.log_likelihood, rtol=1e-5)
    np.testing.assert_allclose(batched.params.obs.weights[b], single.params.obs.weights,
                               atol=1e-4)
  # Observational data only: no intervened state has data of its own; nothing turns NaN
  # and the fit (which nests the truth) explains the data at least as well as the truth.
  adj, model, x, regimes, _, _ = _problem(jax.random.key(2), obs_fraction=1.0)
  res = _em(jax.random.key(2), x, adj)
  for leaf in jax.tree.leaves(res):
    assert np.all(np.isfinite(leaf)), leaf
  assert float(res.log_likelihood) >= float(scm.true_log_marginal(model, x).mean()) - 1e-3
  # A state with exactly no weight (the oracle with no sample of regime 1): finite, floored.
  fit = baselines.oracle_fit(x, regimes, adj)
  for leaf in jax.tree.leaves(fit):
    assert np.all(np.isfinite(leaf)), leaf
  np.testing.assert_allclose(fit.params.intervened.weights, 0.0)
  np.testing.assert_allclose(fit.posterior[:, 0], 1.0, atol=1e-6)


def _numpy_m_step(x, resp, reg_covar):
  nk = resp.sum(0) + 10 * np.finfo(np.float64).eps
  means = resp.T @ x / nk[:, None]
  cov = np.stack([((resp[:, k, None] * (x - means[k])).T @ (x - means[k])) / nk[k]
                  + reg_covar * np.eye(x.shape[1]) for k in range(len(nk))])
  return nk / nk.sum(), means, cov


def _clusters(rng, centers, s):
  labels = rng.integers(0, len(centers), s)
  chol = rng.normal(size=(len(centers), len(centers[0]), len(centers[0]))) * 0.6
  eps = rng.normal(size=(s, len(centers[0])))
  return np.asarray(centers)[labels] + np.einsum("sd,sed->se", eps, chol[labels]), labels


# (not fast: over 2 s with its compiles)
def test_gmm_matches_sklearn_from_the_same_start():
  rng = np.random.default_rng(0)
  x, _ = _clusters(rng, [[0.0, 0.0, 0.0], [2.0, 1.0, 0.0], [0.0, 2.5, 1.0]], 600)  # overlapping
  resp0 = rng.dirichlet(np.ones(3), size=len(x))
  w0, m0, c0 = _numpy_m_step(x, resp0, 1e-6)
  sk = GaussianMixture(3, covariance_type="full", max_iter=30, tol=0.0, reg_covar=1e-6,
                       init_params="random", weights_init=w0, means_init=m0,
                       precisions_init=np.linalg.inv(c0), random_state=0)
  with warnings.catch_warnings():
    warnings.simplefilter("ignore", ConvergenceWarning)
    sk.fit(x)
  with jax.enable_x64(True):
    fit = jax.jit(functools.partial(baselines.gaussian_mixture, n_components=3, num_iters=30))
    res = fit(jax.random.key(0), jnp.asarray(x), init_resp=jnp.asarray(resp0))
    assert res.means.dtype == jnp.float64
    np.testing.assert_allclose(res.weights, sk.weights_, rtol=1e-8)
    np.testing.assert_allclose(res.means, sk.means_, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(res.covariances, sk.covariances_, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(baselines.gmm_log_marginal(res, jnp.asarray(x)),
                               sk.score_samples(x), rtol=1e-8)
    np.testing.assert_allclose(baselines.gmm_posterior(res, jnp.asarray(x)),
                               sk.predict_proba(x), atol=1e-8)
    np.testing.assert_allclose(res.log_likelihood, sk.score(x), rtol=1e-8)
    assert np.diff(np.asarray(res.trace)).min() >= -1e-10


@pytest.mark.fast
def test_gmm_stops_where_sklearn_stops_at_its_default_tolerance():
  """With ``tol`` (scikit-learn's rule: the mean log-likelihood moved by less), the fit
  stops at scikit-learn's iteration: one more or fewer would move the parameters by far
  more than the 1e-8 compared. The trace is held at its last value after the stop."""
  rng = np.random.default_rng(0)
  x, _ = _clusters(rng, [[0.0, 0.0, 0.0], [2.0, 1.0, 0.0], [0.0, 2.5, 1.0]], 600)
  resp0 = rng.dirichlet(np.ones(3), size=len(x))
  w0, m0, c0 = _numpy_m_step(x, resp0, 1e-6)
  sk = GaussianMixture(3, covariance_type="full", max_iter=100, tol=1e-3, reg_covar=1e-6,
                       init_params="random", weights_init=w0, means_init=m0,
                       precisions_init=np.linalg.inv(c0), random_state=0).fit(x)
  assert 3 < sk.n_iter_ < 100 and sk.converged_
  with jax.enable_x64(True):
    fit = jax.jit(functools.partial(baselines.gaussian_mixture, n_components=3, num_iters=100,
                                    tol=1e-3))
    res = fit(jax.random.key(0), jnp.asarray(x), init_resp=jnp.asarray(resp0))
    np.testing.assert_allclose(res.means, sk.means_, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(res.covariances, sk.covariances_, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(res.log_likelihood, sk.score(x), rtol=1e-8)
    trace = np.asarray(res.trace)
    np.testing.assert_array_equal(trace[sk.n_iter_:], trace[-1])
    assert trace[sk.n_iter_ - 1] != trace[-1]


@pytest.mark.fast
def test_gmm_separates_well_separated_clusters_like_sklearn():
  rng = np.random.default_rng(1)
  x, labels = _clusters(rng, [[0.0, 0.0], [12.0, 0.0], [0.0, 12.0]], 1500)
  res = jax.jit(functools.partial(baselines.gaussian_mixture, n_components=3, num_iters=50))(
      jax.random.key(0), jnp.asarray(x, jnp.float32))
  ours = adjusted_rand_score(labels, np.asarray(jnp.argmax(res.posterior, -1)))
  sk = GaussianMixture(3, covariance_type="full", random_state=0).fit(x)
  theirs = adjusted_rand_score(labels, sk.predict(x))
  assert ours > 0.99 and theirs > 0.99, (ours, theirs)
  np.testing.assert_allclose(res.log_likelihood, sk.score(x), rtol=1e-3)


@pytest.mark.parametrize("d", [3, baselines.mixture.GEMM_MIN_COLUMNS])  # both E/M-step forms
def test_gmm_padded_with_empty_components_is_the_unpadded_fit(d):
  """``n_active`` components padded to ``n_components`` (traced, so that several K are one
  program): the active components are the unpadded fit's, from the same k-means++
  seeds; the padded ones have no weight, no responsibility and no share of log p."""
  rng = np.random.default_rng(2)
  x, _ = _clusters(rng, 2.0 * rng.normal(size=(3, d)), 600)
  k = 3
  with jax.enable_x64(True):
    x = jnp.asarray(x)
    fit = jax.jit(functools.partial(baselines.gaussian_mixture, num_iters=10),
                  static_argnames="n_components")
    one = fit(jax.random.key(3), x, n_components=5, n_active=jnp.asarray(k))
    alone = fit(jax.random.key(3), x, n_components=k)
    np.testing.assert_allclose(one.weights[:k], alone.weights, rtol=1e-9)
    np.testing.assert_array_equal(one.weights[k:], 0.0)
    np.testing.assert_allclose(one.means[:k], alone.means, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(one.covariances[:k], alone.covariances, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(one.posterior[:, :k], alone.posterior, atol=1e-12)
    np.testing.assert_array_equal(one.posterior[:, k:], 0.0)
    np.testing.assert_allclose(one.trace, alone.trace, rtol=1e-10)
    # (from GEMM_MIN_COLUMNS each distance is a difference of two products, whose
    # rounding a product over more components moves: 2e-9 nats here)
    np.testing.assert_allclose(baselines.gmm_log_marginal(one, x),
                               baselines.gmm_log_marginal(alone, x), rtol=1e-10, atol=1e-8)


@pytest.mark.fast
def test_pooled_fit_is_ols_and_puts_everything_in_regime_zero():
  adj, _, x, regimes, _, _ = _problem(jax.random.key(3))
  fit = jax.jit(baselines.pooled_fit)(x, adj)
  np.testing.assert_array_equal(fit.posterior[:, 0], 1.0)
  assert _ari(regimes, fit.posterior) == pytest.approx(0.0, abs=1e-6)
  x64, adj_np = np.asarray(x, np.float64), np.asarray(adj)
  total = 0.0
  for j in range(N):
    pa = np.flatnonzero(adj_np[:, j])
    coef, scale = _lstsq(np.column_stack([x64[:, pa], np.ones(S)]), x64[:, j])
    for mech in (fit.params.obs, fit.params.intervened):
      np.testing.assert_allclose(mech.weights[pa, j], coef[:-1], rtol=1e-3, atol=1e-3)
      np.testing.assert_allclose(mech.bias[j], coef[-1], rtol=1e-3, atol=1e-3)
      np.testing.assert_allclose(mech.scale[j], scale, rtol=1e-3)
    resid = x64[:, j] - np.column_stack([x64[:, pa], np.ones(S)]) @ coef
    total += np.mean(-0.5 * (resid / scale) ** 2 - np.log(scale) - 0.5 * np.log(2 * np.pi))
  assert np.all(np.asarray(fit.params.obs.weights)[adj_np == 0] == 0)
  np.testing.assert_allclose(fit.log_likelihood, total, rtol=1e-4)


@pytest.mark.fast
def test_oracle_fit_reaches_the_bayes_ceiling_and_the_true_parameters():
  adj, model, x, regimes, x_test, regimes_test = _problem(jax.random.key(4), shift=4.0)
  fit = jax.jit(functools.partial(baselines.oracle_fit, n_regimes=K))(x, regimes, adj)
  heldout = baselines.structured_posterior(fit.params, x_test)
  bayes = _bayes_ari(model, x_test, regimes_test)
  ari = _ari(regimes_test, heldout)
  assert ari >= 0.98 * bayes, (ari, bayes)
  np.testing.assert_allclose(baselines.structured_posterior(fit.params, x), fit.posterior,
                             atol=1e-5)
  obs, intervened = fit.params.obs, fit.params.intervened
  np.testing.assert_allclose(intervened.bias - obs.bias, model.shift, atol=0.2)
  np.testing.assert_allclose(obs.bias, model.bias, atol=0.1)
  np.testing.assert_allclose(obs.weights, model.weights, atol=0.05)
  np.testing.assert_allclose(obs.scale, model.noise_scale, atol=0.05)
  np.testing.assert_allclose(intervened.scale, model.noise_scale * model.int_scale, atol=0.15)
  counts = np.bincount(np.asarray(regimes), minlength=K)
  np.testing.assert_allclose(jnp.exp(fit.params.log_prior), counts / S, rtol=1e-5)
  with pytest.raises(ValueError, match="n_regimes"):
    baselines.oracle_fit(x, regimes, adj, n_regimes=N)
