"""Fits that cannot fail silently (issue 23): units that survive point masses, a noise
floor, parameter counts from the parameters a fit has, nested candidates that failed,
checks that say "insufficient", gross errors that cannot swallow a regime."""
import math
import os
import sys
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import vcm_jax
from vcm_jax import checks, choose, diagnose, graphs, metrics, parameters, train, units
from vcm_jax import model as model_lib
from vcm_jax.config import FitConfig

sys.path.insert(0, os.path.dirname(__file__))
from test_sparse import ADJ, _multi_target_data  # noqa: E402  (the multi-target data)

# The slow tests here share nothing with other modules: a second process runs them.
pytestmark = pytest.mark.offload


@pytest.mark.fast
def test_robust_units_survive_a_column_that_is_mostly_one_value():
  """80% zeros: the IQR is 0, and dividing by its old 1e-6 floor put the other values
  millions of units out; the scale is now at least a quarter of the sd."""
  rng = np.random.default_rng(0)
  col = np.where(rng.random(2000) < 0.8, 0.0, rng.normal(5.0, 1.0, 2000)).astype(np.float32)
  x = np.stack([col, rng.normal(size=2000).astype(np.float32)], 1)
  xs, _, scale = units.standardize(jnp.asarray(x), robust=True)
  assert float(scale[0]) >= 0.25 * x[:, 0].std() - 1e-6
  assert float(jnp.abs(xs).max()) < 50.0
  # An ordinary column keeps its IQR scale (the floor does not bind).
  q1, q3 = np.quantile(x[:, 1], [0.25, 0.75])
  np.testing.assert_allclose(float(scale[1]), (q3 - q1) / 1.349, rtol=1e-4)
  (line,) = diagnose.point_masses(x, ["spiky", "normal"])
  assert "'spiky'" in line and "of the rows hold one value" in line


@pytest.mark.fast
def test_a_constant_column_is_a_one_line_error():
  x = np.random.default_rng(0).normal(size=(100, 2)).astype(np.float32)
  x[:, 1] = 3.0
  with pytest.raises(ValueError, match=r"column 1 \('b'\) holds one value"):
    vcm_jax.fit(x, np.array([[0, 1], [0, 0]]), names=["a", "b"], config=FitConfig(num_steps=1))


@pytest.mark.fast
def test_the_default_noise_floor_is_the_rounding_or_a_share_of_the_sd():
  rng = np.random.default_rng(0)
  counts = rng.poisson(3.0, 1000).astype(np.float32)     # resolution 1
  smooth = rng.normal(0, 2.0, 1000).astype(np.float32)   # resolution ~ 0
  floor = np.asarray(units.default_noise_floor(jnp.asarray(np.stack([counts, smooth], 1))))
  np.testing.assert_allclose(floor[0], max(1 / math.sqrt(12), 1e-3 * counts.std()), rtol=1e-5)
  np.testing.assert_allclose(floor[1], 1e-3 * smooth.std(), rtol=1e-4)


@pytest.mark.fast
def test_dequantised_readings_are_uniform_over_their_rounding_cell():
  """``units.dequantised`` at ``units.rounding_step``: a count's readings spread over
  (v - 1/2, v + 1/2), uniformly (a Kolmogorov-Smirnov test of the offsets against
  U(-1/2, 1/2)), so that a density of them is the count's probability; readings
  rounded to 0.1 over a wide spread (their rounding below the noise floor's share of
  the sd), a continuous column and twenty continuous rows (a wide smallest gap, no
  ties) are left as they are; the same draws from the same seed."""
  from scipy import stats
  rng = np.random.default_rng(0)
  x = np.stack([rng.poisson(1.0, 4000), np.round(rng.normal(0, 200.0, 4000), 1),
                rng.normal(0, 2.0, 4000)], 1)
  step = units.rounding_step(x)
  assert step[0] == 1.0 and step[1] == 0.0 and step[2] == 0.0
  assert units.resolution(x, np)[1] == pytest.approx(0.1)  # (0.1 / sqrt(12) < 1e-3 sd)
  out = units.dequantised(x, step)
  offset = out[:, 0] - x[:, 0]
  assert np.all(np.abs(offset) <= 0.5)
  assert stats.kstest(offset + 0.5, "uniform").pvalue > 0.01
  np.testing.assert_array_equal(np.round(out[:, 0]), x[:, 0])
  np.testing.assert_array_equal(out[:, 1:], x[:, 1:])
  np.testing.assert_array_equal(out, units.dequantised(x, step))
  # Twenty continuous rows: a smallest gap wide beside the sd, but no ties: continuous.
  few = rng.normal(size=(20, 1))
  assert units.resolution(few, np)[0] / math.sqrt(12) > 1e-3 * few.std()
  assert units.rounding_step(few)[0] == 0.0


def _pinned_data(n=1500):
  """X0 -> X1; one regime pins X1 at exactly 2.0 (a hard intervention with no noise)."""
  rng = np.random.default_rng(0)
  r = rng.integers(0, 2, n)
  x0 = rng.normal(size=n)
  x1 = np.where(r == 1, 2.0, x0 + rng.normal(0, 0.5, n))
  return np.stack([x0, x1], 1).astype(np.float32), r


def test_a_ratings_ties_are_not_a_collapse_but_a_pinned_reading_still_is(monkeypatch):
  """A 5-level rating R (sd 0.7 levels: its middle level holds about half the rows) ->
  X -> Y, where one regime pins Y at 2.0: only Y's regimes are said. R's ties are what
  rounding makes of its spread (its scale above half its step); without that reading
  (every column taken as continuous) R's middle level is said too."""
  rng = np.random.default_rng(0)
  n = 1500
  r = rng.integers(0, 2, n)
  rating = np.clip(np.round(3 + 0.7 * rng.normal(size=n)), 1, 5)
  x = 0.5 * rating + rng.normal(0, 0.5, n)
  y = np.where(r == 1, 2.0, x + rng.normal(0, 0.5, n))
  data = np.stack([rating, x, y], 1).astype(np.float32)
  assert np.mean(rating == 3) > 0.5
  adj = np.array([[0, 1, 0], [0, 0, 1], [0, 0, 0]])
  fit = vcm_jax.fit(data, adj, key=jax.random.key(0),
                    config=FitConfig(num_steps=400, mechanism="linear"))
  lines = diagnose.tied_regimes(fit, data, ["R", "X", "Y"])
  assert lines and all("'Y'" in line and "(2)" in line for line in lines), lines
  monkeypatch.setattr(units, "rounding_step", lambda rows: np.zeros(np.shape(rows)[1]))
  assert any("'R'" in line for line in diagnose.tied_regimes(fit, data, ["R", "X", "Y"]))


