"""The structure-free yardstick (issue 23): a full-covariance Gaussian mixture with K by
BIC beside the structural model, and the warning when it explains the data better."""
import functools
import math

import jax
import numpy as np
import pytest
from sklearn.mixture import GaussianMixture

from vcm_jax import choose, units
from vcm_jax.baselines import yardstick as ys

# Run in the second pytest process (conftest.py: ``offload``): this process carries more.
pytestmark = pytest.mark.offload


@functools.cache
def _three_clusters(s=1500):
  """A 3-component Gaussian mixture in 3-D, well separated means, unequal covariances."""
  rng = np.random.default_rng(0)
  means = np.array([[0.0, 0.0, 0.0], [10.0, 0.0, 2.0], [0.0, 10.0, -3.0]])
  chols = [np.diag([1.0, 0.5, 2.0]), np.array([[1.0, 0, 0], [0.8, 0.6, 0], [0.2, -0.3, 1.2]]),
           np.diag([0.3, 1.5, 0.7])]
  labels = rng.integers(0, 3, s)
  z = rng.normal(size=(s, 3))
  x = np.stack([means[k] + chols[k] @ z[i] for i, k in enumerate(labels)])
  return x


SCALES = np.array([100.0, 1.0, 0.01])  # mixed column scales (and offsets), below


@functools.cache
def _yardstick(rescaled=False):
  x = _three_clusters() * SCALES + np.array([5e3, 0.0, -1.0]) if rescaled else _three_clusters()
  return ys.gaussian_mixture_yardstick(jax.random.key(0), x)


def test_yardstick_chooses_three_components_and_matches_sklearn():
  x = _three_clusters()
  compiled = ys._fit_and_score._cache_size()
  out = _yardstick()
  # K = 1-3, 4-6 and 8: three padded programs for the six K (padding.close_runs)
  assert ys._fit_and_score._cache_size() == compiled + 3
  assert out["k"] == 3, out["by_k"]
  assert out["n_parameters"] == 3 * 3 + 3 * 6 + 2 == ys.gmm_n_parameters(3, 3)
  assert [r["k"] for r in out["by_k"]] == [1, 2, 3, 4, 6, 8]
  assert not any("skipped" in r for r in out["by_k"])
  sk = GaussianMixture(n_components=3, covariance_type="full", random_state=0).fit(x).score(x)
  assert out["log_px"] == pytest.approx(sk, abs=0.02)
  assert out["bic"] == pytest.approx(ys.bic(out["log_px"], out["n_parameters"], len(x)))
  assert out["bic"] == max(r["bic"] for r in out["by_k"])
  assert out["n_rows"] == out["n_fit_rows"] == len(x)
  # The same data in mixed column units: the same fit, log p in those units (sklearn's
  # k-means start in these raw units can land in a worse optimum, ours standardises).
  rescaled = _yardstick(rescaled=True)
  assert rescaled["k"] == 3
  assert rescaled["log_px"] == pytest.approx(sk - np.log(SCALES).sum(), abs=0.02)


@pytest.mark.fast
def test_single_gaussian_is_the_closed_form_mle_in_data_units_on_all_rows():
  rng = np.random.default_rng(1)
  x = rng.normal(size=(900, 4)) @ rng.normal(size=(4, 4)) * 50.0 + 7.0
  out = ys.gaussian_mixture_yardstick(jax.random.key(1), x, k_grid=(1,), max_rows=300)
  assert out["k"] == 1 and out["n_rows"] == 900 and out["n_fit_rows"] == 300
  # Fitted on 300 rows, scored on all 900: below the all-rows MLE, above a poor fit.
  cov = np.cov(x.T, bias=True)
  mle = -0.5 * (4 * (1 + np.log(2 * np.pi)) + np.linalg.slogdet(cov)[1])
  assert mle - 0.05 < out["log_px"] < mle
  full = ys.gaussian_mixture_yardstick(jax.random.key(1), x, k_grid=(1,))
  assert full["log_px"] == pytest.approx(mle, abs=2e-4)
  scaled = ys.gaussian_mixture_yardstick(jax.random.key(1), x * 1e3, k_grid=(1,))
  assert scaled["log_px"] == pytest.approx(mle - 4 * np.log(1e3), abs=2e-4)  # data units


