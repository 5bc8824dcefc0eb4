"""Verdicts of vcm_jax.identifiability on the paper's Figure 2 cases, worked out by hand.

X1 -> X2. A regime is a version per mechanism; two regimes' divergence on a
mechanism is 1 where their versions differ. Under the two assumptions (one
mechanism per intervention, each mechanism intervened at most once):
(a) obs, do(X1), do(X2 | X1): only obs differs from each other regime in one
    mechanism, each its own -> identified, candidate obs.
(b) (a) + a regime changing both: from obs it changes two; from do(X1) the
    do(X2) regime changes two; ... no candidate -> violated (the both-regime).
(c) obs, two different do(X1), do(X2): obs differs from each in one mechanism,
    but X1 is changed twice -> violated (X1 changed by several regimes).
Two regimes differing in one mechanism: either is the other's reference -> ambiguous.
"""
import jax.numpy as jnp
import numpy as np
import pytest

from vcm_jax import identifiability, identify

pytestmark = pytest.mark.fast  # every test here is fast

NAMES = ["X1", "X2"]
CHAIN = np.array([[0, 1], [0, 0]])


def _divergence(versions):
  v = np.asarray(versions)
  return (v[:, None, :] != v[None, :, :]).astype(float)


@pytest.mark.parametrize("versions,verdict,cands,multi,several", [
    ([(0, 0), (1, 0), (0, 1)], "identified", [0], [], []),
    ([(0, 0), (1, 0), (0, 1), (1, 1)], "violated", [], [3], ["X1", "X2"]),
    ([(0, 0), (1, 0), (2, 0), (0, 1)], "violated", [], [], ["X1"]),
    ([(0, 0), (1, 0)], "ambiguous", [0, 1], [], []),
])
def test_figure_2_cases(versions, verdict, cands, multi, several):
  out = identifiability.verdict(_divergence(versions), np.ones(len(versions)), CHAIN, NAMES)
  assert out["verdict"] == verdict, out
  assert out["candidates"] == cands
  assert out["multi_target_regimes"] == multi
  assert out["mechanisms_changed_by_several"] == several
  assert out["why"]


def test_empty_regimes_take_no_part():
  versions = [(0, 0), (1, 0), (0, 1), (1, 1)]
  out = identifiability.verdict(_divergence(versions), np.array([5, 5, 5, 0]), CHAIN, NAMES)
  assert out["verdict"] == "identified" and out["candidates"] == [0]


@pytest.mark.parametrize("versions,sizes,verdict,cands,same_as", [
    # case (a) and a 1-row regime whose mechanisms match obs's: read as obs (it read
    # "violated": it differs from obs in no mechanism, not in one)
    ([(0, 0), (1, 0), (0, 1), (0, 0)], [5, 5, 5, 1], "identified", [0], {3: 0}),
    # the larger of the two is kept, whatever its index
    ([(0, 0), (1, 0), (0, 1), (0, 0)], [1, 5, 5, 5], "identified", [3], {0: 3}),
    # a twin of do(X1): still one candidate
    ([(0, 0), (1, 0), (0, 1), (1, 0)], [5, 5, 5, 2], "identified", [0], {3: 1}),
    # twins of each other and of nothing else: case (b) stays violated
    ([(0, 0), (1, 0), (0, 1), (1, 1), (1, 1)], [5, 5, 5, 5, 1], "violated", [], {4: 3}),
])
def test_a_regime_that_differs_from_another_in_no_mechanism_is_read_as_it(
    versions, sizes, verdict, cands, same_as):
  """Physical report seed 101: a single-target fit put 1 row in do(X9), whose mechanism
  had not moved from the observational one, and the verdict read "violated" (no regime
  differed from it in one mechanism) on single-target data."""
  out = identifiability.verdict(_divergence(versions), np.array(sizes), CHAIN, NAMES)
  assert out["verdict"] == verdict, out
  assert out["candidates"] == cands and out["same_as"] == same_as
  assert "differ in no mechanism" in out["why"]
  if verdict == "identified":  # a twin is no second regime changing the same mechanism
    assert out["mechanisms_changed_by_several"] == [] and out["multi_target_regimes"] == []


