"""vcm_jax.scm: linear SCM sampling, interventions, true densities and posterior."""
import functools

import jax
import jax.numpy as jnp
import networkx as nx
import numpy as np
import pytest
from scipy import special, stats

from vcm_jax import graphs, scm

# A fixed 4-node DAG whose column order is not topological: 3 -> 0 -> 1 -> 2, 3 -> 2.
ADJ = np.zeros((4, 4), np.float32)
ADJ[3, 0] = ADJ[0, 1] = ADJ[1, 2] = ADJ[3, 2] = 1
N = 4
DESC = {j: nx.descendants(nx.from_numpy_array(ADJ, create_using=nx.DiGraph), j) for j in range(N)}


def _scm(key=0, **kw):
  kw = dict(dict(shift=3.0, noise_low=0.5, noise_high=1.5), **kw)
  return scm.sample_linear_scm(jax.random.key(key), jnp.asarray(ADJ), **kw)


@functools.partial(jax.jit, static_argnames=("n", "noise"))
def _sample(key, true, regimes=None, *, n, noise="gauss"):
  return scm.sample_data(key, true, n, noise=noise, regimes=regimes)


def _np(true):
  return {k: np.asarray(v, np.float64) for k, v in true._asdict().items()}


@pytest.mark.fast
def test_sample_linear_scm_structure():
  true = _scm(0, intervention="both", variance_factor=2.0, obs_fraction=0.4)
  p = _np(true)
  assert np.all(p["weights"][ADJ == 0] == 0)
  w = np.abs(p["weights"][ADJ == 1])
  assert np.all((w >= 0.1) & (w <= 1.0))
  assert np.all((p["noise_scale"] >= 0.5) & (p["noise_scale"] <= 1.5))
  assert np.all((np.abs(p["shift"] - 3.0) >= 0.1 - 1e-6) & (np.abs(p["shift"] - 3.0) <= 1.0 + 1e-6))
  np.testing.assert_allclose(p["int_scale"], 2.0)
  np.testing.assert_allclose(p["regime_probs"], [0.4] + [0.15] * 4, rtol=1e-6)
  mean_only = _np(_scm(0, intervention="mean"))
  np.testing.assert_allclose(mean_only["int_scale"], 1.0)
  var_only = _np(_scm(0, intervention="variance", variance_factor=2.0))
  np.testing.assert_allclose(var_only["shift"], 0.0)
  with pytest.raises(ValueError, match="intervention"):
    _scm(0, intervention="nope")


@pytest.mark.fast
def test_implied_covariance_closed_form_and_sample_covariance():
  true = _scm(1, obs_fraction=1.0)
  p = _np(true)
  inv = np.linalg.inv(np.eye(N) - p["weights"])
  closed = inv.T @ np.diag(p["noise_scale"] ** 2) @ inv
  implied = np.asarray(scm.implied_covariance(true), np.float64)
  np.testing.assert_allclose(implied, closed, rtol=1e-5, atol=1e-6)

  s = 200_000
  x, regimes = _sample(jax.random.key(2), true, n=s)
  assert np.all(np.asarray(regimes) == 0)
  x = np.asarray(x, np.float64)
  assert np.all(np.abs(x.mean(0)) < 5 * np.sqrt(np.diag(closed) / s))
  cov = np.cov(x, rowvar=False)
  # Std of a sample covariance entry of a Gaussian: sqrt((S_ii S_jj + S_ij^2) / s).
  se = np.sqrt((np.outer(np.diag(closed), np.diag(closed)) + closed ** 2) / s)
  assert np.all(np.abs(cov - closed) < 5 * se), (cov, closed)
  # The graph matters: the covariance is not diagonal.
  assert np.abs(closed[3, 0]) > 10 * se[3, 0]