@pytest.mark.fast
def test_compare_warns_only_when_the_mixture_wins_by_bic():
  yard = {"k": 3, "log_px": -5.0, "n_parameters": 29, "bic": None}
  n = 1500
  warn = ys.compare(yard, structural_log_px=-6.0, structural_n_parameters=20, n_rows=n)
  assert warn is not None and set(warn) == {"message", "gmm_bic", "structural_bic"}
  assert "\n" not in warn["message"] and "K=3" in warn["message"]
  assert warn["gmm_bic"] == pytest.approx(n * -5.0 - 0.5 * math.log(n) * 29)
  assert warn["structural_bic"] == pytest.approx(n * -6.0 - 0.5 * math.log(n) * 20)
  assert ys.compare(yard, structural_log_px=-4.5, structural_n_parameters=40, n_rows=n) is None
  # Equal fit: the mixture's extra parameters cost it the comparison.
  assert ys.compare(yard, structural_log_px=-5.0, structural_n_parameters=20, n_rows=n) is None
  assert ys.compare({"k": None, "log_px": float("nan")}, -9.0, 1, n) is None


def test_compare_on_a_real_yardstick():
  out, n = _yardstick(), len(_three_clusters())
  assert ys.compare(out, out["log_px"] - 1.0, out["n_parameters"], n) is not None
  assert ys.compare(out, out["log_px"] + 0.1, out["n_parameters"], n) is None


@pytest.mark.fast
def test_a_non_finite_k_is_recorded_and_skipped(monkeypatch):
  real = ys._fit_and_score

  def broken(*args, **kw):  # the grid's second K, 2, not finite
    return np.asarray(real(*args, **kw)) * np.array([1.0, np.nan])

  monkeypatch.setattr(ys, "_fit_and_score", broken)
  rng = np.random.default_rng(2)
  x = np.concatenate([rng.normal(size=(200, 2)), rng.normal(size=(200, 2)) + 20.0])
  out = ys.gaussian_mixture_yardstick(jax.random.key(2), x, k_grid=(1, 2), num_iters=20)
  assert out["by_k"][1]["skipped"] == "non-finite fit" and math.isnan(out["by_k"][1]["bic"])
  assert out["k"] == 1 and math.isfinite(out["log_px"])
  monkeypatch.setattr(ys, "_fit_and_score",
                      lambda *a, **kw: np.full(2, np.nan, np.float32))
  none = ys.gaussian_mixture_yardstick(jax.random.key(2), x, k_grid=(1, 2))
  assert none["k"] is None and math.isnan(none["log_px"])
  assert ys.compare(none, -100.0, 1, len(x)) is None


@pytest.mark.fast
def test_rejects_non_finite_data():
  with pytest.raises(ValueError, match="non-finite"):
    ys.gaussian_mixture_yardstick(jax.random.key(0), np.array([[0.0, 1.0], [np.nan, 2.0]]))


def test_the_yardstick_compares_laws_over_every_row_and_leaves_pinned_rows_out(
    monkeypatch, floored_law):
  """A Gaussian mixture gives tied pinned readings a component of their own (a density
  as large as its covariance floor allows), and on the kept rows is a conditional
  density: on rows from the fit's own law, neither may read as the mixture explaining
  the data better (both did: the warning fired)."""
  fit, x = floored_law
  monkeypatch.setattr(choose, "n_parameters", lambda f: 3)
  summary, warning = choose._yardstick(jax.random.key(0), fit, x)
  assert warning is None, warning
  kept = int((x[:, 0] > 0).sum())
  assert summary["rows"] == kept and summary["rows_pinned_left_out"] == len(x) - kept
  fit_lp = float(np.mean(fit.log_prob(x[x[:, 0] > 0])))
  assert abs(summary["log_px"] - fit_lp) < 0.05, (summary, fit_lp)


@pytest.mark.fast
def test_a_yardstick_with_no_row_to_compare_is_said_naming_the_column():
  """A two-valued column, read as censored at both of its values, has a reading at a
  bound in every row: no row is left for the two models to score alike. The yardstick
  was skipped without a word (a new-user tour: a heater's on/off column turned off the
  check that warns of wrong mechanisms); now its warning says so and names the column."""
  from types import SimpleNamespace
  import jax.numpy as jnp
  rng = np.random.default_rng(0)
  x = np.stack([rng.normal(size=400), rng.integers(0, 2, 400).astype(float)], 1)
  params = {"censor_lower": jnp.asarray([-np.inf, 0.0], jnp.float32),
            "censor_upper": jnp.asarray([np.inf, 1.0], jnp.float32)}
  fit = SimpleNamespace(result=SimpleNamespace(params=params, loc=jnp.zeros(2),
                                               scale=jnp.ones(2)))
  summary, warning = choose._yardstick(jax.random.key(0), fit, x, names=["temp", "heater"])
  assert summary["rows_pinned_left_out"] == 400 and "skipped" in summary, summary
  assert warning is not None and "yardstick" in warning and "not computed" in warning
  assert "heater in 400 of 400 rows" in warning and "temp" not in warning, warning


