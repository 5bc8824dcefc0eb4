"""vcm_jax.elbo: structured likelihoods, exact marginal/posterior, ELBO, KL, schedules."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from jax.test_util import check_grads
from scipy import special

from vcm_jax import elbo

B, N = 7, 4
K = N + 1


def _arrays(seed):
  rng = np.random.default_rng(seed)
  l_obs = rng.normal(-1.5, 2.0, (B, N)).astype(np.float32)
  l_int = rng.normal(-1.5, 2.0, (B, N)).astype(np.float32)
  q_logits = rng.normal(0, 2.0, (B, K)).astype(np.float32)
  log_prior = np.log(rng.dirichlet(np.ones(K))).astype(np.float32)
  return l_obs, l_int, q_logits, log_prior


def _brute_log_lik(l_obs, l_int):
  out = np.zeros(l_obs.shape[:-1] + (l_obs.shape[-1] + 1,))
  for k in range(l_obs.shape[-1] + 1):
    for j in range(l_obs.shape[-1]):
      intervened = (k >= 1) and (j == k - 1)
      out[..., k] += l_int[..., j] if intervened else l_obs[..., j]
  return out


@pytest.mark.fast
def test_structured_log_likelihoods_brute_force():
  l_obs, l_int, _, _ = _arrays(0)
  ll = elbo.structured_log_likelihoods(jnp.asarray(l_obs), jnp.asarray(l_int))
  assert ll.shape == (B, K)
  np.testing.assert_allclose(ll, _brute_log_lik(l_obs.astype(float), l_int.astype(float)),
                             rtol=1e-5, atol=1e-5)
  # Leading batch axes are kept.
  ll3 = elbo.structured_log_likelihoods(jnp.asarray(l_obs).reshape(7, 1, N),
                                        jnp.asarray(l_int).reshape(7, 1, N))
  np.testing.assert_allclose(ll3[:, 0], ll, rtol=1e-6)


@pytest.mark.fast
def test_log_marginal_and_posterior_brute_force():
  l_obs, l_int, _, log_prior = _arrays(1)
  ll = _brute_log_lik(l_obs.astype(float), l_int.astype(float))
  joint = ll + log_prior
  lm = elbo.log_marginal(jnp.asarray(ll, jnp.float32), jnp.asarray(log_prior))
  np.testing.assert_allclose(lm, np.log(np.exp(joint).sum(-1)), rtol=1e-5, atol=1e-5)
  post = np.exp(elbo.posterior_logits(jnp.asarray(ll, jnp.float32), jnp.asarray(log_prior)))
  np.testing.assert_allclose(post, np.exp(joint) / np.exp(joint).sum(-1, keepdims=True),
                             rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(post.sum(-1), 1.0, atol=1e-6)
  # Stable far from 0: likelihoods of -1000 nats.
  lm_far = elbo.log_marginal(jnp.asarray(ll - 1000.0, jnp.float32), jnp.asarray(log_prior))
  assert np.all(np.isfinite(lm_far))
  np.testing.assert_allclose(lm_far, np.asarray(lm) - 1000.0, rtol=1e-5)


def _brute_elbo(q_logits, ll, log_prior):
  q = special.softmax(q_logits.astype(float), -1)
  log_q = special.log_softmax(q_logits.astype(float), -1)
  return (q * (ll + log_prior - log_q)).sum(-1)


@pytest.mark.fast
def test_elbo_exact_brute_force_and_bound():
  l_obs, l_int, q_logits, log_prior = _arrays(2)
  ll = _brute_log_lik(l_obs.astype(float), l_int.astype(float))
  value, ell, kl = elbo.elbo_exact(jnp.asarray(q_logits), jnp.asarray(ll, jnp.float32),
                                   jnp.asarray(log_prior))
  np.testing.assert_allclose(value, _brute_elbo(q_logits, ll, log_prior), rtol=1e-5, atol=1e-4)
  q = special.softmax(q_logits.astype(float), -1)
  np.testing.assert_allclose(ell, (q * ll).sum(-1), rtol=1e-5, atol=1e-4)
  np.testing.assert_allclose(kl, (q * (np.log(q) - log_prior)).sum(-1), rtol=1e-5, atol=1e-5)
  lm = np.asarray(elbo.log_marginal(jnp.asarray(ll, jnp.float32), jnp.asarray(log_prior)))
  assert np.all(np.asarray(value) <= lm + 1e-4)
  assert np.all(np.asarray(value) < lm - 1e-3)  # strict for a q that is not the posterior
  # beta weights the KL.
  v2, _, _ = elbo.elbo_exact(jnp.asarray(q_logits), jnp.asarray(ll, jnp.float32),
                             jnp.asarray(log_prior), 0.25)
  np.testing.assert_allclose(v2, np.asarray(ell) - 0.25 * np.asarray(kl), rtol=1e-5, atol=1e-5)
  # Equality at q = exact posterior.
  post_logits = elbo.posterior_logits(jnp.asarray(ll, jnp.float32), jnp.asarray(log_prior))
  at_post, _, _ = elbo.elbo_exact(post_logits, jnp.asarray(ll, jnp.float32),
                                  jnp.asarray(log_prior))
  np.testing.assert_allclose(at_post, lm, rtol=1e-5, atol=1e-4)


@pytest.mark.fast
def test_kl_categorical_with_exact_zeros_is_finite():
  p_log = jnp.log(jnp.array([0.1, 0.2, 0.3, 0.4]))
  big = -1e30
  for q_logits in (jnp.array([0.0, big, 1.0, big]),        # exact zeros in q
                   jnp.array([60.0, 0.0, -10.0, 0.0]),      # one-hot-ish q
                   jnp.array([big, big, big, 0.0])):        # exactly one-hot
    q = np.asarray(jax.nn.softmax(q_logits), np.float64)
    kl = elbo.kl_categorical(q_logits, p_log)
    grad_q, grad_p = jax.grad(lambda a, b: elbo.kl_categorical(a, b), (0, 1))(q_logits, p_log)
    assert np.isfinite(float(kl))
    assert np.all(np.isfinite(grad_q)) and np.all(np.isfinite(grad_p))
    support = q > 0
    ref = np.sum(q[support] * (np.log(q[support]) - np.asarray(p_log, np.float64)[support]))
    np.testing.assert_allclose(float(kl), ref, rtol=1e-4, atol=1e-5)
    # d KL / d p_log = -q.
    np.testing.assert_allclose(grad_p, -q, atol=1e-6)
  assert np.any(np.asarray(jax.nn.softmax(jnp.array([0.0, big, 1.0, big]))) == 0)
  # Under vmap and jit, with a batch mixing both kinds of rows.
  batch = jnp.array([[0.0, big, 1.0, big], [0.3, 0.2, 0.1, 0.0]])
  g = jax.jit(jax.grad(lambda a: jax.vmap(elbo.kl_categorical, (0, None))(a, p_log).sum()))(batch)
  assert np.all(np.isfinite(g))


@pytest.mark.fast
def test_kl_and_elbo_with_zero_probability_categories():
  # A prior with impossible categories is legal: scm.sample_linear_scm(obs_fraction=1.0)
  # (accepted by the driver's validation) gives regime_probs = [1, 0, ..., 0]. Where
  # q_k = 0 and p_k = 0 the KL term is 0 * log(0 / 0) = 0, so KL(p || p) = 0 and the
  # ELBO at the exact posterior equals log p(x).
  p_log = jnp.log(jnp.array([1.0, 0.0, 0.0]))
  q_logits = jnp.array([0.0, -1e30, -1e30])  # q = (1, 0, 0) exactly
  kl = elbo.kl_categorical(q_logits, p_log)
  assert np.isfinite(float(kl)), float(kl)
  assert float(kl) == pytest.approx(0.0, abs=1e-6)
  ll = jnp.array([[-3.0, -1.0, -2.0], [-5.0, -4.0, -0.5]])
  post = elbo.posterior_logits(ll, p_log)
  at_post = elbo.elbo_exact(post, ll, p_log)[0]
  np.testing.assert_allclose(at_post, elbo.log_marginal(ll, p_log), rtol=1e-6)


def test_elbo_exact_gradients_check_grads():
  l_obs, l_int, q_logits, log_prior = _arrays(3)
  ll = jnp.asarray(_brute_log_lik(l_obs.astype(float), l_int.astype(float)), jnp.float32)
  lp = jnp.asarray(log_prior)
  f = lambda q, l: elbo.elbo_exact(q, l, lp)[0].sum()
  check_grads(f, (jnp.asarray(q_logits), ll), order=1, modes=["rev"], eps=1e-2,
              atol=2e-2, rtol=2e-2)
  with jax.enable_x64(True):  # jax 0.10: the context manager (jax.experimental.enable_x64 is gone)
    q64, ll64, lp64 = (jnp.asarray(np.asarray(a), jnp.float64) for a in (q_logits, ll, log_prior))
    check_grads(lambda q, l: elbo.elbo_exact(q, l, lp64)[0].sum(), (q64, ll64),
                order=1, modes=["rev"])
    # d ELBO / d log_lik = q.
    g = jax.grad(lambda l: elbo.elbo_exact(q64, l, lp64)[0].sum())(ll64)
    np.testing.assert_allclose(g, jax.nn.softmax(q64), rtol=1e-10)


@pytest.mark.fast
def test_elbo_sampled_matches_exact_in_expectation():
  # With the straight-through estimator the forward value is the ELBO at a one-hot z,
  # so its mean over many keys is the exact ELBO (the KL is exact in both).
  l_obs, l_int, q_logits, log_prior = _arrays(4)
  l_obs, l_int = jnp.asarray(l_obs[:1]), jnp.asarray(l_int[:1])
  q = jnp.asarray(q_logits[:1])
  node_ll = lambda z: l_obs + z[..., 1:] * (l_int - l_obs)
  keys = jax.random.split(jax.random.key(0), 20_000)
  vals = jax.jit(jax.vmap(lambda k: elbo.elbo_sampled(
      k, q, jnp.asarray(log_prior), node_ll, estimator="straight_through", temperature=0.5)[0]))(keys)
  exact = elbo.elbo_exact(q, elbo.structured_log_likelihoods(l_obs, l_int), jnp.asarray(log_prior))[0]
  se = float(vals.std()) / np.sqrt(keys.shape[0])
  assert abs(float(vals.mean()) - float(exact[0])) < 5 * se + 1e-4
  with pytest.raises(ValueError, match="estimator"):
    elbo.elbo_sampled(keys[0], q, jnp.asarray(log_prior), node_ll, estimator="nope", temperature=1.0)


@pytest.mark.fast
def test_kl_weight_schedules():
  const = elbo.kl_weight_schedule("constant", num_steps=100)
  for step in (0, 7, 99):
    assert float(const(step)) == 1.0
  warm = elbo.kl_weight_schedule("warmup", num_steps=100, warmup_steps=10)
  np.testing.assert_allclose([float(warm(s)) for s in (0, 5, 10, 50)], [0.0, 0.5, 1.0, 1.0],
                             atol=1e-6)
  cyc = elbo.kl_weight_schedule("cyclical", num_steps=100, cycles=4, ratio=0.5)
  # period 25: ramp 0 -> 1 over 12.5 steps, then 1; restarts at 25, 50, 75.
  steps = [0, 5, 12, 13, 24, 25, 30, 50, 87, 99]
  want = [0.0, 0.4, 0.96, 1.0, 1.0, 0.0, 0.4, 0.0, 0.96, 1.0]
  np.testing.assert_allclose([float(cyc(s)) for s in steps], want, atol=1e-6)
  np.testing.assert_allclose(jax.jit(jax.vmap(cyc))(jnp.array(steps)), want, atol=1e-6)
  with pytest.raises(ValueError, match="schedule"):
    elbo.kl_weight_schedule("bogus", num_steps=10)


_finite = st.floats(-30.0, 30.0, allow_nan=False, width=32)


@settings(max_examples=40, deadline=None)
@given(l_obs=hnp.arrays(np.float32, (3, N), elements=_finite),
       l_int=hnp.arrays(np.float32, (3, N), elements=_finite),
       q_logits=hnp.arrays(np.float32, (3, K), elements=_finite),
       prior_logits=hnp.arrays(np.float32, (K,), elements=st.floats(-5, 5, width=32)))
def test_property_posterior_normalised_and_elbo_bound(l_obs, l_int, q_logits, prior_logits):
  ll = elbo.structured_log_likelihoods(jnp.asarray(l_obs), jnp.asarray(l_int))
  log_prior = jax.nn.log_softmax(jnp.asarray(prior_logits))
  post = np.exp(np.asarray(elbo.posterior_logits(ll, log_prior), np.float64))
  np.testing.assert_allclose(post.sum(-1), 1.0, atol=1e-5)
  lm = np.asarray(elbo.log_marginal(ll, log_prior))
  value = np.asarray(elbo.elbo_exact(jnp.asarray(q_logits), ll, log_prior)[0])
  assert np.all(np.isfinite(value)) and np.all(np.isfinite(lm))
  assert np.all(value <= lm + 1e-4 * (1 + np.abs(lm)))
