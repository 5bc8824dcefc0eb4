"""vcm_jax.fit without a config: the own-data default, with names, the choice and the verdict."""
import dataclasses
import logging

import jax
import jax.numpy as jnp
import networkx as nx
import numpy as np
import pytest

import vcm_jax
from vcm_jax import choose, config as fit_config, metrics, scm

NAMES = ("w", "x", "y", "z")
ADJ = np.array([[0, 1, 0, 1], [0, 0, 1, 0], [0, 0, 0, 1], [0, 0, 0, 0]])
# The default's choice on a test's budget: one noise family, one scale model, two K.
SELECTION = choose.Selection(noises=("gauss",), scales=("constant",), k_candidates=(2, 3))

# The data default with fewer steps (conftest.py): the same code path, a test's budget.
pytestmark = pytest.mark.usefixtures("short_default")


@pytest.fixture(scope="module")
def data():
  true = scm.sample_linear_scm(jax.random.key(0), jnp.asarray(ADJ), shift=6.0)
  x, regimes = scm.sample_data(jax.random.key(1), true, 1500)
  return np.asarray(x), np.asarray(regimes)


@pytest.fixture(scope="module")
def default_fit_and_log(data):
  """The default fit and the lines the library logged at INFO meanwhile."""
  pd = pytest.importorskip("pandas")
  x, _ = data
  graph = nx.DiGraph([(NAMES[i], NAMES[j]) for i, j in zip(*np.nonzero(ADJ))])
  lines, logger = [], logging.getLogger("vcm_jax")
  handler = logging.Handler(logging.INFO)
  handler.emit = lambda record: lines.append(record.getMessage())
  level = logger.level
  logger.addHandler(handler)
  logger.setLevel(logging.INFO)
  try:
    fit = vcm_jax.fit(pd.DataFrame(x, columns=list(NAMES)), graph, selection=SELECTION)
  finally:
    logger.removeHandler(handler)
    logger.setLevel(level)
  return fit, lines


@pytest.fixture(scope="module")
def default_fit(default_fit_and_log):
  return default_fit_and_log[0]


def test_the_default_says_each_long_stage_as_it_starts(default_fit_and_log):
  """After the choice the default's stages log one line each as they start (a run of
  minutes says where it is): gross errors, the yardstick, the free-target screen (here
  the chosen K = 5 and one more, on every row: fewer than the screen's cap)."""
  fit, lines = default_fit_and_log
  starts = [next((i for i, line in enumerate(lines) if line.startswith(stage)), None)
            for stage in ("gross errors", "the yardstick", "free-target screen")]
  assert None not in starts and starts == sorted(starts), lines
  assert f"K = {fit.n_regimes}-{fit.n_regimes + 1} on 1500 rows" in lines[starts[-1]], lines


def test_the_default_recovers_regimes_and_says_what_it_chose(data, default_fit):
  x, regimes = data
  f = default_fit
  ari = metrics.adjusted_rand_index(regimes, np.asarray(f.assign(x)), 5, f.n_regimes)
  assert float(ari) > 0.9, ari
  # The check held on single-target data: the single-target latent, one model fitted.
  assert f.choice.check["holds"] and f.config.decoder == "structured", f.choice.table
  assert f.verdict["verdict"] == "identified", f.verdict
  assert f.names == NAMES
  assert sorted(t for t in f.target_names if t) == [(n,) for n in NAMES]
  # The data default's settings, the stopping rule included.
  assert f.config.num_steps == fit_config.data_default().num_steps
  assert 0 < f.n_iter <= f.config.num_steps and f.converged == (f.n_iter < f.config.num_steps)
  # The Fit's own criteria agree with the choice's table (the same rows).
  row = f.choice.table[0]
  np.testing.assert_allclose(f.bic(x), row["bic"], rtol=1e-5)
  np.testing.assert_allclose(f.icl(x), row["icl"], rtol=1e-5)
  np.testing.assert_allclose(f.score(x), row["log_px"], rtol=1e-5)
  assert f.icl(x) <= f.bic(x)
  assert "identifiability: identified" in f.describe()