def test_a_regime_collapsed_on_tied_values_is_held_by_the_floor_and_said():
  """A regime whose rows share one value: without a floor its scale shrinks without end
  and its log p(x) with it (the likelihood is unbounded); with it the scale stops at
  the floor, log p(x) is bounded, and the run says so."""
  x, r = _pinned_data()
  adj = np.array([[0, 1], [0, 0]])
  cfg = FitConfig(num_steps=400, mechanism="linear")
  fit = vcm_jax.fit(x, adj, key=jax.random.key(0), config=cfg)
  free = vcm_jax.fit(x, adj, key=jax.random.key(0), config=cfg.replace(noise_floor=0.0))
  floor = 1e-3 * x[:, 1].std()
  bound = -math.log(floor) - 0.5 * math.log(2 * math.pi)  # a density at most 1/(sqrt(2pi) floor)
  pinned = r == 1
  assert float(fit.log_prob(x[pinned]).mean()) < bound + 5.0
  assert float(free.log_prob(x[pinned]).mean()) > float(fit.log_prob(x[pinned]).mean())
  lines = diagnose.tied_regimes(fit, x, ["x0", "x1"])
  assert len(lines) == 1 and "'x1'" in lines[0] and "(2)" in lines[0], lines


@pytest.mark.fast
def test_tied_readings_at_a_censoring_bound_are_not_said_to_collapse(floored_law):
  """A regime of readings pinned at a floor the fit censors holds one value, but the fit
  scores those cells by the tail's probability (log 1/2 here), not a density that only
  the noise floor bounds: no line, neither for the regime nor for the column. The same
  tie off a bound is still said."""
  fit, x = floored_law
  fit.assign = lambda rows: jnp.asarray(np.asarray(rows)[:, 0] <= 0.0, jnp.int32)
  assert diagnose.tied_regimes(fit, x, ["a", "b"]) == []
  moved = np.where(x[:, 0] <= 0.0, 0.5, x[:, 0])  # the same ties, off the fit's bound
  fit.assign = lambda rows: jnp.asarray(np.asarray(rows)[:, 0] == 0.5, jnp.int32)
  lines = diagnose.tied_regimes(fit, np.stack([moved, x[:, 1]], 1), ["a", "b"])
  assert len(lines) == 1 and "'a'" in lines[0] and "(0.5)" in lines[0], lines
  x = x.copy()
  x[:1000, 0] = 0.0  # over half the column at the floor
  assert diagnose.point_masses(x, ["a", "b"], pinned=diagnose.pinned_cells(fit, x)) == []
  (line,) = diagnose.point_masses(x, ["a", "b"])
  assert "'a'" in line


@pytest.mark.fast
def test_parameter_counts_are_those_the_decoder_has():
  """X0 -> X1, one hidden layer of 16: X1's trunk 1*16 + 16 + 16 = 48, its copy
  (w, b, log_scale, z_kernel) 1 + 2 + 16 = 19; the root's copy 2 (no trunk: its MLP
  reads only the regime); structured: trunk + 2 copies + K - 1 = 48 + 42 + 2 = 92."""
  adj = jnp.array([[0, 1], [0, 0]])
  idx, mask = graphs.parent_table(adj, 1)
  cfg = FitConfig(hidden=(16,))
  copy, trunk = parameters.per_mechanism(cfg, mask)
  np.testing.assert_array_equal(np.asarray(copy), [2, 19])
  np.testing.assert_array_equal(np.asarray(trunk), [0, 48])
  model = train.make_trainer(cfg, n_nodes=2, max_parents=1).model
  assert int(parameters.count(model, None, mask)) == 92
  # Linear mechanisms: every decoder array entry is a parameter (no padding here).
  lin = train.make_trainer(cfg.replace(mechanism="linear"), n_nodes=2, max_parents=1).model
  from vcm_jax.model import init_params
  leaves = init_params(jax.random.key(0), lin, idx, mask)["decoder"]["params"]
  size = sum(int(np.size(a)) for a in jax.tree.leaves(leaves)) - 2  # the root's w, dw: padding
  assert int(parameters.count(lin, None, mask)) == size + 2  # + K - 1 regime weights
  # The sparse gates pay BIC's price of that copy.
  sparse = train.make_trainer(cfg.replace(decoder="sparse", n_regimes=2), n_nodes=2,
                              max_parents=1).model
  np.testing.assert_allclose(np.asarray(train.change_cost(sparse, mask, 1000)),
                             0.5 * math.log(1000) * np.array([2, 19]), rtol=1e-6)


@pytest.mark.fast
def test_a_richer_candidate_below_one_it_contains_has_failed():
  rows = [dict(decoder="structured", n_regimes=0, noise="gauss", log_px=-3.0),
          dict(decoder="sparse", n_regimes=4, noise="gauss", log_px=-2.9),
          dict(decoder="sparse", n_regimes=6, noise="gauss", log_px=-3.2),  # below K = 4
          dict(decoder="sparse", n_regimes=3, noise="gauss", log_px=-3.5),  # K = 3 < N + 1
          dict(decoder="sparse", n_regimes=8, noise="student_t", log_px=-3.4)]  # other noise
  failed = choose.nested_failures(rows, n_nodes=3, tolerance=1e-3)
  assert set(failed) == {id(rows[2])}, failed
  assert "K=4" in failed[id(rows[2])]
  rows[3]["n_regimes"] = 4  # now K = N + 1: it contains the single-target latent
  rows[1]["n_regimes"] = 5
  failed = choose.nested_failures(rows, n_nodes=3, tolerance=1e-3)
  assert set(failed) == {id(rows[2]), id(rows[3])}, failed


