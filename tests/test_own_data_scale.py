"""Own data at scale: row blocks give the numbers of whole-array formulas, with small blocks;
plots of hundreds of regimes show the strongest ones."""
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import plots
from vcm_jax import predict, rows
from vcm_jax import regime_table as regime_table_lib

sys.path.insert(0, os.path.dirname(__file__))
import test_api  # noqa: E402  (its fits: made once in a session that runs both modules)


def _fitted(decoder="structured"):
  """A fit of 3000 rows over 4 nodes: test_api's structured (5 regimes) or free one."""
  fit = test_api.free_fit() if decoder == "free" else test_api.structured_fit()
  return fit, test_api._data()[1]


@pytest.mark.parametrize("chunk", [1, 7, 50, 64])
def test_sum_rows_equals_the_sum(chunk):
  x = jax.random.normal(jax.random.key(0), (50, 3))
  fn = lambda b: (b ** 2, jnp.einsum("bi,bj->bij", b, b))
  got = rows.sum_rows(fn, x, chunk)
  want = jax.tree.map(lambda a: a.sum(0), fn(x))
  for g, w in zip(got, want):
    np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5)


def test_rows_per_block_bounds_a_block():
  assert rows.rows_per_block(11) == 2048  # small K * N: the usual blocks
  n300 = rows.rows_per_block(301 * 300)
  assert 1 <= n300 <= 10 and n300 * 301 * 300 <= rows.BLOCK_ELEMENTS
  assert rows.rows_per_block(10 ** 9) == 1


def test_host_blocks_cover_every_row_and_compile_once():
  traces = []

  @jax.jit
  def fn(b):
    traces.append(b.shape)
    return {"double": 2 * b, "sum": b.sum(1)}

  x = np.arange(23 * 2, dtype=np.float32).reshape(23, 2)
  parts = list(rows.host_blocks(fn, x, block=5))
  assert [start for start, _ in parts] == [0, 5, 10, 15, 20]
  np.testing.assert_array_equal(np.concatenate([p["double"] for _, p in parts]), 2 * x)
  np.testing.assert_array_equal(np.concatenate([p["sum"] for _, p in parts]), x.sum(1))
  assert traces == [(5, 2)]  # the last block (3 rows) was padded to the same shape


@pytest.mark.parametrize("decoder", ["structured", "free"])
def test_regime_mechanisms_in_small_blocks_equal_the_whole_mean(decoder, monkeypatch):
  fit, x = _fitted(decoder)
  args = (fit.model, fit.result, jnp.asarray(x), fit.parent_idx, fit.parent_mask)
  # Whole-array reference: every row's [K, N] means, then their average.
  xs = (jnp.asarray(x) - fit.result.loc) / fit.result.scale
  mean, log_scale = fit.model.observed_regime_means(fit.result.params, xs, fit.parent_idx,
                                                    fit.parent_mask)
  want_mean = mean.mean(0) * fit.result.scale + fit.result.loc
  want_scale = jnp.broadcast_to(jnp.exp(log_scale), mean.shape).mean(0) * fit.result.scale
  n = x.shape[1]
  monkeypatch.setattr(rows, "BLOCK_ELEMENTS", 3 * fit.n_regimes * n)  # blocks of 3 rows
  assert predict.rows_per_block(fit.n_regimes * n) == 3
  got_mean, got_scale = predict.regime_mechanisms(*args)
  np.testing.assert_allclose(got_mean, want_mean, rtol=1e-4, atol=1e-4)
  np.testing.assert_allclose(got_scale, want_scale, rtol=1e-4, atol=1e-5)


def _old_marginal_shift(post, x):
  """The whole-array float64 formula regime_table used before it went by row blocks."""
  post, x = np.asarray(post, np.float64), np.asarray(x, np.float64)
  weights = post / np.maximum(post.sum(0), 1e-12)
  marg = weights.T @ x
  obs_sd = np.sqrt(np.maximum(weights[:, 0] @ (x - marg[0]) ** 2, 1e-24))
  return (marg - marg[0]) / obs_sd


