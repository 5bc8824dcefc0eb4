"""vcm_jax.networks and vcm_jax.model: the masked decoders, regime likelihoods, sampling."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from vcm_jax import densities, graphs, networks, scm
from vcm_jax.config import FitConfig
from vcm_jax.model import Model

# 3 -> 0 -> 1 -> 2 and 3 -> 2 (column order not topological); max in-degree 2.
ADJ = np.zeros((4, 4), np.float32)
ADJ[3, 0] = ADJ[0, 1] = ADJ[1, 2] = ADJ[3, 2] = 1
N, D = 4, 2
IDX, MASK = graphs.parent_table(jnp.asarray(ADJ), D)


def _decoder(mechanism, **kw):
  return networks.MechanismDecoder(n_nodes=N, max_parents=D, mechanism=mechanism, hidden=(5,), **kw)


def _random_params(decoder, seed):
  x0 = jnp.zeros((1, N))
  params = decoder.init(jax.random.key(seed), x0, x0, IDX, MASK)
  leaves, tree = jax.tree.flatten(params)
  keys = jax.random.split(jax.random.key(seed + 100), len(leaves))
  return jax.tree.unflatten(tree, [0.7 * jax.random.normal(k, l.shape) for k, l in zip(keys, leaves)])


@pytest.mark.fast
def test_linear_mechanism_by_hand():
  dec = _decoder("linear")
  params = _random_params(dec, 0)
  p = {k: np.asarray(v, np.float64) for k, v in params["params"].items()}
  assert set(p) == {"w", "dw", "b", "db", "log_scale", "dlog_scale"}
  assert p["w"].shape == (N, D) and p["b"].shape == (N,)
  rng = np.random.default_rng(0)
  x = rng.normal(size=(6, N)).astype(np.float32)
  z = rng.uniform(size=(6, N)).astype(np.float32)
  mean, log_scale = dec.apply(params, jnp.asarray(x), jnp.asarray(z), IDX, MASK)
  idx, mask = np.asarray(IDX), np.asarray(MASK)
  want_mean = np.zeros((6, N))
  want_ls = np.zeros((6, N))
  for j in range(N):
    pa = x[:, idx[j]] * mask[j]  # [6, D]
    want_mean[:, j] = (p["b"][j] + pa @ p["w"][j]
                       + z[:, j] * (p["db"][j] + pa @ p["dw"][j]))
    want_ls[:, j] = p["log_scale"][j] + z[:, j] * p["dlog_scale"][j]
  np.testing.assert_allclose(mean, want_mean, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(log_scale, want_ls, rtol=1e-5, atol=1e-5)
  # Node 3 is a root: its mean has no parent term at all.
  np.testing.assert_allclose(mean[:, 3], p["b"][3] + z[:, 3] * p["db"][3], rtol=1e-5, atol=1e-6)
  # Unit scale.
  unit = _decoder("linear", scale="unit")
  pu = unit.init(jax.random.key(0), jnp.zeros((1, N)), jnp.zeros((1, N)), IDX, MASK)
  assert "log_scale" not in pu["params"]
  np.testing.assert_array_equal(unit.apply(pu, jnp.asarray(x), jnp.asarray(z), IDX, MASK)[1], 0.0)


@pytest.mark.parametrize("hidden", [(5,), (6, 3)])
def test_mlp_mechanism_by_hand(hidden):
  """The batched, node-major MLP against a per-node NumPy loop (float64)."""
  dec = networks.MechanismDecoder(n_nodes=N, max_parents=D, mechanism="mlp", hidden=hidden)
  params = _random_params(dec, 1)
  p = {k: np.asarray(v, np.float64) for k, v in params["params"].items()}
  rng = np.random.default_rng(1)
  x = rng.normal(size=(7, N)).astype(np.float32)
  z = rng.uniform(size=(7, N)).astype(np.float32)
  mean, _ = dec.apply(params, jnp.asarray(x), jnp.asarray(z), IDX, MASK)
  idx, mask = np.asarray(IDX), np.asarray(MASK)
  want = np.zeros((7, N))
  for j in range(N):
    pa = x[:, idx[j]] * mask[j]
    h = np.tanh(pa @ p["kernel_0"][j] + p["bias_0"][j] + z[:, j, None] * p["z_kernel"][j])
    for layer in range(1, len(hidden)):
      h = np.tanh(h @ p[f"kernel_{layer}"][j] + p[f"bias_{layer}"][j])
    want[:, j] = (p["b"][j] + pa @ p["w"][j] + z[:, j] * (p["db"][j] + pa @ p["dw"][j])
                  + h @ p["out"][j, :, 0])
  np.testing.assert_allclose(mean, want, rtol=1e-5, atol=1e-5)
  # Broadcasting: one x against several z rows gives the rows of the full batch.
  m1, _ = dec.apply(params, jnp.asarray(x[:1]), jnp.asarray(z), IDX, MASK)
  m2, _ = dec.apply(params, jnp.asarray(np.repeat(x[:1], 7, 0)), jnp.asarray(z), IDX, MASK)
  np.testing.assert_allclose(m1, m2, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("hidden", [(5,), (6, 3)])
def test_free_decoder_mlp_by_hand(hidden):
  """The free and sparse latents' batched, node-major MLP (every regime, and mixed by a
  relaxed z) against a per-regime, per-node NumPy loop (float64), with a noise scale that
  reads the last hidden layer."""
  k = 3
  dec = networks.FreeDecoder(n_nodes=N, n_regimes=k, max_parents=D, hidden=hidden,
                             scale_model="parents")
  x0 = jnp.zeros((1, N))
  params = dec.init(jax.random.key(2), x0, IDX, MASK)
  leaves, tree = jax.tree.flatten(params)
  keys = jax.random.split(jax.random.key(3), len(leaves))
  params = jax.tree.unflatten(tree, [0.7 * jax.random.normal(r, a.shape)
                                     for r, a in zip(keys, leaves)])
  p = {name: np.asarray(v, np.float64) for name, v in params["params"].items()}
  rng = np.random.default_rng(2)
  x = rng.normal(size=(7, N)).astype(np.float32)
  z = rng.dirichlet(np.ones(k), size=7).astype(np.float32)
  idx, mask = np.asarray(IDX), np.asarray(MASK)

  def by_hand(mix):  # mix [7, K]: the regimes' parameters mixed per row
    mean, log_scale = np.zeros((7, N)), np.zeros((7, N))
    for j in range(N):
      pa = x[:, idx[j]] * mask[j]
      h = np.tanh(pa @ p["kernel_0"][j] + p["bias_0"][j] + mix @ p["z_kernel"][:, j])
      for layer in range(1, len(hidden)):
        h = np.tanh(h @ p[f"kernel_{layer}"][j] + p[f"bias_{layer}"][j])
      mean[:, j] = (mix @ p["b"][:, j] + np.einsum("sd,sd->s", pa, mix @ p["w"][:, j])
                    + h @ p["out"][j, :, 0])
      log_scale[:, j] = mix @ p["log_scale"][:, j] + h @ p["scale_out"][j]
    return mean, log_scale

  every = dec.apply(params, jnp.asarray(x), IDX, MASK)  # [7, K, N] each
  for r in range(k):
    want = by_hand(np.eye(k)[[r] * 7])
    for got, w in zip(every, want):
      np.testing.assert_allclose(got[:, r], w, rtol=1e-5, atol=1e-5)
  mixed = dec.apply(params, jnp.asarray(x), IDX, MASK, jnp.asarray(z))  # [7, 1, N] each
  for got, w in zip(mixed, by_hand(z.astype(np.float64))):
    np.testing.assert_allclose(got[:, 0], w, rtol=1e-5, atol=1e-5)


@pytest.mark.fast
@pytest.mark.parametrize("mechanism,linear_skip", [("linear", True), ("mlp", True), ("mlp", False)])
def test_decoder_reads_only_parents(mechanism, linear_skip):
  dec = _decoder(mechanism, linear_skip=linear_skip)
  params = _random_params(dec, 1)
  rng = np.random.default_rng(1)
  x = jnp.asarray(rng.normal(size=(3, N)), jnp.float32)
  z = jnp.asarray(rng.uniform(size=(3, N)), jnp.float32)
  f = jax.jit(lambda xx: dec.apply(params, xx, z, IDX, MASK))
  mean, log_scale = f(x)
  # Jacobian d mean_j / d x_i for sample 0: non-zero exactly on the parents.
  jac = np.asarray(jax.jacfwd(lambda v: f(v[None])[0][0])(x[0]))  # [N (node), N (input)]
  for j in range(N):
    for i in range(N):
      if ADJ[i, j]:
        assert abs(jac[j, i]) > 1e-4, (mechanism, i, j)
      else:
        assert jac[j, i] == 0.0, (mechanism, i, j)
  # Perturbing columns directly.
  for i in range(N):
    moved = f(x.at[:, i].add(3.0))[0]
    for j in range(N):
      if ADJ[i, j]:
        assert np.all(np.abs(np.asarray(moved[:, j] - mean[:, j])) > 1e-4)
      else:
        np.testing.assert_array_equal(moved[:, j], mean[:, j])
    np.testing.assert_array_equal(f(x.at[:, i].add(3.0))[1], log_scale)


@pytest.mark.fast
def test_decoder_rejects_unknown_options():
  x0 = jnp.zeros((1, N))
  with pytest.raises(ValueError, match="mechanism"):
    _decoder("cubic").init(jax.random.key(0), x0, x0, IDX, MASK)
  with pytest.raises(ValueError, match="scale"):
    _decoder("linear", scale="wide").init(jax.random.key(0), x0, x0, IDX, MASK)


def _model(dec, **cfg):
  """A Model around a bare decoder (no encoder: the exact posterior)."""
  return Model(encoder=None, decoder=dec, cfg=FitConfig(**cfg))


def _both_states(dec, params, x):
  """Node log-densities with every mechanism observational, then every one intervened."""
  model, p = _model(dec), {"decoder": params}
  z_obs = jnp.zeros((x.shape[0], N + 1)).at[:, 0].set(1.0)
  return (model.node_log_densities(p, x, z_obs, IDX, MASK),
          model.node_log_densities(p, x, 1.0 - z_obs, IDX, MASK))


@pytest.mark.fast
@pytest.mark.parametrize("mechanism", ["linear", "mlp"])
def test_regime_log_likelihoods_match_node_log_densities(mechanism):
  """The 2N-evaluation shortcut equals each regime's node densities summed, and both
  states equal scipy's Gaussian density of the decoder's means and scales."""
  dec = _decoder(mechanism)
  params = _random_params(dec, 2)
  x = jax.random.normal(jax.random.key(3), (5, N))
  model, p = _model(dec), {"decoder": params}
  ll = model.regime_log_likelihoods(p, x, IDX, MASK)
  for k in range(N + 1):
    z = jax.nn.one_hot(jnp.full((5,), k), N + 1)
    np.testing.assert_allclose(ll[:, k], model.node_log_densities(p, x, z, IDX, MASK).sum(-1),
                               rtol=1e-5)
  l_obs, l_int = _both_states(dec, params, x)
  zeros = jnp.zeros_like(x)
  for z, l in ((zeros, l_obs), (zeros + 1, l_int)):
    mean, log_scale = dec.apply(params, x, z, IDX, MASK)
    ref = stats.norm.logpdf(np.asarray(x, np.float64), np.asarray(mean, np.float64),
                            np.exp(np.asarray(log_scale, np.float64)))
    np.testing.assert_allclose(l, ref, rtol=1e-5, atol=1e-5)
  assert np.abs(np.asarray(l_int - l_obs)).max() > 1e-3  # the two states differ


def _true_params(true):
  """Linear decoder parameters equal to a true SCM's (gathered by the parent table)."""
  w = np.asarray(true.weights)[np.asarray(IDX), np.arange(N)[:, None]] * np.asarray(MASK)
  return {"params": {
      "w": jnp.asarray(w), "dw": jnp.zeros((N, D)), "b": jnp.asarray(true.bias),
      "db": jnp.asarray(true.shift), "log_scale": jnp.log(true.noise_scale),
      "dlog_scale": jnp.log(true.int_scale)}}


