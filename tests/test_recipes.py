"""The rivals' recipes: every choice the public code makes, as FitConfig options, checked."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import recipes
from vcm_jax import elbo, graphs, networks, scm, train, units
from vcm_jax.config import FitConfig
from vcm_jax.model import build_model, init_params


@pytest.mark.fast
def test_every_recipe_is_a_valid_config():
  for name, overrides in recipes.RECIPES.items():
    FitConfig(**overrides)  # raises on an unknown key or an impossible value
  assert recipes.PAPER["standardize"] is False and recipes.PAPER["scale"] == "unit"


@pytest.mark.fast
def test_reference_kl_schedule_matches_the_public_code():
  """31 steps an epoch: 0 for 3 epochs, cycles of (0, .4, .8, 1, 1) for 10 x 5 epochs, then 1."""
  beta = elbo.kl_weight_schedule("reference", num_steps=6200)
  epochs = [0, 2, 3, 4, 5, 6, 7, 8, 52, 53, 199]
  want = [0, 0, 0, 0.4, 0.8, 1, 1, 0, 1, 1, 1]
  got = [float(beta(31 * e)) for e in epochs]
  np.testing.assert_allclose(got, want)
  assert float(beta(31 * 4 + 30)) == pytest.approx(0.4)  # constant within an epoch


def test_data_units_fit_keeps_the_data_as_it_is():
  adj = jnp.asarray([[0, 1], [0, 0]], jnp.float32)
  true = scm.sample_linear_scm(jax.random.key(0), adj, shift=3.0)
  x, _ = scm.sample_data(jax.random.key(1), true, 200)
  idx, mask = graphs.parent_table(adj, 1)
  for standardize in (True, False):
    cfg = FitConfig(standardize=standardize, num_steps=2, pooled_steps=1, restarts=1)
    init = jax.jit(train.make_trainer(cfg, n_nodes=2, max_parents=1).init)  # (eager: many compiles)
    state = init(jax.random.key(2), x, idx, mask)
    want = units.standardize(x)[1:] if standardize else (np.zeros(2), np.ones(2))
    np.testing.assert_allclose(state.loc, want[0], rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(state.scale, want[1], rtol=1e-6)


def test_fixed_scales_prior_and_random_z_weights():
  n = 10
  adj = jnp.zeros((n, n))
  idx, mask = graphs.parent_table(adj, 1)
  cfg = FitConfig(**recipes.REFERENCE, n_regimes=n + 1)
  model = build_model(cfg, n_nodes=n, max_parents=1)
  params = init_params(jax.random.key(0), model, idx, mask)
  # The public code's prior: the observational fraction 0.2, the rest equal; never learned.
  np.testing.assert_allclose(np.exp(model.log_prior(params)), [0.2] + [0.08] * n, rtol=1e-5)
  # Its loss, the squared error averaged over the N nodes, is sigma^2 = N / 2.
  _, log_scale = model.regime_means(params, jnp.zeros((3, n)), idx, mask)
  np.testing.assert_allclose(np.exp(2 * log_scale), n / 2, rtol=1e-5)
  # Random z-input weights within PyTorch's U(+-1/sqrt(fan_in)); zeros for vcm.
  z = params["decoder"]["params"]["z_kernel"]
  bound = 1 / np.sqrt(1 + n + 1)
  assert np.abs(np.asarray(z)).max() <= bound and np.asarray(z).std() > 0.3 * bound
  vcm = build_model(FitConfig(decoder="free", n_regimes=3), n_nodes=n, max_parents=1)
  assert not np.any(np.asarray(init_params(jax.random.key(0), vcm, idx, mask)["decoder"]["params"]["z_kernel"]))


@pytest.mark.fast
def test_relu_decoder_is_relu():
  dec = networks.MechanismDecoder(n_nodes=3, max_parents=1, hidden=(4,), activation="relu",
                                  linear_skip=False, z_init="random")
  idx, mask = graphs.parent_table(jnp.asarray([[0, 1, 0], [0, 0, 1], [0, 0, 0]], jnp.float32), 1)
  x = jax.random.normal(jax.random.key(1), (5, 3))
  params = dec.init(jax.random.key(0), x, x, idx, mask)
  mean, _ = dec.apply(params, x, jnp.zeros_like(x), idx, mask)
  p = {k: np.asarray(v) for k, v in params["params"].items()}
  xp = np.asarray(x)[:, np.asarray(idx)] * np.asarray(mask)  # [B, N, 1]
  h = np.maximum(np.einsum("bnd,ndo->bno", xp, p["kernel_0"]) + p["bias_0"], 0)
  want = p["b"] + np.einsum("bnh,nh->bn", h, p["out"][..., 0])
  np.testing.assert_allclose(mean, want, rtol=1e-5, atol=1e-6)