def test_a_failed_richer_candidate_starts_again_from_the_plainer_fit_it_contains():
  """``model.split_regimes`` holds the plainer model exactly (no jitter, gates kept) and
  to second order with jitter; ``choose._refit_failures`` fits a richer candidate that
  stopped below a plainer one again from it, and the refit reaches the plainer fit."""
  x, _, _ = _multi_target_data(n=1000)
  cfg = FitConfig(mechanism="linear", num_steps=60, pooled_steps=20, restarts=1)
  decoder, sparse = "sparse", True  # (the free decoder's regimes are split the same way)
  k2, k4 = choose.fit_candidates(jax.random.key(0), x, ADJ, [
      cfg.replace(decoder=decoder, n_regimes=2),
      cfg.replace(decoder=decoder, n_regimes=4, num_steps=3, pooled_steps=1)])
  params = k2.fit.result.params
  model = vcm_jax.api._trainer(cfg.replace(decoder=decoder, n_regimes=4), 4,
                               k2.fit.parent_idx.shape[1]).model
  as_four = lambda p: choose._from_result(model, k2.fit.result._replace(params=p),
                                          jnp.asarray(x), k2.fit.parent_idx,
                                          k2.fit.parent_mask, k2.fit.order)
  exact = model_lib.split_regimes(jax.random.key(1), params, 4, sparse=sparse, jitter=0.0)
  prior = np.exp(np.asarray(jax.nn.log_softmax(params["prior_logits"])))
  big, small = prior.max(), prior.min()
  # the larger regime is split in two, then the largest of the three
  expected = ([big / 2, big / 2, small / 2, small / 2] if small > big / 2
              else [big / 4, big / 4, big / 2, small])
  np.testing.assert_allclose(np.sort(np.exp(np.asarray(exact["prior_logits"]))),
                             np.sort(expected), rtol=1e-5)
  np.testing.assert_allclose(np.exp(np.asarray(exact["prior_logits"])).sum(), 1.0, rtol=1e-6)
  np.testing.assert_allclose(as_four(exact).log_prob(x), k2.fit.log_prob(x), rtol=1e-5, atol=1e-5)
  jittered = as_four(model_lib.split_regimes(jax.random.key(1), params, 4, sparse=sparse))
  assert abs(float(jittered.log_prob(x).mean() - k2.fit.log_prob(x).mean())) < 2e-3
  # a candidate that stopped short: its config asks for the full fit
  short = k4._replace(cfg=cfg.replace(decoder=decoder, n_regimes=4))
  assert short.row["log_px"] < k2.row["log_px"] - 1e-3, (decoder, short.row, k2.row)
  logged = []
  table = choose._refit_failures(jax.random.key(0), [k2, short], 4, 1e-3, jnp.asarray(x),
                                 None, logged.append)
  assert table[0] is k2 and table[1] is not short
  assert table[1].row["started_from"] == f"{decoder} K=2" and logged == [table[1].row]
  assert table[1].row["log_px"] >= k2.row["log_px"] - 1e-3, (table[1].row, k2.row)
  assert table[1].fit.n_regimes == 4
  assert not choose.nested_failures([f.row for f in table], 4, 1e-3)


def test_a_nan_fit_is_insufficient_for_the_check():
  x, _ = _pinned_data(400)
  fit = vcm_jax.fit(x, np.array([[0, 1], [0, 0]]), config=FitConfig(num_steps=5))
  ok = checks.shared_mechanism_check(fit, x)
  assert ok["insufficient"] is None
  nan = fit.replace(result=fit.result._replace(
      params=jax.tree.map(lambda a: jnp.full_like(a, jnp.nan), fit.result.params)))
  found = checks.shared_mechanism_check(nan, x)
  assert not found["holds"] and "not finite" in found["insufficient"]


@pytest.mark.usefixtures("short_default")  # (the default's path, at most 800 steps)
def test_gross_errors_cannot_swallow_a_near_deterministic_regime():
  """The held-out physical system's failure, small: a sensor that reads its actuator
  almost exactly (noise 5% of its spread), and a regime that doubles its gain. A model
  that starts with the gross-error term explains the doubled readings as wild cells;
  the default fits the regimes first, then tries the term from that fit and keeps it
  only where BIC does: the regimes are found, and the term flags few rows."""
  rng = np.random.default_rng(3)
  n = 2400
  r = rng.integers(0, 3, n)  # 0 observational, 1 gain x2 on x1, 2 shift on x0
  x0 = rng.normal(size=n) + 2.5 * (r == 2)
  gain = np.where(r == 1, 2.0, 1.0)
  x1 = gain * 1.5 * x0 + rng.normal(0, 0.075, n)
  x2 = 0.8 * x1 + rng.normal(0, 0.5, n)
  x = np.stack([x0, x1, x2], 1).astype(np.float32)
  adj = np.array([[0, 1, 0], [0, 0, 1], [0, 0, 0]])
  with warnings.catch_warnings():
    warnings.simplefilter("ignore", vcm_jax.FitWarning)
    fit = vcm_jax.fit(x, adj, key=jax.random.key(0),
                      selection=choose.Selection(noises=("gauss",), scales=("constant",),
                                                 k_candidates=(3, 4), yardstick=False))
  ari = float(metrics.adjusted_rand_index(jnp.asarray(r), fit.assign(x), 3, fit.n_regimes))
  normal = lambda v, m, s: -0.5 * ((v - m) / s) ** 2 - np.log(s)
  exact = np.stack([normal(x0, 2.5 * (k == 2), 1.0)
                    + normal(x1, (2.0 if k == 1 else 1.0) * 1.5 * x0, 0.075) for k in range(3)], 1)
  ceiling = float(metrics.adjusted_rand_index(jnp.asarray(r), jnp.asarray(exact.argmax(1)), 3))
  assert ari > ceiling - 0.02, (ari, ceiling, fit.choice.table)
  gross = fit.choice.extra["gross_errors"]
  assert gross["flagged_rows"] <= 3 * gross["expected_rows"], gross
  assert fit.verdict["verdict"] == "identified", fit.verdict