@pytest.mark.fast
def test_laplace_noise_covariance_and_kurtosis():
  true = _scm(1, obs_fraction=1.0)
  s = 200_000
  x, _ = _sample(jax.random.key(3), true, n=s, noise="laplace")
  x = np.asarray(x, np.float64)
  closed = np.asarray(scm.implied_covariance(true), np.float64)
  np.testing.assert_allclose(np.cov(x, rowvar=False), closed, atol=0.03 * closed.max())
  p = _np(true)
  resid = x - p["bias"] - x @ p["weights"]
  np.testing.assert_allclose(resid.std(0), p["noise_scale"], rtol=0.02)
  # Laplace excess kurtosis is 3 (Gaussian 0).
  np.testing.assert_allclose(stats.kurtosis(resid, axis=0), 3.0, atol=0.3)


@pytest.mark.fast
def test_regime_means_change_only_target_and_descendants():
  true = _scm(4, intervention="both", variance_factor=2.0)
  p = _np(true)
  per = 40_000
  regimes = jnp.repeat(jnp.arange(N + 1, dtype=jnp.int32), per)
  x, r = _sample(jax.random.key(5), true, regimes, n=regimes.shape[0])
  np.testing.assert_array_equal(r, regimes)
  x = np.asarray(x, np.float64).reshape(N + 1, per, N)
  inv = np.linalg.inv(np.eye(N) - p["weights"])
  obs_mean = x[0].mean(0)
  for k in range(1, N + 1):
    node = k - 1
    diff = x[k].mean(0) - obs_mean
    se = np.sqrt(x[k].var(0) / per + x[0].var(0) / per)
    # Closed form: the shift of node k-1 propagated along the graph.
    expected = p["shift"][node] * inv[node]
    assert np.all(np.abs(diff - expected) < 5 * se), (k, diff, expected)
    for j in range(N):
      if j != node and j not in DESC[node]:
        assert abs(diff[j]) < 5 * se[j], (k, j, diff)
    assert abs(diff[node]) > 20 * se[node]
    # Only node k-1's mechanism changed: residuals of the SCM's equations.
    resid = x[k] - p["bias"] - x[k] @ p["weights"]
    rse = resid.std(0) / np.sqrt(per)
    np.testing.assert_array_less(np.abs(resid.mean(0) - p["shift"][node] * np.eye(N)[node]),
                                 5 * rse)
    scale = p["noise_scale"] * np.where(np.arange(N) == node, p["int_scale"], 1.0)
    np.testing.assert_allclose(resid.std(0), scale, rtol=0.03)
    # Regime covariance: (I - W)^-T diag(scale^2) (I - W)^-1.
    np.testing.assert_allclose(np.cov(x[k], rowvar=False), inv.T @ np.diag(scale ** 2) @ inv,
                               atol=0.06 * (scale ** 2).max() * np.abs(inv).max() ** 2)


@pytest.mark.fast
def test_regime_frequencies_match_probs():
  true = _scm(6, obs_fraction=0.3)
  s = 100_000
  _, r = _sample(jax.random.key(7), true, n=s)
  counts = np.bincount(np.asarray(r), minlength=N + 1)
  assert counts.size == N + 1
  probs = np.asarray(true.regime_probs, np.float64)
  np.testing.assert_allclose(probs.sum(), 1.0, rtol=1e-6)
  std = np.sqrt(s * probs * (1 - probs))
  assert np.all(np.abs(counts - s * probs) < 5 * std), (counts, s * probs)


def _numpy_node_logpdf(p, x, noise):
  mean = p["bias"] + x @ p["weights"]
  if noise == "gauss":
    l_obs = stats.norm.logpdf(x, mean, p["noise_scale"])
    l_int = stats.norm.logpdf(x, mean + p["shift"], p["noise_scale"] * p["int_scale"])
  else:
    l_obs = stats.laplace.logpdf(x, mean, p["noise_scale"] / np.sqrt(2))
    l_int = stats.laplace.logpdf(x, mean + p["shift"],
                                 p["noise_scale"] * p["int_scale"] / np.sqrt(2))
  return l_obs, l_int


