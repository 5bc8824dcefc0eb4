"""vcm_jax.metrics against scikit-learn; vcm_jax.identify."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn import metrics as skm

from vcm_jax import identify, metrics

pytestmark = pytest.mark.fast  # every test here is fast

K = 5
_ari = jax.jit(metrics.adjusted_rand_index, static_argnums=(2, 3))
_nmi = jax.jit(metrics.normalized_mutual_info, static_argnums=(2, 3))


def _cases():
  rng = np.random.default_rng(0)
  n = 300
  a = rng.integers(0, K, n)
  perm = rng.permutation(K)
  noisy = np.where(rng.uniform(size=n) < 0.2, rng.integers(0, K, n), a)
  return {
      "random": (a, rng.integers(0, K, n)),
      "noisy": (a, noisy),
      "identical": (a, a.copy()),
      "permuted": (a, perm[a]),
      "merged": (a, np.minimum(a, 2)),
      "skewed": (np.where(rng.uniform(size=n) < 0.9, 0, a), rng.integers(0, K, n)),
      "one_cluster_both": (np.zeros(n, int), np.full(n, 3)),
      "one_cluster_true": (np.zeros(n, int), a),
      "one_cluster_pred": (a, np.zeros(n, int)),
      "singletons_vs_one": (np.arange(K), np.zeros(K, int)),
      "singletons_both": (np.arange(K), np.roll(np.arange(K), 2)),
      "tiny": (np.array([1]), np.array([4])),
  }


@pytest.mark.parametrize("name", list(_cases()))
def test_ari_nmi_match_sklearn(name):
  true, pred = _cases()[name]
  t, p = jnp.asarray(true, jnp.int32), jnp.asarray(pred, jnp.int32)
  np.testing.assert_allclose(float(_ari(t, p, K, None)), skm.adjusted_rand_score(true, pred),
                             atol=2e-5)
  np.testing.assert_allclose(float(_nmi(t, p, K, None)),
                             skm.normalized_mutual_info_score(true, pred), atol=2e-5)
  # Eager call gives the same.
  np.testing.assert_allclose(float(metrics.adjusted_rand_index(t, p, K)), float(_ari(t, p, K, None)),
                             atol=1e-6)


def test_known_values():
  a = jnp.array([0, 0, 1, 1, 2, 2])
  assert float(_ari(a, jnp.array([2, 2, 0, 0, 1, 1]), 3, None)) == pytest.approx(1.0, abs=1e-6)
  assert float(_nmi(a, jnp.array([2, 2, 0, 0, 1, 1]), 3, None)) == pytest.approx(1.0, abs=1e-6)
  # A labelling no better than chance has ARI < 1, and the anti-correlated one is negative.
  assert float(_ari(jnp.array([0, 0, 1, 1]), jnp.array([0, 1, 0, 1]), 2, None)) == pytest.approx(-0.5)


def test_different_number_of_predicted_labels():
  rng = np.random.default_rng(1)
  true = rng.integers(0, 3, 200)
  pred = rng.integers(0, 7, 200)
  t, p = jnp.asarray(true), jnp.asarray(pred)
  np.testing.assert_allclose(float(_ari(t, p, 3, 7)), skm.adjusted_rand_score(true, pred), atol=2e-5)
  np.testing.assert_allclose(float(_nmi(t, p, 3, 7)), skm.normalized_mutual_info_score(true, pred),
                             atol=2e-5)


def test_vmap_over_labelings():
  rng = np.random.default_rng(2)
  trues = rng.integers(0, K, (6, 150))
  preds = np.where(rng.uniform(size=(6, 150)) < np.linspace(0, 1, 6)[:, None],
                   rng.integers(0, K, (6, 150)), trues)
  ari = jax.jit(jax.vmap(lambda a, b: metrics.adjusted_rand_index(a, b, K)))(trues, preds)
  nmi = jax.jit(jax.vmap(lambda a, b: metrics.normalized_mutual_info(a, b, K)))(trues, preds)
  np.testing.assert_allclose(ari, [skm.adjusted_rand_score(a, b) for a, b in zip(trues, preds)],
                             atol=2e-5)
  np.testing.assert_allclose(nmi, [skm.normalized_mutual_info_score(a, b)
                                   for a, b in zip(trues, preds)], atol=2e-5)
  assert float(ari[0]) == pytest.approx(1.0) and float(ari[-1]) < 0.1


def test_contingency():
  table = metrics.contingency(jnp.array([0, 0, 1, 2]), jnp.array([1, 1, 0, 1]), 3, 2)
  np.testing.assert_array_equal(table, [[0, 2], [1, 0], [0, 1]])


def test_labels_outside_their_range_are_an_error_or_nan_never_a_score():
  """Labels 5 and 7 with n_true = 2 spilled across the table's rows: ARI 1.0 where
  scikit-learn says -0.5. Concrete labels: one ValueError naming them; traced: NaN."""
  true, pred = np.array([5, 7, 5, 7]), np.array([5, 5, 7, 7])
  for fn in (metrics.adjusted_rand_index, metrics.normalized_mutual_info, metrics.contingency):
    with pytest.raises(ValueError, match=r"labels_true must lie in 0..1 \(n_true = 2\); got "
                                         r"labels 5..7"):
      fn(true, pred, 2, 2)
  with pytest.raises(ValueError, match=r"labels_pred must lie in 0..2 \(n_pred = 3\)"):
    metrics.adjusted_rand_index(np.array([0, 1, 0, 1]), np.array([0, 3, 1, 1]), 2, 3)
  with pytest.raises(ValueError, match="labels_true must lie in 0..1"):
    metrics.adjusted_rand_index(np.array([0, -1]), np.array([0, 1]), 2)
  assert np.isnan(float(_ari(jnp.asarray(true), jnp.asarray([0, 0, 1, 1]), 2, 2)))
  assert np.isnan(float(_nmi(jnp.asarray([0, 1, 0, 1]), jnp.asarray([0, 0, 2, 1]), 2, 2)))
  relabelled = [np.unique(v, return_inverse=True)[1] for v in (true, pred)]
  assert float(metrics.adjusted_rand_index(*relabelled, 2)) == pytest.approx(
      skm.adjusted_rand_score(true, pred))


def test_target_accuracy():
  true = jnp.array([-1, 0, 1, 2, -1, 3])
  pred = jnp.array([-1, 0, 2, 2, 0, 3])
  assert float(metrics.target_accuracy(true, pred)) == pytest.approx(4 / 6)
  assert float(jax.jit(metrics.target_accuracy)(true, true)) == 1.0


def test_assign_regimes_and_targets():
  post = jnp.array([[0.1, 0.7, 0.2], [0.6, 0.3, 0.1], [0.2, 0.2, 0.6]])
  regime, prob = jax.jit(identify.assign_regimes)(post)
  np.testing.assert_array_equal(regime, [1, 0, 2])
  np.testing.assert_allclose(prob, [0.7, 0.6, 0.6])
  assert regime.dtype == jnp.int32
  np.testing.assert_array_equal(identify.structured_targets(regime), [0, -1, 1])
  assert identify.OBSERVATIONAL == -1


def test_observational_identified():
  rng = np.random.default_rng(3)
  true = jnp.asarray(rng.integers(0, K, 400))
  f = jax.jit(identify.observational_identified, static_argnums=(2,))
  assert bool(f(true, true, K))
  # Relabelled regimes with the observational regime kept at 0: still identified.
  perm = jnp.array([0, 3, 1, 4, 2])
  assert bool(f(true, perm[true], K))
  # Observational regime swapped with regime 1: not identified.
  swap = jnp.array([1, 0, 2, 3, 4])
  assert not bool(f(true, swap[true], K))
  # Everything called observational: recall 1, precision ~ 1/K -> not identified.
  assert not bool(f(true, jnp.zeros_like(true), K))
  # Nothing called observational: recall 0.
  assert not bool(f(true, jnp.ones_like(true), K))
  # Mostly right (80% of observational samples found, few false positives): identified.
  obs = np.asarray(true) == 0
  pred = np.asarray(true).copy()
  idx = np.flatnonzero(obs)
  pred[idx[: len(idx) // 5]] = 1
  assert bool(f(true, jnp.asarray(pred), K))
  # Other observational labels.
  assert bool(identify.observational_identified(true, true + 1, K, true_obs=0, pred_obs=1))


def test_adjusted_mutual_info_matches_scikit_learn():
  from sklearn.metrics import adjusted_mutual_info_score
  rng = np.random.default_rng(0)
  # (float64 throughout, as scikit-learn: within 1e-14 here, where JAX's float32
  # log-gamma was 8e-8 to 3e-6 off, the most at 6000 rows)
  for n, k_true, k_pred in ((700, 5, 7), (300, 2, 12), (50, 3, 3), (6000, 6, 8)):
    a = rng.integers(0, k_true, n)
    b = np.where(rng.random(n) < 0.6, a, rng.integers(0, k_pred, n))
    np.testing.assert_allclose(metrics.adjusted_mutual_info(a, b),
                               adjusted_mutual_info_score(a, b), rtol=0, atol=1e-9)
  assert metrics.adjusted_mutual_info([0, 0, 1, 1], [5, 5, 2, 2]) == 1.0