def _two_target_data():
  """X0 -> X1 -> X2 with regimes {obs, X0, X2, X1+X2}: the last changes two mechanisms."""
  rng = np.random.default_rng(5)
  n = 1600
  r = rng.integers(0, 4, n)
  x0 = rng.normal(size=n) + 3.0 * (r == 1)
  x1 = 0.9 * x0 + rng.normal(0, 0.6, n) + 3.0 * (r == 3)
  x2 = -0.8 * x1 + rng.normal(0, 0.6, n) + 3.0 * ((r == 2) | (r == 3))
  return np.stack([x0, x1, x2], 1).astype(np.float32), r


def test_the_sparse_latent_read_from_a_single_target_fit_is_the_same_model():
  """The single-target fit's parameters read as the sparse latent with K = N + 1 (its
  gates shut or open beyond doubt) give every row the same likelihood: the start from
  which the model choice fits that latent, so it cannot end below the fit it contains
  (that it does not: tests/test_choose.py)."""
  from vcm_jax import model as model_lib
  x, _ = _two_target_data()
  adj = np.array([[0, 1, 0], [0, 0, 1], [0, 0, 0]])
  f = vcm_jax.fit(x, adj, config=FitConfig(num_steps=20))
  sparse = train.make_trainer(FitConfig(decoder="sparse", n_regimes=4), n_nodes=3,
                              max_parents=1).model
  params = model_lib.sparse_from_structured(f.result.params, 30.0)
  xs = (jnp.asarray(x) - f.result.loc) / f.result.scale
  np.testing.assert_allclose(
      np.asarray(sparse.regime_log_likelihoods(params, xs, f.parent_idx, f.parent_mask)),
      np.asarray(f.model.regime_log_likelihoods(f.result.params, xs, f.parent_idx,
                                                f.parent_mask)), atol=1e-4)


@pytest.mark.parametrize("noise", ["gauss", "laplace", "student_t"])  # (not fast: 2-2.6 s)
def test_a_censored_reading_has_the_tail_probability(noise):
  """``densities.log_cdf`` against SciPy's laws in the same parametrisation (the scale is
  the standard deviation), and ``censored`` reads the lower and the upper tail."""
  from scipy import stats
  from vcm_jax import densities
  x = np.linspace(-4, 4, 17)
  mean, sd, dof = 0.3, 1.7, 4.0
  law = {"gauss": stats.norm(mean, sd), "laplace": stats.laplace(mean, sd / math.sqrt(2)),
         "student_t": stats.t(dof, mean, sd * math.sqrt((dof - 2) / dof))}[noise]
  log_cdf = densities.log_cdf(noise, dof)
  np.testing.assert_allclose(np.asarray(log_cdf(jnp.asarray(x), mean, math.log(sd))),
                             law.logcdf(x), atol=2e-5)
  # Finite gradients everywhere, at the mean and far out (training reads them).
  far = jnp.asarray([-1e4, -50.0, 0.0, 0.3, 50.0])
  grad = jax.grad(lambda m, s: log_cdf(far, m, s).sum(), argnums=(0, 1))(0.3, math.log(sd))
  assert all(np.isfinite(np.asarray(g)) for g in grad), grad
  cells = jnp.asarray([-2.0, 0.0, 2.0])
  out = densities.censored(jnp.zeros(3), cells, mean, math.log(sd), -2.0, 2.0, log_cdf)
  np.testing.assert_allclose(np.asarray(out), [law.logcdf(-2.0), 0.0, law.logsf(2.0)],
                             atol=2e-5)
  # Its gradient is finite at a bound, inside, and where a column has none (+-inf).
  lower = jnp.asarray([-2.0, -2.0, -jnp.inf])
  upper = jnp.asarray([2.0, 2.0, jnp.inf])
  grad = jax.grad(lambda m, s: densities.censored(
      densities.log_density(noise, dof)(cells, m, s), cells, m, s, lower, upper,
      log_cdf).sum(), argnums=(0, 1))(mean, math.log(sd))
  assert all(np.isfinite(np.asarray(g)) for g in grad), grad


@pytest.mark.fast
def test_a_reading_an_ulp_off_its_bound_in_the_fits_units_is_at_the_bound(floored_law):
  """A bound and the readings are put in the fit's units by different programs, which can
  round a floor's readings an ulp or two to the inside of the bound computed from them
  (a floored-counts fit read a floor held by 29% of the rows as no reading at it). The
  likelihood and ``pinned_cells`` read such cells as at the bound; a reading a thousandth
  of a standard deviation inside is not."""
  from vcm_jax import densities
  lower = np.float32(-0.5757556)
  inside = [np.nextafter(lower, np.float32(1)), np.nextafter(np.nextafter(
      lower, np.float32(1)), np.float32(1)), lower + np.float32(1e-3)]
  cells = jnp.asarray([lower, *inside], jnp.float32)
  at_lower, at_upper = densities.at_bounds(cells, lower, jnp.inf)
  np.testing.assert_array_equal(np.asarray(at_lower), [True, True, True, False])
  assert not np.asarray(at_upper).any()
  log_cdf = densities.log_cdf("gauss", 4.0)
  out = np.asarray(densities.censored(jnp.zeros(4), cells, 0.0, 0.0, lower, jnp.inf, log_cdf))
  np.testing.assert_allclose(out[:3], float(log_cdf(jnp.float32(lower), 0.0, 0.0)), rtol=1e-5)
  assert out[3] == 0.0  # inside: its own density (here the stand-in 0)
  # The ceiling the same way, and a fit's pinned cells by the same rule.
  upper = -lower
  at_lower, at_upper = densities.at_bounds(-cells, -jnp.inf, upper)
  np.testing.assert_array_equal(np.asarray(at_upper), [True, True, True, False])
  fit, _ = floored_law  # (its units: loc 0, scale 1; its floor moved to ``lower``)
  fit.result.params = dict(fit.result.params, censor_lower=jnp.asarray([lower, -jnp.inf]))
  pinned = diagnose.pinned_cells(fit, np.stack([np.asarray(cells), np.zeros(4)], 1))
  np.testing.assert_array_equal(pinned[:, 0], [True, True, True, False])