@pytest.mark.fast
@pytest.mark.parametrize("noise", ["gauss", "laplace"])
def test_state_log_densities_match_scipy(noise):
  true = _scm(8, intervention="both", variance_factor=2.5)
  x, _ = _sample(jax.random.key(9), true, n=500, noise=noise)
  l_obs, l_int = scm.state_log_densities(true, x, noise=noise)
  r_obs, r_int = _numpy_node_logpdf(_np(true), np.asarray(x, np.float64), noise)
  np.testing.assert_allclose(l_obs, r_obs, rtol=1e-5, atol=1e-4)
  np.testing.assert_allclose(l_int, r_int, rtol=1e-5, atol=1e-4)


@pytest.mark.fast
@pytest.mark.parametrize("noise", ["gauss", "laplace"])
def test_true_posterior_and_marginal_brute_force(noise):
  true = _scm(10, intervention="both", variance_factor=2.0, obs_fraction=0.2)
  x, _ = _sample(jax.random.key(11), true, n=300, noise=noise)
  p = _np(true)
  r_obs, r_int = _numpy_node_logpdf(p, np.asarray(x, np.float64), noise)
  brute = np.empty((x.shape[0], N + 1))
  for k in range(N + 1):
    state = np.zeros(N, bool)
    if k:
      state[k - 1] = True
    brute[:, k] = np.where(state, r_int, r_obs).sum(-1)
  joint = brute + np.log(p["regime_probs"])
  post = np.asarray(scm.true_posterior(true, x, noise=noise), np.float64)
  np.testing.assert_allclose(post.sum(-1), 1.0, atol=1e-5)
  assert np.all(post >= 0)
  np.testing.assert_allclose(post, np.exp(joint - special.logsumexp(joint, -1, keepdims=True)),
                             atol=1e-4)
  np.testing.assert_allclose(scm.regime_log_likelihoods(true, x, noise=noise), brute,
                             rtol=1e-5, atol=1e-3)
  np.testing.assert_allclose(scm.true_log_marginal(true, x, noise=noise),
                             special.logsumexp(joint, -1), rtol=1e-5, atol=1e-3)


@pytest.mark.fast
def test_scalars_as_arrays_and_concrete_calls_give_the_traced_numbers():
  """Python numbers (the regime weights in double precision, as op by op), the same
  numbers as arrays (a sweep under vmap), and the whole draw under jit: one SCM and one
  data set."""
  kw = dict(shift=3.0, noise_low=0.5, noise_high=1.5, obs_fraction=0.4, variance_factor=2.0)
  plain = _scm(1, intervention="both", **kw)
  as_arrays = _scm(1, intervention="both", **{k: jnp.float32(v) for k, v in kw.items()})
  for a, b in zip(jax.tree.leaves(plain), jax.tree.leaves(as_arrays)):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-7)
  swept = jax.vmap(lambda s: _scm(1, shift=s).shift)(jnp.asarray([3.0, 5.0]))
  np.testing.assert_allclose(swept[1] - swept[0], 2.0, rtol=1e-6)
  x, r = scm.sample_data(jax.random.key(2), plain, 300)
  xj, rj = _sample(jax.random.key(2), plain, n=300)
  np.testing.assert_array_equal(np.asarray(r), np.asarray(rj))
  np.testing.assert_allclose(np.asarray(x), np.asarray(xj), rtol=1e-5, atol=1e-5)
  given = scm.sample_data(jax.random.key(3), plain, 0, regimes=r)
  np.testing.assert_array_equal(np.asarray(given[1]), np.asarray(r))


def test_vmap_over_keys_and_graphs_equals_separate_calls():
  from vcm_jax import graphs

  def one(key):
    k_g, k_s, k_d = jax.random.split(key, 3)
    adj = graphs.sample_er_dag(k_g, n_nodes=5, edge_prob=0.5)
    true = scm.sample_linear_scm(k_s, adj, shift=4.0, intervention="both")
    x, r = scm.sample_data(k_d, true, 64)
    return adj, x, r, scm.true_posterior(true, x), scm.implied_covariance(true)

  keys = jax.random.split(jax.random.key(12), 3)
  batched = jax.jit(jax.vmap(one))(keys)
  single = jax.jit(one)
  adjs = batched[0]
  assert len({np.asarray(a).tobytes() for a in adjs}) == 3  # three different graphs
  for i in range(3):
    for b, s in zip(batched, single(keys[i])):
      np.testing.assert_allclose(b[i], s, rtol=1e-5, atol=1e-5)