def test_on_few_rows_the_mechanisms_are_chosen_by_a_heldout_likelihood(data, default_fit):
  """At most ``capacity_max_rows`` rows: linear or MLP mechanisms by 5-fold held-out
  log p(x) (``vcm_jax.capacity``), the choice made with the winner. A linear SCM on 200
  rows: linear mechanisms (the MLP's weights fit the noise), and the regimes found. On
  the module's 1500 rows the question is not asked (MLP mechanisms, as configured)."""
  x, regimes = data
  f = vcm_jax.fit(x[:200], ADJ, selection=dataclasses.replace(
      SELECTION, yardstick=False, free_target_screen=False))
  asked = f.choice.extra["mechanism_capacity"]
  assert asked["chosen"] == f.config.mechanism == "linear", asked
  held = asked["heldout_log_px"]
  assert held["linear"] > held["mlp"] and asked["folds"] == 5, asked
  ari = metrics.adjusted_rand_index(regimes[:200], np.asarray(f.assign(x[:200])), 5,
                                    f.n_regimes)
  assert float(ari) > 0.8, ari
  assert "mechanism_capacity" not in default_fit.choice.extra
  assert default_fit.config.mechanism == "mlp"


def test_shuffled_graph_nodes_give_the_identical_fit(data):
  """A DataFrame with a graph over its names in another order, and the array with the
  adjacency in column order, reach the fit as the same arrays: the identical fit (one
  small model: what is compared is the input path, the default's own path is above)."""
  pd = pytest.importorskip("pandas")
  x, _ = data
  edges = [(NAMES[i], NAMES[j]) for i, j in zip(*np.nonzero(ADJ))]
  shuffled = nx.DiGraph()
  shuffled.add_nodes_from(sorted(NAMES, reverse=True))
  shuffled.add_edges_from(reversed(edges))
  small = dict(num_steps=30, pooled_steps=10, restarts=1)
  named_fit = vcm_jax.fit(pd.DataFrame(x, columns=list(NAMES)), shuffled, config=small)
  plain = vcm_jax.fit(x, ADJ, config=small)
  np.testing.assert_array_equal(np.asarray(named_fit.assign(x)), np.asarray(plain.assign(x)))
  np.testing.assert_array_equal(named_fit.parent_idx, plain.parent_idx)
  np.testing.assert_array_equal(np.asarray(named_fit.log_prob(x)), np.asarray(plain.log_prob(x)))


def test_named_input_errors_are_one_line(data):
  x, _ = data
  with pytest.raises(ValueError, match="'yy', not in the data") as err:
    vcm_jax.fit(x, [("w", "x"), ("x", "yy")], names=NAMES, selection=SELECTION)
  assert "\n" not in str(err.value)
  with pytest.raises(ValueError, match="no names"):
    vcm_jax.fit(x, nx.DiGraph([("w", "x")]))
  with pytest.raises(ValueError, match="selection= chooses"):
    vcm_jax.fit(x, ADJ, config=dict(num_steps=10), selection=SELECTION)


def test_a_numpy_regime_id_is_range_checked(default_fit):
  with pytest.raises(ValueError, match="not a regime id"):
    default_fit.sample(jax.random.key(0), 3, regime=np.int64(default_fit.n_regimes))
  assert default_fit.sample(jax.random.key(0), 3, regime=np.int32(1)).shape == (3, 4)


def test_above_max_rows_the_subset_fit_is_continued_not_refitted(data, default_fit, caplog):
  """The choice on 600 of 1500 rows; the chosen fit then continues from the subset's
  parameters on every row (one start, a short run) and reaches the likelihood of the
  fit made on every row from the start."""
  x, regimes = data
  with caplog.at_level(logging.INFO, logger="vcm_jax"):
    f = vcm_jax.fit(x, ADJ, selection=choose.Selection(noises=("gauss",), scales=("constant",),
                                                       k_candidates=(2, 3), max_rows=600,
                                                       yardstick=False,
                                                       free_target_screen=False))
  assert "on 600 rows) continued on every row (1500)" in caplog.text, caplog.text
  assert f.config.decoder == "structured" and f.config.restarts == 1
  assert f.score(x) > default_fit.score(x) - 0.01, (f.score(x), default_fit.score(x))
  ari = metrics.adjusted_rand_index(regimes, np.asarray(f.assign(x)), 5, f.n_regimes)
  assert float(ari) > 0.9, ari