@pytest.mark.fast
def test_student_t4_closed_form_cdf_matches_scipy_and_betainc_over_nine_decades():
  """The default Student-t (4 degrees of freedom) reads its censored tails in closed form:
  the same log P(X <= x) and d/dx as SciPy (float64) from 1e-3 to 1e6 either side of the
  mean, and as the ``betainc`` form every other ``dof`` uses."""
  from scipy import stats
  from vcm_jax import densities
  mean, sd = 0.3, 1.7
  law = stats.t(4, mean, sd * math.sqrt(0.5))
  x = np.concatenate([-np.logspace(-3, 6, 37), [0.0, mean], np.logspace(-3, 6, 37)])
  closed = densities.log_cdf("student_t", 4.0)
  got = np.asarray(closed(jnp.asarray(x, jnp.float32), mean, math.log(sd)))
  np.testing.assert_allclose(got, law.logcdf(x), rtol=2e-5, atol=1e-6)
  grad = jax.vmap(jax.grad(lambda v: closed(v, mean, math.log(sd))))(jnp.asarray(x, jnp.float32))
  np.testing.assert_allclose(np.asarray(grad), np.exp(law.logpdf(x) - law.logcdf(x)),
                             rtol=2e-5, atol=1e-30)
  general = densities.log_cdf("student_t", 4.0 + 1e-9)  # not 4.0: the betainc form
  np.testing.assert_allclose(got, np.asarray(general(jnp.asarray(x, jnp.float32), mean,
                                                     math.log(sd))), rtol=2e-5, atol=1e-5)


@pytest.mark.fast
def test_a_two_valued_column_reads_as_a_bernoulli():
  """``densities.two_point``: the censored Gaussian conditioned on its two atoms is the
  Bernoulli with ``p = Phi((m - u) / s) / (Phi((l - m) / s) + Phi((m - u) / s))``
  (SciPy), its own-law expectation ``p log p + q log q``; a cell not two-point keeps
  its value, with a finite gradient though its bounds are infinite."""
  from scipy import stats
  from vcm_jax import densities
  cdf = densities.log_cdf("gauss")
  mean = jnp.array([0.2, -1.5, 3.0])
  log_scale = jnp.log(jnp.array([0.7, 2.0, 0.4]))
  lower, upper = jnp.zeros(3), jnp.ones(3)
  on = jnp.array([True, True, True])
  sd = np.exp(np.asarray(log_scale, np.float64))
  m = np.asarray(mean, np.float64)
  p_low, p_high = stats.norm.cdf((0.0 - m) / sd), stats.norm.sf((1.0 - m) / sd)
  p1 = p_high / (p_low + p_high)
  for x, want in ((lower, np.log1p(-p1)), (upper, np.log(p1))):
    log_p = densities.censored(jnp.zeros(3), x, mean, log_scale, lower, upper, cdf)
    got = densities.two_point(log_p, mean, log_scale, lower, upper, on, cdf)
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-4, atol=1e-6)  # (float32: -31.08)
  entropy = densities.two_point_expected_log_density(mean, log_scale, lower, upper, on, cdf)
  np.testing.assert_allclose(np.asarray(entropy), p1 * np.log(p1) + (1 - p1) * np.log1p(-p1),
                             rtol=1e-5, atol=1e-9)

  def off(m):  # no bounds, not two-point: the density as it was
    x = jnp.array([0.3])
    log_p = densities.gaussian_log_density(x, m, jnp.zeros(1))
    return densities.two_point(log_p, m, jnp.zeros(1), jnp.full(1, -jnp.inf),
                               jnp.full(1, jnp.inf), jnp.array([False]), cdf).sum()
  np.testing.assert_allclose(float(off(jnp.array([0.1]))),
                             stats.norm.logpdf(0.3, 0.1, 1.0), rtol=1e-6)
  assert np.isfinite(np.asarray(jax.grad(off)(jnp.array([0.1])))).all()


@pytest.mark.fast
def test_two_point_is_left_out_only_where_no_column_is_two_valued():
  """A 0/1 column keeps ``two_point`` (and only it is flagged); a floored continuous
  column, or none at all, leaves it out of the program."""
  rng = np.random.default_rng(0)
  x = rng.normal(size=(1000, 3)).astype(np.float32)
  cfg = FitConfig()
  assert not train.without_unused_censoring(cfg, x).two_point
  floored = x.copy()
  floored[:, 1] = np.maximum(floored[:, 1], -0.5)
  kept = train.without_unused_censoring(cfg, floored)
  assert kept.censor_share > 0 and not kept.two_point
  switch = floored.copy()
  switch[:, 0] = (rng.random(1000) < 0.3).astype(np.float32) * 4.0 + 1.0
  assert train.without_unused_censoring(cfg, switch).two_point
  mask = train.two_point_mask(cfg, jnp.asarray(switch))
  np.testing.assert_array_equal(np.asarray(mask), [True, False, False])