def test_model_sample_reproduces_true_scm():
  true = scm.sample_linear_scm(jax.random.key(4), jnp.asarray(ADJ), shift=3.0, noise_low=0.5,
                               noise_high=1.5, intervention="both", variance_factor=2.0)
  dec = _decoder("linear")
  params = _true_params(true)
  # The decoder's densities are the SCM's.
  x_chk, _ = scm.sample_data(jax.random.key(5), true, 50)
  for got, want in zip(_both_states(dec, params, x_chk), scm.state_log_densities(true, x_chk)):
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)

  per = 20_000
  regimes = jnp.repeat(jnp.arange(N + 1, dtype=jnp.int32), per)
  order = graphs.topological_order(jnp.asarray(ADJ))
  model = _model(dec, mechanism="linear")
  sample = jax.jit(lambda k, o: model.sample(k, {"decoder": params}, regimes, IDX, MASK, o))
  x = np.asarray(sample(jax.random.key(6), order), np.float64).reshape(N + 1, per, N)
  ref, _ = scm.sample_data(jax.random.key(7), true, regimes.shape[0], regimes=regimes)
  ref = np.asarray(ref, np.float64).reshape(N + 1, per, N)
  w = np.asarray(true.weights, np.float64)
  inv = np.linalg.inv(np.eye(N) - w)
  for k in range(N + 1):
    scale = np.asarray(true.noise_scale, np.float64).copy()
    shift = np.zeros(N)
    if k:
      scale[k - 1] *= float(true.int_scale[k - 1])
      shift[k - 1] = float(true.shift[k - 1])
    mean = shift @ inv
    cov = inv.T @ np.diag(scale ** 2) @ inv
    se = np.sqrt(np.diag(cov) / per)
    assert np.all(np.abs(x[k].mean(0) - mean) < 5 * se), (k, x[k].mean(0), mean)
    assert np.all(np.abs(x[k].mean(0) - ref[k].mean(0)) < 5 * np.sqrt(2) * se)
    np.testing.assert_allclose(np.cov(x[k], rowvar=False), cov, atol=0.05 * np.diag(cov).max())

  # Control: drawing children before parents (reversed order) breaks the covariance.
  bad = np.asarray(sample(jax.random.key(6), order[::-1]), np.float64).reshape(N + 1, per, N)
  cov0 = inv.T @ np.diag(np.asarray(true.noise_scale, np.float64) ** 2) @ inv
  assert np.abs(np.cov(bad[0], rowvar=False) - cov0).max() > 0.2 * np.diag(cov0).max()