def test_regimes_that_all_differ_in_nothing_are_insufficient():
  out = identifiability.verdict(_divergence([(0, 0), (0, 0), (0, 0)]), np.ones(3), CHAIN,
                                NAMES)
  assert out["verdict"] == "insufficient" and "differ in no mechanism" in out["why"], out


def test_a_dropped_edge_and_a_reversed_edge_are_named():
  """do(X1) moves X2 as a model without the edge X1 -> X2 sees it: the X1 regime changes
  both, do(X2) only X2 -> missing edge X1 -> X2. With the edge given as X2 -> X1, both
  regimes change both mechanisms -> the given edge X2 -> X1 is suspected reversed."""
  dropped = identifiability.verdict(_divergence([(0, 0), (1, 1), (0, 2)]), np.ones(3),
                                    np.zeros((2, 2), int), NAMES)
  assert dropped["verdict"] == "violated"
  assert dropped["suspected_missing_edges"] == [["X1", "X2"]]
  assert dropped["suspected_reversed_edges"] == []
  reversed_ = identifiability.verdict(_divergence([(0, 0), (1, 1), (2, 2)]), np.ones(3),
                                      np.array([[0, 0], [1, 0]]), NAMES)
  assert reversed_["suspected_reversed_edges"] == [["X2", "X1"]]
  assert reversed_["suspected_missing_edges"] == []


def test_missing_edge_named_whatever_the_given_order():
  """Given graph X2 -> X3 only (so X2 may come before X1 in its order); the dropped edge
  X1 -> X2: do(X1) changes X1 and X2, do(X2) only X2 -> missing X1 -> X2, never X2 -> X1."""
  names = ["X1", "X2", "X3"]
  given = np.array([[0, 0, 0], [0, 0, 1], [0, 0, 0]])
  v = np.array([(0, 0, 0), (1, 1, 0), (0, 2, 0), (0, 0, 1)])
  out = identifiability.verdict((v[:, None] != v[None]).astype(float), np.ones(4), given, names)
  assert out["suspected_missing_edges"] == [["X1", "X2"]]


def test_a_misfit_the_fit_cannot_show_makes_the_verdict_violated():
  """A single-target fit of case (a) without the edge: its mechanisms say do(X1) changes
  X1 only (identified), but the check finds do(X1)'s rows misfit the shared X2: the
  verdict is that of the dropped-edge case above, with the misfit named."""
  divergence, no_edge = _divergence([(0, 0), (1, 0), (0, 1)]), np.zeros((2, 2), int)
  plain = identifiability.verdict(divergence, np.ones(3), no_edge, NAMES)
  assert plain["verdict"] == "identified"
  misfit = np.array([[0, 0], [0, 1], [0, 0]], bool)  # regime 1's rows at X2
  out = identifiability.verdict(divergence, np.ones(3), no_edge, NAMES, shared_misfit=misfit)
  assert out["verdict"] == "violated" and out["multi_target_regimes"] == [1]
  assert out["suspected_missing_edges"] == [["X1", "X2"]]
  assert out["shared_mechanism_misfit"] == [[1, "X2"]] and "misfit" in out["why"]
  assert out["misfit_counted"] and not plain["misfit_counted"]
  # A model choice that found the misfit not worth another mechanism: reported, not
  # counted, and the verdict that of the fit's mechanisms.
  kept = identifiability.verdict(divergence, np.ones(3), no_edge, NAMES, shared_misfit=misfit,
                                 misfit_confirmed=False)
  assert kept["verdict"] == "identified" and kept["candidates"] == plain["candidates"]
  assert kept["shared_mechanism_misfit"] == [[1, "X2"]] and not kept["misfit_counted"]
  assert "not counted" in kept["why"] and kept["suspected_missing_edges"] == []