def test_an_on_off_root_keeps_its_observational_regime():
  """A switch S (0/1, a root) -> Y; regimes: observational (P(S = 1) = 0.3, 40% of the
  rows), do(S) (0.85), do(Y) (a shift). Censored at both values, S's law wastes the
  mass between them and reaches a Bernoulli only as its scale grows without bound;
  read as a Bernoulli it is fitted for finite parameters. Measured (seeds 0-2, 300 steps):
  with it, weights 0.44-0.46 / 0.25-0.26 / 0.29-0.30 and ARI at the ceiling (0.586-0.596
  against 0.588-0.596); without it, the observational regime shrank to 0.07-0.08 of the
  rows, most of them read as do(S) (ARI 0.520-0.535)."""
  from sklearn.metrics import adjusted_rand_score
  from scipy import stats
  rng = np.random.default_rng(0)
  n = 2000
  z = rng.choice(3, n, p=[0.4, 0.3, 0.3])
  s = (rng.random(n) < np.where(z == 1, 0.85, 0.3)).astype(np.float32)
  y = 2.0 * s + np.where(z == 2, 2.5, 0.0) + rng.normal(0, 0.5, n)
  x = np.stack([s, y], 1).astype(np.float32)
  ll = np.stack([np.log(w) + np.where(s == 1, np.log(p), np.log1p(-p))
                 + stats.norm.logpdf(y, 2 * s + (2.5 if k == 2 else 0.0), 0.5)
                 for k, (w, p) in enumerate([(0.4, 0.3), (0.3, 0.85), (0.3, 0.3)])], 1)
  ceiling = adjusted_rand_score(z, ll.argmax(1))
  fit = vcm_jax.fit(x, np.array([[0, 1], [0, 0]]), config=FitConfig(num_steps=300))
  assert float(np.asarray(fit.result.params["two_point"])[0]) == 1.0
  weights = np.asarray(fit.weights)
  assert abs(weights[0] - 0.4) < 0.1 and abs(weights[1] - 0.3) < 0.1, weights
  assert adjusted_rand_score(z, np.asarray(fit.assign(x))) > 0.97 * ceiling
  # Sampled, the switch reads 0 or 1, on as often as the rows the fit gives each regime
  # (posterior-weighted: what its fitted law matches), and Y follows it.
  post = np.asarray(fit.posterior(x), np.float64)
  for regime in range(fit.n_regimes):
    if weights[regime] < 0.05:
      continue
    want = post[:, regime] @ x / post[:, regime].sum()
    drawn = np.asarray(fit.sample(jax.random.key(regime), 4000, regime))
    assert set(np.unique(drawn[:, 0])) <= {0.0, 1.0}
    assert abs(drawn[:, 0].mean() - want[0]) < 0.04, (regime, drawn[:, 0].mean(), want)
    assert abs(drawn[:, 1].mean() - want[1]) < 0.1, (regime, drawn[:, 1].mean(), want)


def test_a_floored_column_is_censored_not_a_point_of_infinite_density():
  """A reading floored at 0 for a third of the rows: the fit finds the bound, every cell
  there has a probability (log <= 0), the fit is finite, and the floored rows' log p(x)
  stays bounded where the density alone would grow with the floor's ties."""
  rng = np.random.default_rng(2)
  n = 1500
  x0 = rng.normal(size=n)
  x1 = np.maximum(x0 + rng.normal(0, 0.5, n), -0.2)
  x = np.stack([x0, x1], 1).astype(np.float32)
  fit = vcm_jax.fit(x, np.array([[0, 1], [0, 0]]), config=FitConfig(num_steps=200))
  params = fit.result.params
  lower = float(params["censor_lower"][1]) * float(fit.result.scale[1]) + float(fit.result.loc[1])
  np.testing.assert_allclose(lower, -0.2, atol=1e-5)
  assert np.isinf(np.asarray(params["censor_lower"][0])), "no bound where no value repeats"
  pinned = x[:, 1] == np.float32(-0.2)
  assert pinned.mean() > 0.2
  lp = np.asarray(fit.log_prob(x))
  assert np.isfinite(lp).all()
  # A pinned row: log p(x0) (a density of a unit-sd reading: at most -0.92 at its
  # mode) + log P(x1 <= floor | x0) (a probability, <= 0).
  assert lp[pinned].max() < 0.0, lp[pinned].max()
  uncensored = vcm_jax.fit(x, np.array([[0, 1], [0, 0]]),
                           config=FitConfig(num_steps=200, censor_share=0.0))
  assert float(uncensored.log_prob(x[pinned]).mean()) > float(lp[pinned].mean()) + 1.0


def test_a_reading_at_its_floor_is_not_read_as_a_gross_error():
  """The gross-error score of a cell at a censoring bound compares the Cauchy with the
  tail's probability, as the likelihood does: a reading floored at -0.2 whose parent
  predicts far below it is the floor at work, not a gross error. (With the density at
  the bound instead, the rows whose parent is lowest were flagged.)"""
  rng = np.random.default_rng(3)
  n = 1500
  x0 = rng.normal(size=n)
  x1 = np.maximum(x0 + rng.normal(0, 0.5, n), -0.2)
  x = np.stack([x0, x1], 1).astype(np.float32)
  fit = vcm_jax.fit(x, np.array([[0, 1], [0, 0]]),
                    config=FitConfig(num_steps=200, outlier_fraction=1e-3))
  score = np.asarray(fit.outlier_score(x))
  pinned = x[:, 1] == np.float32(-0.2)
  assert pinned.sum() > 300 and (x0[pinned] < -2.5).sum() >= 5  # deep below the floor
  assert (score[pinned] > 0.5).sum() == 0, np.sort(score[pinned])[-5:]
  # a reading moved far from its mechanism, off the bound, still is one
  moved = x.copy()
  moved[0, 1] = 40.0
  assert float(np.asarray(fit.outlier_score(moved))[0]) > 0.5


@pytest.mark.fast
def test_censoring_is_left_out_only_where_no_column_has_a_bound():
  """The tail terms leave the program where no column holds a bound (a continuous
  column's extremes are single rows); a floor held by 1% of the rows, and 10, keeps them,
  as does one held by exactly 10 of 1000; 9 of 1000 is no bound."""
  rng = np.random.default_rng(0)
  x = rng.normal(size=(1000, 3)).astype(np.float32)
  cfg = FitConfig()
  assert train.without_unused_censoring(cfg, x).censor_share == 0.0
  for pinned, kept in ((10, True), (9, False)):
    floored = x.copy()
    floored[:pinned, 2] = floored[:, 2].max() + 1.0  # a ceiling held by ``pinned`` rows
    assert (train.without_unused_censoring(cfg, floored).censor_share > 0) == kept, pinned
  assert train.without_unused_censoring(cfg.replace(censor_share=0.0), x).censor_share == 0.0


