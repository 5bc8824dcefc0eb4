"""vcm_jax.gumbel against TFP's RelaxedOneHotCategorical and the Gumbel-max trick."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats
from tensorflow_probability.substrates import jax as tfp

from vcm_jax import gumbel

pytestmark = pytest.mark.fast  # every test here is fast

tfd = tfp.distributions
LOGITS = jnp.array([1.0, -0.5, 0.3, -2.0, 0.0])


@pytest.mark.parametrize("temperature", [0.3, 1.0, 2.5])
def test_relaxed_log_prob_matches_tfp(temperature):
  k_l, k_y = jax.random.split(jax.random.key(int(temperature * 10)))
  logits = 2 * jax.random.normal(k_l, (8, 5))
  y = jax.random.dirichlet(k_y, jnp.ones(5), (8,))
  ours = gumbel.relaxed_log_prob(y, logits, temperature)
  ref = tfd.RelaxedOneHotCategorical(temperature, logits=logits).log_prob(y)
  assert ours.shape == (8,)
  np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-4)
  # The density is invariant to a constant added to the logits.
  np.testing.assert_allclose(gumbel.relaxed_log_prob(y, logits + 3.0, temperature), ours,
                             rtol=1e-5, atol=1e-4)


def test_relaxed_log_prob_integrates_to_one_k2():
  # K = 2: density w.r.t. y_1 on (0, 1); integrate numerically.
  grid = jnp.linspace(1e-5, 1 - 1e-5, 200_001)
  y = jnp.stack([grid, 1 - grid], -1)
  dens = jnp.exp(gumbel.relaxed_log_prob(y, jnp.array([0.4, -0.3]), 1.5))
  total = float(jnp.sum(dens) * (grid[1] - grid[0]))
  assert abs(total - 1.0) < 1e-3


@pytest.mark.parametrize("temperature", [0.5, 2.0])
def test_gumbel_softmax_distribution_matches_tfp(temperature):
  s = 20_000
  logits = jnp.broadcast_to(LOGITS, (s, 5))
  ours = np.asarray(jax.jit(gumbel.gumbel_softmax)(jax.random.key(1), logits, temperature))
  ref = np.asarray(tfd.RelaxedOneHotCategorical(temperature, logits=LOGITS).sample(
      s, seed=jax.random.key(2)))
  assert ours.shape == (s, 5)
  np.testing.assert_allclose(ours.sum(-1), 1.0, atol=1e-5)
  assert np.all(ours >= 0)
  se = np.sqrt(ours.var(0) / s + ref.var(0) / s)
  assert np.all(np.abs(ours.mean(0) - ref.mean(0)) < 5 * se), (ours.mean(0), ref.mean(0))
  # Whole marginal distributions agree (two-sample KS per coordinate).
  for j in range(5):
    assert stats.ks_2samp(ours[:, j], ref[:, j]).pvalue > 1e-4, j
  # Gumbel-max: argmax frequencies are softmax(logits), whatever the temperature.
  probs = np.asarray(jax.nn.softmax(LOGITS))
  freq = np.bincount(ours.argmax(-1), minlength=5) / s
  assert np.all(np.abs(freq - probs) < 5 * np.sqrt(probs * (1 - probs) / s)), (freq, probs)


def test_gumbel_softmax_rejects_wrong_distribution():
  # Control: the same comparison distinguishes a different temperature.
  s = 20_000
  logits = jnp.broadcast_to(LOGITS, (s, 5))
  ours = np.asarray(jax.jit(gumbel.gumbel_softmax)(jax.random.key(1), logits, 0.5))
  ref = np.asarray(tfd.RelaxedOneHotCategorical(1.0, logits=LOGITS).sample(
      s, seed=jax.random.key(2)))
  assert min(stats.ks_2samp(ours[:, j], ref[:, j]).pvalue for j in range(5)) < 1e-6


def test_straight_through_forward_one_hot_and_gradient():
  key = jax.random.key(3)
  logits = jax.random.normal(jax.random.key(4), (64, 6)) * 2
  tau = 0.7
  hard = gumbel.straight_through(key, logits, tau)
  soft = gumbel.gumbel_softmax(key, logits, tau)
  hard_np = np.asarray(hard)
  assert set(np.unique(hard_np)) <= {0.0, 1.0}
  np.testing.assert_array_equal(hard_np.sum(-1), 1.0)
  np.testing.assert_array_equal(hard_np.argmax(-1), np.asarray(soft).argmax(-1))
  weights = jax.random.normal(jax.random.key(5), (64, 6))
  g_st = jax.grad(lambda l: jnp.sum(weights * gumbel.straight_through(key, l, tau)))(logits)
  g_gs = jax.grad(lambda l: jnp.sum(weights * gumbel.gumbel_softmax(key, l, tau)))(logits)
  np.testing.assert_allclose(g_st, g_gs, rtol=1e-5, atol=1e-6)
  assert np.abs(np.asarray(g_st)).max() > 1e-3  # a real, non-zero gradient