def test_identify_and_the_verdict_pick_one_reference():
  """One rule (``identify.reference_regime``) for both. Figure 2(b) with the regime that
  changes both mechanisms small and listed first: J (1, 1), A (1, 0), B (0, 1), O (0, 0).
  Counted over the regimes, every regime changes 4 mechanisms against the others, and
  the verdict's old rule (fewest, then the lowest index) took J; identify's (the
  changes beyond the first, weighted by size) took O: every other regime differs from O
  in one mechanism but J, the smallest."""
  versions = np.array([(1, 1), (1, 0), (0, 1), (0, 0)], float)
  weights = np.array([0.04, 0.36, 0.32, 0.28])
  scale = np.ones_like(versions)
  ident = identify.identify_regimes(jnp.asarray(versions), jnp.asarray(scale),
                                    jnp.asarray(weights), structured=False)
  divergence = np.asarray(identify.mechanism_divergence(versions, scale))
  out = identifiability.verdict(divergence, weights, CHAIN, NAMES)
  assert int(ident.observational) == out["reference"] == 3, out
  assert out["multi_target_regimes"] == [0]
  # Any evidence: the two agree.
  rng = np.random.default_rng(0)
  for _ in range(20):
    mean = rng.integers(0, 3, (4, 2)).astype(float)
    w = rng.choice([0.0, 1.0, 2.0, 5.0], 4)
    w[:2] += 1.0  # at least two regimes hold rows
    ident = identify.identify_regimes(jnp.asarray(mean), jnp.asarray(scale),
                                      jnp.asarray(w / w.sum()), structured=False)
    out = identifiability.verdict(np.asarray(identify.mechanism_divergence(mean, scale)), w,
                                  CHAIN, NAMES)
    assert int(ident.observational) == out["reference"], (mean, w, out)


@pytest.mark.parametrize("sizes,why", [
    ([5, 0, 0], "1 regime(s) hold rows"),
    ([0, 0, 0], "0 regime(s) hold rows"),
    ([5, np.nan, 5], "not finite"),
])
def test_a_degenerate_fit_is_insufficient(sizes, why):
  """Fewer than two regimes holding rows (one alone read "identified": it differs from
  no other), or NaN sizes: nothing to judge."""
  out = identifiability.verdict(_divergence([(0, 0), (1, 0), (0, 1)]), np.array(sizes), CHAIN,
                                NAMES)
  assert out["verdict"] == "insufficient" and why in out["why"], out
  assert out["reference"] is None and out["candidates"] == [] and not out["misfit_counted"]


def test_a_nan_divergence_is_insufficient():
  """A NaN compares as False: the change it hides read as none. Here regime 2 changes
  X1 again (violated); with its X1 against regime 0 NaN, it read "identified"."""
  divergence = _divergence([(0, 0), (1, 0), (2, 1)])
  divergence[0, 2, 0] = divergence[2, 0, 0] = np.nan
  out = identifiability.verdict(divergence, np.ones(3), CHAIN, NAMES)
  assert out["verdict"] == "insufficient" and "not finite" in out["why"], out


def _censored_fit(lower, upper, loc, scale):
  """What ``pinned_rows`` and the screen read of a fit: its censoring bounds (the fit's
  units) and its units."""
  from types import SimpleNamespace
  params = {"censor_lower": jnp.asarray(lower, jnp.float32),
            "censor_upper": jnp.asarray(upper, jnp.float32)}
  return SimpleNamespace(result=SimpleNamespace(params=params, loc=jnp.asarray(loc),
                                                scale=jnp.asarray(scale)))


def test_rows_at_a_censoring_bound_are_found_in_data_units():
  fit = _censored_fit([-1.0, -np.inf], [np.inf, 2.0], [10.0, 0.0], [2.0, 0.5])
  # data-unit bounds: column 0 floored at 10 - 2 = 8, column 1 capped at 0 + 1 = 1
  x = np.array([[8.0, 0.0], [8.5, 0.0], [9.0, 1.0], [7.9, 0.5], [9.0, 0.99]])
  np.testing.assert_array_equal(identifiability.pinned_rows(fit, x),
                                [True, False, True, True, False])
  uncensored = _censored_fit([-1.0], [1.0], [0.0], [1.0])
  del uncensored.result.params["censor_lower"]
  assert not identifiability.pinned_rows(uncensored, x).any()


def test_the_screen_leaves_pinned_rows_out_and_skips_when_too_few_are_left():
  """A Gaussian rival scores a pinned reading as a density, the fit as a probability:
  those rows are not compared, and with fewer than ``SCREEN_MIN_ROWS`` left the screen
  does not run (the verdict stays, the record says why)."""
  fit = _censored_fit([0.0, -np.inf], [np.inf, np.inf], [0.0, 0.0], [1.0, 1.0])
  x = np.random.default_rng(0).normal(size=(1000, 2))
  x[:, 0] = np.maximum(x[:, 0], 0.0)  # half the rows pinned at the floor
  entry = {"verdict": "identified", "why": "one regime differs"}
  import jax
  out = identifiability.free_target_screen(jax.random.key(0), fit, x, entry)
  assert out["verdict"] == "identified"
  assert "rows have no reading at a censoring bound" in out["free_target_rival"]["skipped"]