def test_a_discrete_column_cannot_buy_the_mixture_an_unbounded_density():
  """A 3-valued switch S and its child Y: the mixture's covariances are floored at each
  column's resolution squared / 12 (rounding's variance, the structural fit's noise
  floor), so its log p(x) stays within log(sqrt(12 / (2 pi))) = 0.32 nats a row of the
  true law with S read as spread over its unit bin; measured without the floor (the
  resolution taken from a copy of S jittered by 1e-4, as continuous data) it is some 20
  nats a row above it. On continuous columns the floor is far below ``reg_covar``."""
  from scipy import stats
  rng = np.random.default_rng(0)
  n, p = 3000, np.array([0.5, 0.3, 0.2])
  s = rng.choice(3, n, p=p).astype(np.float64)
  y = 1.5 * s + rng.normal(0, 0.5, n)
  x = np.stack([s, y], 1)
  truth = float(np.mean(np.log(p[s.astype(int)]) + stats.norm.logpdf(y, 1.5 * s, 0.5)))
  floored = ys.gaussian_mixture_yardstick(jax.random.key(0), x, k_grid=(1, 2, 3, 4))
  assert floored["log_px"] < truth + 0.5 * math.log(12 / (2 * math.pi)) + 0.05, (floored, truth)
  jittered = x + np.stack([1e-4 * rng.normal(size=n), np.zeros(n)], 1)
  collapsed = ys.gaussian_mixture_yardstick(jax.random.key(0), x, k_grid=(1, 2, 3, 4),
                                            resolution_of=jittered)
  assert collapsed["log_px"] > truth + 5.0, (collapsed, truth)
  continuous = rng.normal(size=(1000, 3)).astype(np.float32)
  assert (np.square(units.resolution(continuous, np) / continuous.std(0)) / 12 < 1e-6).all()


def test_a_rounded_column_is_read_spread_over_its_cell_by_both_models(monkeypatch):
  """A 3-valued switch S and its child Y, and a stand-in fit that is their law with S
  read as spread over its unit cell (``log p(s) + log N(y | 1.5 s, 0.5)``): the
  yardstick spreads S's readings over their cells for both models (``units.dequantised``),
  and the mixture does not read as explaining the data better. On the readings as they
  are, its components at S's three values (covariance floor 1/12) put it above that law
  by about log sqrt(12 / 2 pi) = 0.32 nats a row, and the warning fired."""
  from types import SimpleNamespace
  import jax.numpy as jnp
  from scipy import stats
  from vcm_jax import choose, units
  rng = np.random.default_rng(0)
  n, p = 3000, np.array([0.5, 0.3, 0.2])
  s = rng.choice(3, n, p=p).astype(np.float64)
  x = np.stack([s, 1.5 * s + rng.normal(0, 0.5, n)], 1)

  def log_prob(rows):
    rows = np.asarray(rows, np.float64)
    v = np.clip(np.round(rows[:, 0]), 0, 2).astype(int)
    return jnp.asarray(np.log(p[v]) + stats.norm.logpdf(rows[:, 1], 1.5 * v, 0.5))

  infinite = jnp.asarray([-np.inf, -np.inf], jnp.float32)
  fit = SimpleNamespace(result=SimpleNamespace(params={"censor_lower": infinite,
                                                       "censor_upper": -infinite},
                                               loc=jnp.zeros(2), scale=jnp.ones(2)),
                        log_prob=log_prob)
  monkeypatch.setattr(choose, "n_parameters", lambda f: 4)
  summary, warning = choose._yardstick(jax.random.key(0), fit, x)
  assert warning is None, (summary, warning)
  truth = float(np.mean(log_prob(x)))
  assert summary["log_px"] < truth + 0.05, (summary, truth)
  monkeypatch.setattr(units, "dequantised", lambda rows, step: np.asarray(rows, np.float64))
  summary, warning = choose._yardstick(jax.random.key(0), fit, x)
  assert warning is not None and summary["log_px"] > truth + 0.2, (summary, truth)