@pytest.mark.fast
def test_encoder_shapes():
  enc = networks.Encoder(n_categories=N + 1, hidden=(8, 8))
  params = enc.init(jax.random.key(0), jnp.zeros((1, N)))
  assert enc.apply(params, jnp.ones((7, N))).shape == (7, N + 1)
  assert len(params["params"]) == 3  # two hidden layers and the output


@pytest.mark.fast
def test_gaussian_log_density_matches_distrax():
  """distrax (and the nightly TFP it pulls) imports and agrees with our density."""
  import distrax

  key = jax.random.key(3)
  x, mean, log_scale = jax.random.normal(key, (3, 7, 5))
  ours = densities.gaussian_log_density(x, mean, log_scale)
  ref = distrax.Normal(mean, jnp.exp(log_scale)).log_prob(x)
  np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-5)


def _free_decoder(mechanism, k=3):
  return networks.FreeDecoder(n_nodes=N, n_regimes=k, max_parents=D, mechanism=mechanism,
                            hidden=(5,))


def _random_free_params(dec, seed):
  x0 = jnp.zeros((1, N))
  params = dec.init(jax.random.key(seed), x0, IDX, MASK)
  leaves, tree = jax.tree.flatten(params)
  keys = jax.random.split(jax.random.key(seed + 100), len(leaves))
  return jax.tree.unflatten(tree, [0.7 * jax.random.normal(k, l.shape) for k, l in zip(keys, leaves)])