def test_the_screen_does_not_run_above_its_cost_limit(monkeypatch):
  """A fit whose rival would be mixtures of K + 1 components in N variables with
  (K + 1) N^2 above ``SCREEN_MAX_COST`` is not screened (the verdict stays, the record
  says why, the rival is never fitted); one exactly at the limit is."""
  from types import SimpleNamespace

  import jax

  from vcm_jax import learn
  fitted = []

  def rival(key, x, **kwargs):  # stands in for the search: a record that the screen ran
    fitted.append(x.shape)
    raise RuntimeError("rival fitted")

  monkeypatch.setattr(learn, "free_target_search", rival)
  entry = {"verdict": "identified", "why": "one regime differs"}
  x = np.random.default_rng(0).normal(size=(600, 10))

  def fit_of(n_regimes):  # an uncensored fit on the empty 10-node graph
    return SimpleNamespace(parent_idx=np.zeros((10, 1), np.int32),
                           parent_mask=np.zeros((10, 1), bool), n_regimes=n_regimes,
                           weights=np.full(n_regimes, 1.0 / n_regimes),
                           result=SimpleNamespace(params={}))

  at_limit = identifiability.SCREEN_MAX_COST // 100 - 1  # (K + 1) 10^2 == the limit
  assert (at_limit + 1) * 100 == identifiability.SCREEN_MAX_COST
  out = identifiability.free_target_screen(jax.random.key(0), fit_of(at_limit + 1), x, entry)
  assert out["verdict"] == "identified" and not fitted
  assert "above SCREEN_MAX_COST" in out["free_target_rival"]["skipped"]
  out = identifiability.free_target_screen(jax.random.key(0), fit_of(at_limit), x, entry)
  assert fitted == [(600, 10)] and out["free_target_rival"]["failed"] == "rival fitted"


@pytest.mark.fast
def test_the_screens_starts_shrink_with_its_cost_above_the_full_cost():
  """16 starts up to ``SCREEN_FULL_COST``, then 16 x full / cost rounded down, at least
  ``SCREEN_MIN_RESTARTS`` (the 30000 x 30 bench's 28800: 5)."""
  full = identifiability.SCREEN_FULL_COST
  assert identifiability.screen_restarts(1) == 16
  assert identifiability.screen_restarts(full) == 16
  assert identifiability.screen_restarts(full + 1) == 15
  assert identifiability.screen_restarts(2 * full) == 8
  assert identifiability.screen_restarts(28800) == 16 * full // 28800 == 5
  assert identifiability.screen_restarts(identifiability.SCREEN_MAX_COST) == 4
  assert identifiability.SCREEN_MIN_RESTARTS == 4


def test_unpinned_rows_skip_only_where_rows_were_left_out():
  """Small data with no pinned reading are compared whatever their size (the yardstick
  ran on every data set before rows were left out); where pinned rows leave fewer than
  ``SCREEN_MIN_ROWS``, the record says why nothing is compared."""
  x = np.random.default_rng(0).normal(size=(100, 2))
  uncensored = _censored_fit([-1.0], [1.0], [0.0], [1.0])
  del uncensored.result.params["censor_lower"]
  kept, record = identifiability.unpinned_rows(uncensored, x)
  assert len(kept) == 100 and "skipped" not in record and record["log_share_kept"] == 0.0
  floored = _censored_fit([0.0, -np.inf], [np.inf, np.inf], [0.0, 0.0], [1.0, 1.0])
  kept, record = identifiability.unpinned_rows(floored, np.maximum(x, 0.0))
  assert record["rows_pinned_left_out"] == int((x[:, 0] <= 0).sum()) == 100 - len(kept)
  assert "fewer than" in record["skipped"]
  np.testing.assert_allclose(record["log_share_kept"], np.log(len(kept) / 100))
