"""The divergence between two regimes' mechanisms compares them row by row (issue 23).

A regime that doubles X2's slope on a centred X1 moves X2's mean up on one side of
X1's mean and down on the other: averaged over the rows, the two means agree, and a
divergence of the averaged means read "no change". The rows' divergence sees it; a
plain shift reads as before (the calibration of ``identify.CHANGE_THRESHOLD`` holds).
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vcm_jax import api, graphs, identifiability, identify, predict, rows, train
from vcm_jax import model as model_lib
from vcm_jax.config import FitConfig

CHAIN = np.array([[0, 1], [0, 0]])
NOISE = 0.5  # X2's noise scale in both regimes


def _model(decoder: str, mechanism: str = "linear"):
  """X1 -> X2's model under ``decoder``, its parent table and random parameters."""
  cfg = FitConfig(decoder=decoder, n_regimes=2 if decoder == "free" else 0,
                  mechanism=mechanism, hidden=(4,))
  model = model_lib.build_model(cfg, n_nodes=2, max_parents=1)
  idx, mask = graphs.parent_table(jnp.asarray(CHAIN), 1)
  return model, idx, mask, model_lib.init_params(jax.random.key(0), model, idx, mask)


def _result(params):
  """A ``FitResult`` of ``params`` in the data's own units (no standardisation)."""
  return train.FitResult(params, jnp.zeros(2), jnp.ones(2), {}, jnp.zeros(1), jnp.zeros(()),
                         jnp.zeros((), jnp.int32), jnp.zeros((), bool))


def _fit(params, x):
  """A free linear ``vcm_jax.Fit`` of X1 -> X2 with given parameters: no training, only
  the identification on the rows ``x``."""
  model, idx, mask, _ = _model("free")
  return api.from_result(model, _result(params), jnp.asarray(x), idx, mask,
                         graphs.topological_order(jnp.asarray(CHAIN)))


def _two_regimes(slopes, intercepts=(0.0, 0.0)):
  """A free linear fit set by hand: X1 ~ N(0, 1) in both regimes; X2 = intercept_k +
  slope_k X1 + N(0, NOISE) in regime k; and 2000 rows of it, half each, X1 centred."""
  rng = np.random.default_rng(1)
  x1 = rng.normal(size=2000)
  x1 -= x1.mean()
  regime = np.arange(2000) % 2
  x2 = np.asarray(intercepts)[regime] + np.asarray(slopes)[regime] * x1 \
      + NOISE * rng.normal(size=2000)
  x = np.stack([x1, x2], 1).astype(np.float32)
  dec = {"b": jnp.array([[0.0, intercepts[0]], [0.0, intercepts[1]]]),
         "w": jnp.array(slopes, jnp.float32).reshape(2, 1, 1) * jnp.array([0.0, 1.0])[:, None],
         "log_scale": jnp.log(jnp.array([[1.0, NOISE], [1.0, NOISE]]))}
  params = {"decoder": {"params": dec}, "prior_logits": jnp.log(jnp.array([0.5, 0.5]))}
  return _fit(params, x), x


def _divergences(fit, x):
  mean, scale, msd = predict.regime_mechanisms(fit.model, fit.result, jnp.asarray(x),
                                               fit.parent_idx, fit.parent_mask, msd=True)
  rows_ = np.asarray(identify.mechanism_divergence(mean, scale, msd))
  averaged = np.asarray(identify.mechanism_divergence(mean, scale))  # the old reading
  return mean, scale, msd, rows_, averaged