def test_regime_table_blocks_equal_whole_arrays():
  fit, x = _fitted()
  names = [f"v{j}" for j in range(x.shape[1])]
  report, extras = regime_table_lib.regime_table(fit, x, x, names)
  order = np.array([fit.observational] + [r for r in range(fit.n_regimes)
                                          if r != fit.observational])
  whole = np.asarray(fit.posterior(x))[:, order]
  post = extras["posterior"]
  assert post.dtype == np.float32 and post.shape == whole.shape
  np.testing.assert_allclose(post, whole, rtol=1e-5, atol=1e-7)
  # In blocks that do not divide the rows (the last one padded): the same numbers.
  small = regime_table_lib.posterior_in_order(fit, x, order, block=333)
  np.testing.assert_allclose(small, post, rtol=1e-5, atol=1e-7)
  np.testing.assert_array_equal(extras["assigned"], post.argmax(1))
  np.testing.assert_array_equal(extras["probability"], post.max(1))
  want = _old_marginal_shift(post, x)
  np.testing.assert_allclose(extras["marginal_shift"], want, rtol=1e-9, atol=1e-9)
  blocked = regime_table_lib._marginal_shift(post, x, post.sum(0, dtype=np.float64), block=333)
  np.testing.assert_allclose(blocked, want, rtol=1e-9, atol=1e-9)
  for r, entry in enumerate(report["regimes"]):
    mine = extras["assigned"] == r
    assert entry["size"] == mine.sum()
    assert entry["expected_size"] == pytest.approx(post[:, r].astype(np.float64).sum(), rel=1e-9)
    if mine.any():
      assert entry["mean_probability"] == pytest.approx(post[mine, r].mean(), rel=1e-6)


def test_strongest_shifts_keep_the_planted_ones():
  rng = np.random.default_rng(0)
  k, n = 301, 300
  marginal, mechanism = rng.normal(size=(k, n)) * 0.1, rng.normal(size=(k, n)) * 0.1
  strong_regimes = rng.choice(np.arange(1, k), 30, replace=False)
  strong_nodes = rng.choice(n, 30, replace=False)
  for r, j in zip(strong_regimes, strong_nodes):
    (marginal if r % 2 else mechanism)[r, j] = -5.0 - r / k  # either table counts, either sign
  regimes, nodes = plots.strongest_shifts(marginal, mechanism)
  np.testing.assert_array_equal(regimes, np.sort(strong_regimes))
  np.testing.assert_array_equal(nodes, np.sort(strong_nodes))
  few_regimes, few_nodes = plots.strongest_shifts(marginal[:12, :20], mechanism[:12, :20])
  np.testing.assert_array_equal(few_regimes, np.arange(12))  # all of them when few
  np.testing.assert_array_equal(few_nodes, np.arange(20))


def test_plots_of_hundreds_of_regimes(tmp_path):
  rng = np.random.default_rng(1)
  k, n, s = 301, 300, 20000
  post = rng.dirichlet(np.full(k, 0.05), size=s).astype(np.float32)
  assigned = post.argmax(1)
  report = {"nodes": [f"X{j}" for j in range(n)],
            "regimes": [{"id": r, "observational": r == 0, "target": f"X{r - 1}"}
                        for r in range(k)]}
  extras = {"posterior": post, "assigned": assigned, "probability": post.max(1),
            "marginal_shift": rng.normal(size=(k, n)), "mechanism_shift": rng.normal(size=(k, n))}
  plots.write_own_data(str(tmp_path), [], report, extras)
  for name in ("confidence.png", "regime_shifts.png"):
    assert (tmp_path / name).stat().st_size > 0
  # 30 boxes, not 301: the figure stays a readable width (0.45 inch a box, 100 dpi).
  from matplotlib import image
  width = image.imread(str(tmp_path / "confidence.png")).shape[1]
  assert width <= 100 * (0.45 * plots.MOST_SHOWN + 2) + 1