@pytest.mark.fast
@pytest.mark.parametrize("mechanism", ["linear", "mlp"])
def test_free_decoder_one_hot_z_picks_its_regime(mechanism):
  """Fed a one-hot z (the reference code's way), the free decoder gives that regime's
  mechanisms; the linear case also by hand."""
  dec = _free_decoder(mechanism)
  params = _random_free_params(dec, 1)
  x = jax.random.normal(jax.random.key(2), (7, N))
  mean, log_scale = dec.apply(params, x, IDX, MASK)
  assert mean.shape == (7, 3, N)
  for k in range(3):
    z = jnp.zeros((7, 3)).at[:, k].set(1.0)
    m_k, s_k = dec.apply(params, x, IDX, MASK, z)
    np.testing.assert_allclose(m_k[:, 0], mean[:, k], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(s_k[:, 0], log_scale[:, k], rtol=1e-5, atol=1e-5)
  if mechanism == "linear":
    p = {k: np.asarray(v) for k, v in params["params"].items()}
    x_pa = np.asarray(x)[:, np.asarray(IDX)] * np.asarray(MASK)
    want = p["b"][None] + np.einsum("bnd,knd->bkn", x_pa, p["w"])
    np.testing.assert_allclose(mean, want, rtol=1e-5, atol=1e-5)
  ll = _model(dec, decoder="free", n_regimes=3).regime_log_likelihoods({"decoder": params}, x,
                                                                       IDX, MASK)
  want_ll = stats.norm.logpdf(np.asarray(x)[:, None], np.asarray(mean),
                              np.exp(np.asarray(log_scale))).sum(-1)
  np.testing.assert_allclose(ll, want_ll, rtol=1e-5, atol=1e-4)


@pytest.mark.fast
def test_free_running_means_follow_the_dag():
  """Without teacher forcing a linear mechanism's mean is propagated from its parents'
  predicted means: after N passes it is the fixed point ``mu = b + mu W`` (closed form)."""
  dec = _decoder("linear")
  params = _random_params(dec, 3)
  p = {k: np.asarray(v, np.float64) for k, v in params["params"].items()}
  z = np.zeros((1, N), np.float32)
  decode = lambda xh: dec.apply(params, xh, jnp.asarray(z), IDX, MASK)
  mean, _ = networks.free_running(decode, (1, N), N)
  w = np.zeros((N, N))
  for j in range(N):
    for slot in range(D):
      if MASK[j, slot]:
        w[int(IDX[j, slot]), j] = p["w"][j, slot]
  want = p["b"] @ np.linalg.inv(np.eye(N) - w)
  np.testing.assert_allclose(mean[0], want, rtol=1e-4, atol=1e-5)


@pytest.mark.fast
@pytest.mark.parametrize("mechanism", ["linear", "mlp"])
def test_a_swapped_reference_trades_the_two_regimes_likelihoods_exactly(mechanism):
  """``model.swap_reference``: regime 0 and regime t + 1 trade likelihoods and prior
  weights exactly (node t's two states exchanged); every other regime now reads node t
  through its intervened state, and its other nodes as before."""
  from vcm_jax import model as model_lib
  dec = _decoder(mechanism)
  x = jax.random.normal(jax.random.key(4), (7, N))
  model = _model(dec)
  p = {"decoder": _random_params(dec, 5),
       "prior_logits": jax.nn.log_softmax(jnp.arange(N + 1.0))}
  for t in range(N):
    q = model_lib.swap_reference(p, t)
    before, after = (np.asarray(model.regime_log_likelihoods(r, x, IDX, MASK)) for r in (p, q))
    k = t + 1
    np.testing.assert_allclose(after[:, [0, k]], before[:, [k, 0]], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.asarray(q["prior_logits"])[[0, k]],
                               np.asarray(p["prior_logits"])[[k, 0]])
    others = [j for j in range(1, N + 1) if j != k]
    assert not np.allclose(after[:, others], before[:, others])
    # regime j (target j - 1) now reads t as regime k did before, the rest as before
    states = lambda r, z: np.array(model.node_log_densities(
        r, x, jax.nn.one_hot(jnp.full((7,), z), N + 1), IDX, MASK))
    for j in others:
      want = states(p, j)
      want[:, t] = states(p, k)[:, t]
      np.testing.assert_allclose(states(q, j), want, rtol=1e-5, atol=1e-5)