def test_a_doubled_slope_is_a_changed_mechanism():
  fit, x = _two_regimes(slopes=(1.0, 2.0))
  mean, scale, msd, div, averaged = _divergences(fit, x)
  # The averages agree (X1 is centred): the divergence of the averaged means reads no change.
  assert averaged[0, 1, 1] < 1e-3 < identify.CHANGE_THRESHOLD
  # Row by row the two means differ by X1: rms(X1) / NOISE, 2 noise scales.
  np.testing.assert_allclose(div[0, 1, 1], np.sqrt(np.mean(x[:, 0] ** 2)) / NOISE, rtol=1e-4)
  assert div[0, 1, 1] > identify.CHANGE_THRESHOLD and div[0, 1, 0] < 1e-6
  # The identification reads X2's change at 2 noise scales; from the averages, at none.
  weights = jnp.array([0.5, 0.5])
  ident = identify.identify_regimes(mean, scale, weights, structured=False, msd=msd)
  other = 1 - int(ident.observational)
  assert int(ident.target[other]) == 1
  assert np.asarray(ident.changed[other]).tolist() == [False, True]
  assert float(ident.divergence[other, 1]) > identify.CHANGE_THRESHOLD
  old = identify.identify_regimes(mean, scale, weights, structured=False)
  assert float(old.divergence.max()) < 1e-3
  # The verdict: two regimes that differ in X2 alone (either could be the reference).
  out = identifiability.of_fit(fit, x, ["X1", "X2"])
  assert out["verdict"] == "ambiguous" and out["candidates"] == [0, 1], out


def test_a_shift_reads_as_before():
  """Where two mechanisms differ by a constant, the rows' gap is the averages' gap: the
  divergence, and so the threshold's calibration, is unchanged."""
  fit, x = _two_regimes(slopes=(1.0, 1.0), intercepts=(0.0, 0.7))
  _, _, _, div, averaged = _divergences(fit, x)
  np.testing.assert_allclose(div, averaged, atol=1e-4)
  np.testing.assert_allclose(div[0, 1, 1], 0.7 / NOISE, rtol=1e-4)


@pytest.mark.parametrize("decoder", ["structured", "free"])
def test_msd_in_small_blocks_equals_the_whole_array(decoder, monkeypatch):
  """``msd`` is the mean of the squared gap between two regimes' means over their rows
  (posterior-weighted), whatever the blocks; the single-target latent's shortcut (gaps
  to regime 0 only) gives every pair's."""
  model, idx, mask, params = _model(decoder, "mlp")
  # Random deltas: the structured latent's intervened states differ from the observed ones.
  params = jax.tree.map(lambda a: a + 0.3 * jax.random.normal(jax.random.key(3), a.shape),
                        params)
  x = np.random.default_rng(2).normal(size=(23, 2)).astype(np.float32) * 2.0 + 1.0
  mu = np.asarray(model.observed_regime_means(params, jnp.asarray(x), idx, mask)[0], np.float64)
  q = np.asarray(predict.posterior(model, _result(params), jnp.asarray(x), idx, mask), np.float64)
  q = q + predict._EVERY_ROW
  pair = q[:, :, None] + q[:, None]  # [S, K, K]: the rows of a and of b
  want = np.einsum("skl,skln->kln", pair, (mu[:, :, None] - mu[:, None]) ** 2) \
      / pair.sum(0)[:, :, None]
  assert want.max() > 1e-2  # the regimes do differ
  k = model.n_categories
  monkeypatch.setattr(rows, "BLOCK_ELEMENTS", 3 * k * 2 * (1 if decoder == "structured" else k))
  mean, _, msd = predict.regime_mechanisms(model, _result(params), jnp.asarray(x), idx, mask,
                                           msd=True)
  np.testing.assert_allclose(msd, want, rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(mean, mu.mean(0), rtol=1e-4, atol=1e-4)


def test_a_nan_fit_is_insufficient():
  fit, x = _two_regimes(slopes=(1.0, 2.0))
  nan = fit.replace(result=fit.result._replace(
      params=jax.tree.map(lambda a: jnp.full_like(a, jnp.nan), fit.result.params)))
  out = identifiability.of_fit(nan, x)
  assert out["verdict"] == "insufficient" and "not finite" in out["why"], out
  assert out["reference"] is None and out["candidates"] == []