def test_where_the_check_fails_the_chosen_model_is_fitted_again_with_more_starts(
    data, caplog, monkeypatch):
  """A check that fails (thresholds of 0: every cell flagged) sends the chosen model back
  to every row with ``violated_restarts`` starts (the better of it and the first fit is
  kept), and the log says why."""
  x, _ = data
  failing = choose.Selection(decoders=("structured",), noises=("gauss",), scales=("constant",),
                             check_effect=0.0, check_z=0.0, violated_restarts=3,
                             yardstick=False, free_target_screen=False)
  calls, fit_candidates = [], choose.fit_candidates
  monkeypatch.setattr(choose, "fit_candidates", lambda keys, rows, adj, cfgs, *a, **k: (
      calls.append((len(rows), [c.restarts for c in cfgs])) or
      fit_candidates(keys, rows, adj, cfgs, *a, **k)))
  with caplog.at_level(logging.INFO, logger="vcm_jax"):
    f = vcm_jax.fit(x, ADJ, selection=failing)
  assert not f.choice.check["holds"], f.choice.check
  assert calls[-1] == (len(x), [3]) and f.config.restarts in (2, 3), calls
  assert f"({len(x)}) with 3 starts: the first fit's check failed" in caplog.text, caplog.text


def test_a_fit_with_no_finite_start_is_an_error_not_a_result(data):
  """A learning rate that blows every start up: FitError naming the fit, through both
  the one-model path and the default's candidates."""
  x, _ = data
  blown = dict(num_steps=20, pooled_steps=5, restarts=2, learning_rate=1e30)
  x = x[:100] * 1e30
  with pytest.raises(vcm_jax.FitError, match="every start ended with a non-finite"):
    vcm_jax.fit(x, ADJ, config=blown)
  with pytest.raises(vcm_jax.FitError, match="candidate"):
    choose.fit_candidates(jax.random.key(0), x, ADJ, [vcm_jax.FitConfig(**blown)])


def test_the_command_gives_the_library_fit(data, default_fit, tmp_path):
  """One answer at both doors: the own-data command (configs/csv.py through
  ``driver.run``, its path) at its default fits every row, as ``vcm_jax.fit`` does,
  with the same seed's numbers: the same model, the same assignments, the same
  log p(x) a row, the same verdict and yardstick."""
  from configs import csv as csv_config
  from experiments import driver
  x, _ = data
  data_path, graph_path = tmp_path / "data.csv", tmp_path / "graph.csv"
  np.savetxt(data_path, x, delimiter=",", header=",".join(NAMES), comments="", fmt="%.9g")
  graph_path.write_text("source,target\n" + "".join(
      f"{NAMES[i]},{NAMES[j]}\n" for i, j in zip(*np.nonzero(ADJ))))
  config = csv_config.get_config()
  config.data.path, config.data.graph = str(data_path), str(graph_path)
  assert config.data.heldout_fraction == 0
  config.selection.noises, config.selection.scales = "gauss", "constant"
  config.selection.k_candidates = (2, 3)
  config.plots = False
  workdir = tmp_path / "run"
  summary = driver.run(config, str(workdir))["summary"]
  assert summary["n_fitted"] == len(x) and summary["heldout_loglik"] is None
  import pandas as pd
  assigned = pd.read_csv(workdir / "assignments.csv")
  assert summary["n_regimes"] == default_fit.n_regimes, summary
  np.testing.assert_array_equal(assigned["regime"].to_numpy(), np.asarray(default_fit.assign(x)))
  np.testing.assert_allclose(summary["train_log_px"], default_fit.score(x), rtol=1e-5)
  # and they say the same thing: the verdict (after the free-target screen) and the yardstick
  assert summary["identifiability"] == default_fit.verdict["verdict"], summary
  assert summary["model_selection"]["yardstick"] == default_fit.choice.extra["yardstick"]