def test_mlp_scm_mechanisms_read_parents_and_residuals_are_the_noise():
  """Nonlinear mechanisms: node j's mean moves with its parents only; the data solve
  x = mean(x) + shift + noise exactly (residuals of the observational regime have the
  noise scales, those of regime j+1 are shifted at j only)."""
  key = jax.random.key(3)
  adj = graphs.sample_er_dag(key, n_nodes=6, edge_prob=0.6)
  true = scm.sample_mlp_scm(jax.random.key(4), adj, shift=4.0, noise_low=0.5, noise_high=1.5)
  assert true.mlp is not None and not np.any(np.asarray(true.weights))
  x0 = jax.random.normal(jax.random.key(5), (3, 6))
  means = np.asarray(scm.mechanism_means(true, x0))
  a = np.asarray(adj)
  for i in range(6):
    moved = np.asarray(scm.mechanism_means(true, x0.at[:, i].add(1.0))) - means
    for j in range(6):
      if a[i, j]:
        assert np.abs(moved[:, j]).max() > 1e-4  # parents matter (nonlinearly)
      else:
        np.testing.assert_allclose(moved[:, j], 0.0, atol=1e-6)
  regimes = jnp.concatenate([jnp.zeros(20000, jnp.int32), jnp.full((20000,), 3, jnp.int32)])
  x, _ = scm.sample_data(jax.random.key(6), true, 40000, regimes=regimes)
  resid = np.asarray(x - scm.mechanism_means(true, x))
  np.testing.assert_allclose(resid[:20000].std(0), np.asarray(true.noise_scale), rtol=0.03)
  np.testing.assert_allclose(resid[:20000].mean(0), 0.0, atol=0.03)
  shifted = resid[20000:].mean(0)
  np.testing.assert_allclose(shifted[2], float(true.shift[2]), atol=0.05)
  np.testing.assert_allclose(np.delete(shifted, 2), 0.0, atol=0.05)


def test_fourier_mechanisms_match_numpy_and_are_nonlinear():
  """Random Fourier-feature mechanisms: the mean is the linear part plus
  sum_f out cos(x w + b) (NumPy), and their nonlinear part has about the stated spread."""
  adj = graphs.sample_er_dag(jax.random.key(0), n_nodes=6, edge_prob=0.6)
  true = scm.sample_scm(jax.random.key(1), adj, mechanism="fourier", hidden=4, shift=4.0)
  assert true.fourier is not None and true.mlp is None and true.fourier.w_in.shape == (6, 6, 16)
  x = np.asarray(jax.random.normal(jax.random.key(2), (500, 6)) * 2, np.float64)
  f = {k: np.asarray(v, np.float64) for k, v in true.fourier._asdict().items()}
  want = np.asarray(true.bias) + x @ np.asarray(true.weights, np.float64) + np.einsum(
      "sjh,jh->sj", np.cos(np.einsum("si,ijh->sjh", x, f["w_in"]) + f["b_in"]), f["out"])
  np.testing.assert_allclose(scm.mechanism_means(true, jnp.asarray(x, jnp.float32)), want,
                             rtol=1e-4, atol=1e-4)
  nonlinear = want - np.asarray(true.bias) - x @ np.asarray(true.weights, np.float64)
  has_parents = np.asarray(adj).sum(0) > 0
  assert np.all(nonlinear[:, ~has_parents] == 0)
  assert 0.5 < nonlinear[:, has_parents].std() < 4.0
  # Samples are the fixed point of x = u + means(x): finite, and the regimes still differ.
  xs, r = scm.sample_data(jax.random.key(3), true, 4000)
  assert np.all(np.isfinite(np.asarray(xs)))