@pytest.mark.fast
def test_removing_a_regime_changes_log_px_as_refitting_the_mixture_without_it_says():
  """``diagnose._removal_log_px`` (every regime at once, O(S K)) against the mixture
  rebuilt without each regime, its prior renormalised, on likelihoods up to thousands of
  nats apart (responsibilities that round to 1)."""
  from scipy.special import logsumexp
  rng = np.random.default_rng(0)
  priors = [np.log(rng.dirichlet(np.ones(6))) for _ in range(2)]
  # a regime dropped or padded (-inf) and one holding nearly all the mass (1 - pi_j
  # rounds to 0: log1p(-pi_j) read it as -inf, and that regime's removal as +inf)
  priors.append(np.array([-40.0, 0.0, -40.0, -np.inf, -45.0, -41.0]))
  for spread, log_prior in zip((1.0, 100.0, 5.0), priors):
    log_prior = log_prior - logsumexp(log_prior)
    ll = rng.normal(size=(400, 6)) * spread
    total = logsumexp(ll + log_prior, axis=1).sum()
    want = []
    for j in range(6):
      prior = np.where(np.arange(6) == j, -np.inf, log_prior)
      want.append(logsumexp(ll + prior - logsumexp(prior), axis=1).sum() - total)
    got = diagnose._removal_log_px(ll, log_prior)
    assert np.all(np.isfinite(got[np.isfinite(log_prior)])), got
    np.testing.assert_allclose(got[np.isfinite(log_prior)],
                               np.asarray(want)[np.isfinite(log_prior)], rtol=1e-9, atol=1e-8)


@pytest.mark.fast
@pytest.mark.parametrize("decoder", ["free", "sparse"])
def test_a_regimes_own_parameters_are_what_the_count_loses_without_it(decoder):
  """``diagnose.owned_parameters`` of the last regime of a free or sparse model (MLP
  mechanisms, some gates on) against ``parameters.count`` with one regime fewer
  (``n_active``, as a padded fit counts): an independent count of the same thing."""
  from types import SimpleNamespace
  cfg = FitConfig(decoder=decoder, n_regimes=4, mechanism="mlp", hidden=(8,))
  adj = jnp.asarray([[0, 1, 1], [0, 0, 1], [0, 0, 0]])
  idx, mask = graphs.parent_table(adj, 2)
  model = model_lib.build_model(cfg, n_nodes=3, max_parents=2)
  params = model_lib.init_params(jax.random.key(0), model, idx, mask)
  if decoder == "sparse":  # regime 3 changes nodes 0 and 2, the others one each
    gates = np.full((4, 3), -5.0)
    gates[[0, 1, 2, 3, 3], [0, 1, 2, 0, 2]] = 5.0
    params["gate_logits"] = jnp.asarray(gates)
  fit = SimpleNamespace(model=model, parent_mask=mask, n_regimes=4,
                        result=SimpleNamespace(params=params))
  owned = diagnose.owned_parameters(fit)
  lost = (parameters.count(model, params, mask, 4) - parameters.count(model, params, mask, 3))
  assert owned[3] == float(lost) > 1, (owned, lost)
  if decoder == "sparse":  # regime 3's copies are regime 0's and regime 2's (one logit)
    assert owned[3] == owned[0] + owned[2] - 1 and owned[0] != owned[2]


def test_a_regime_of_a_node_never_targeted_is_dropped_where_it_does_not_pay():
  """Data from the observational regime and interventions on X0 and X1 only, on a chain
  of four: the single-target latent still has regimes for X2 and X3, which take a few
  observational rows. Each fails the BIC test on its own (``regimes_not_paying``: the
  others explain its rows at a higher BIC without its parameters); on data where every
  node is intervened on, none does. ``without_regimes`` gives them weight 0: its
  posterior is the numpy one under the renormalised prior, and the ARI does not fall."""
  from scipy.special import log_softmax, logsumexp
  from vcm_jax import identifiability, scm as scm_lib
  adj = np.array([[0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1], [0, 0, 0, 0]])
  true = scm_lib.sample_linear_scm(jax.random.key(0), jnp.asarray(adj), shift=6.0)
  x, r = (np.asarray(a) for a in scm_lib.sample_data(jax.random.key(1), true, 3000))
  cfg = FitConfig(num_steps=300, mechanism="linear")
  part = np.isin(r, [0, 1, 2])
  every = x[:part.sum()]  # (as many rows: one compiled program for both fits)
  summary, line = diagnose.unsupported_regimes(
      vcm_jax.fit(every, adj, key=jax.random.key(0), config=cfg), every)
  assert summary["supported"] and summary["regimes_not_paying"] == [] and line is None
  x, r = x[part], r[part]
  fit = vcm_jax.fit(x, adj, key=jax.random.key(0), config=cfg)
  summary, line = diagnose.unsupported_regimes(fit, x, names=list("ABCD"))
  dropped = summary["regimes_not_paying"]
  assert summary["supported"] and sorted(d["regime"] for d in dropped) == [3, 4], dropped
  assert sorted(tuple(d["targets"]) for d in dropped) == [("C",), ("D",)], dropped
  assert all(d["bic_gain"] > 0 for d in dropped) and line.startswith("regimes "), line
  emptied = fit.without_regimes([3, 4])
  ll = np.asarray(fit.regime_log_likelihoods(x), np.float64)
  prior = np.asarray(fit.model.log_prior(fit.result.params), np.float64)
  prior[[3, 4]] = -np.inf
  want = log_softmax(ll + prior - logsumexp(prior), axis=1)
  np.testing.assert_allclose(emptied.posterior(x), np.exp(want), atol=1e-4)
  np.testing.assert_allclose(emptied.log_prob(x), logsumexp(ll + prior - logsumexp(prior), axis=1),
                             rtol=1e-5)
  assigned = np.asarray(emptied.assign(x))
  assert not np.isin(assigned, [3, 4]).any()
  before = metrics.adjusted_rand_index(r, np.asarray(fit.assign(x)), 5, 5)
  after = metrics.adjusted_rand_index(r, assigned, 5, 5)
  assert float(after) >= float(before) - 1e-6 and float(after) > 0.97, (before, after)
  with pytest.raises(ValueError, match="observational"):
    fit.without_regimes([fit.observational])
  # Its parameter count leaves out what only they used; its BIC rises by their gains.
  owned = diagnose.owned_parameters(fit)
  assert emptied.n_parameters() == fit.n_parameters() - owned[3] - owned[4]
  np.testing.assert_allclose(emptied.bic(x) - fit.bic(x), sum(d["bic_gain"] for d in dropped),
                             rtol=1e-3)
  # The verdict stands, the regimes said beside it.
  entry = identifiability.given_support({"verdict": "identified", "why": "w"}, summary)
  assert entry["verdict"] == "identified" and entry["regimes_not_paying"] == [3, 4]


def test_regimes_that_do_not_pay_for_their_parameters_are_said():
  """Data from one regime still get the single-target latent's N + 1 regimes; the fit's
  BIC then falls below that of its own observational mechanisms alone scoring every row
  (``diagnose.unsupported_regimes``), and the run says so. Regimes that shift each node
  by 4 sd pay many times over. The per-regime likelihoods are those of ``log_prob``."""
  from vcm_jax import predict, scm
  adj = np.array([[0, 1, 0], [0, 0, 1], [0, 0, 0]])
  true = scm.sample_linear_scm(jax.random.key(0), jnp.asarray(adj), shift=4.0)
  x, r = (np.asarray(a) for a in scm.sample_data(jax.random.key(1), true, 9000))
  shifted, one = x[:1500], x[r == 0][:1500]
  assert len(one) == 1500
  cfg = FitConfig(num_steps=300, mechanism="linear")
  found = {}
  for name, data in (("shifted", shifted), ("one", one)):
    fit = vcm_jax.fit(data, adj, key=jax.random.key(0), config=cfg)
    found[name] = diagnose.unsupported_regimes(fit, data)
    ll = predict.regime_log_likelihoods(fit.model, fit.result, data, fit.parent_idx,
                                        fit.parent_mask)
    log_px = jax.scipy.special.logsumexp(ll + fit.model.log_prior(fit.result.params), axis=1)
    np.testing.assert_allclose(log_px, fit.log_prob(data), atol=1e-4)
    summary = found[name][0]
    np.testing.assert_allclose(summary["bic"], fit.bic(data), rtol=1e-6)
    np.testing.assert_allclose(summary["log_px_observational_alone"],
                               float(ll[:, fit.observational].mean()), rtol=1e-6)
    # one SCM: each mechanism's linear weights, intercept and scale (2 + 3 + 3)
    assert summary["n_parameters_observational_alone"] == 8
  (summary, line), (summary_one, line_one) = found["shifted"], found["one"]
  assert summary["supported"] and line is None
  assert summary["bic"] - summary["bic_observational_alone"] > 1000, summary
  assert not summary_one["supported"], summary_one
  assert line_one.startswith("the regimes do not pay for their parameters"), line_one
  # The verdict on such a fit is insufficient (both doors: identifiability.given_support).
  from vcm_jax import identifiability
  entry = {"verdict": "identified", "why": "one regime differs from every other in one"}
  assert identifiability.given_support(entry, summary) is entry
  said = identifiability.given_support(entry, summary_one)
  assert said["verdict"] == "insufficient" and said["regimes_read_as"] == "identified"
  assert "do not pay for their parameters" in said["why"] and entry["why"] in said["why"]


def test_a_fit_in_the_swapped_reading_is_brought_back_by_the_swap_starts():
  """``choose.swap_starts`` on X -> Y with do(X) moving X by 6 sd and do(Y) shifting Y by 6
  (a new-user tour's case, linear): one start of the single-target fit ends with the
  do(Y) rows as its observational regime and the observational rows as "do(Y)" (a
  shared line through both shifted clouds, noise sd about 1.4 for 1); continued from the
  start that swaps them back, the fit reads the regimes right, at a higher log p(x), and
  says which start it kept. Run again on that fit, the swap starts end lower and the fit
  is kept as it is."""
  rng = np.random.default_rng(0)
  labels = np.repeat([0, 1, 2], [600, 700, 700])  # observational, do(X), do(Y)
  x0 = rng.normal(size=len(labels)) + 6.0 * (labels == 1)
  x1 = 0.8 * x0 + rng.normal(size=len(labels)) + 6.0 * (labels == 2)
  x = np.column_stack([x0, x1]).astype(np.float32)
  fit = vcm_jax.fit(x, np.array([[0, 1], [0, 0]]), key=jax.random.key(0), config=dict(
      mechanism="linear", num_steps=400, pooled_steps=50, restarts=1))
  observational = lambda f: (np.asarray(f.assign(x))[labels == 0] == 0).mean()
  ari = lambda f: float(metrics.adjusted_rand_index(labels, np.asarray(f.assign(x)), 3, 3))
  assert observational(fit) < 0.1 and ari(fit) > 0.9  # the premise: the swapped reading
  back, record = choose.swap_starts(jax.random.key(1), fit, x, 1e-3, ["X", "Y"])
  assert record["kept"] == "Y" and set(record["log_px"]) == {"X", "Y"}, record
  assert back.score(x) > fit.score(x) + 0.1, (back.score(x), fit.score(x))
  assert observational(back) > 0.9 and ari(back) > 0.9
  same, again = choose.swap_starts(jax.random.key(1), back, x, 1e-3, ["X", "Y"])
  assert same is back and again["kept"] is None
  assert max(again["log_px"].values()) < again["fit_log_px"], again
