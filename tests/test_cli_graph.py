"""The own-data run (configs/csv.py, as the command runs it: experiments.driver.run)
without a graph file learns the graph (graph.csv, graph.png, metrics.json's
graph_learning); with graph.search=repair it mends a given one. (In this process, no
command start-up per run; the command's own handling of a config error, one line and no
traceback, is tested with the CLI in tests/test_own_data_sharding.py and
tests/test_sharding.py.)"""
import json
import logging
import os

import numpy as np
import pytest

NAMES = ["A", "B", "C", "D"]
# A -> B, A -> C, B -> D, C -> D: a diamond (its collider at D orients it).
TRUE = np.array([[0, 1, 1, 0], [0, 0, 0, 1], [0, 0, 0, 1], [0, 0, 0, 0]])
SMALL = {"train.num_steps": 200, "train.checkpoint_every": 0, "model.mechanism": "linear",
         "selection.decoders": "structured", "selection.noises": "gauss",
         "selection.scales": "constant", "selection.yardstick": False,
         "selection.screen": False,
         # (a verdict, tested in tests/test_mixture_scm.py; here the graph and its files)
         "selection.free_target_screen": False}


@pytest.fixture(scope="module")
def data_csv(tmp_path_factory):
  """A linear SCM on TRUE, one mean-shift intervention per node, written as a CSV with
  named columns and the true regime (``regime``: scored, never fitted). Edge weights |w|
  in [0.3, 0.6]: with strong edges (|w| near 1 against shifts of 10) structural EM from
  the empty graph (its start until 2026-12-02) could stop in a complete DAG. Shifts of 4:
  regimes that overlap (Bayes ceiling 0.918), so that the ARI threshold below can fail.
  Returns the path and the Bayes ceiling (the exact posterior's ARI under the true SCM)."""
  import jax
  import jax.numpy as jnp

  from vcm_jax import metrics, scm
  true = scm.sample_linear_scm(jax.random.key(1), jnp.asarray(TRUE), noise_low=0.5,
                               noise_high=1.5, weight_low=0.3, weight_high=0.6, shift=4.0)
  x, r = scm.sample_data(jax.random.key(11), true, 1500)
  ceiling = float(metrics.adjusted_rand_index(r, scm.true_posterior(true, x).argmax(1), 5))
  path = tmp_path_factory.mktemp("data") / "data.csv"
  np.savetxt(path, np.column_stack([np.asarray(x), np.asarray(r)]), delimiter=",",
             header=",".join(NAMES + ["regime"]), comments="", fmt="%.6g")
  return str(path), ceiling


def _config(**overrides):
  """configs/csv.py with SMALL and ``overrides`` (``group.key``: value), as the command's
  ``--config.group.key=value`` flags set them."""
  from configs import csv as csv_config
  config = csv_config.get_config()
  for name, value in {**SMALL, **overrides}.items():
    group, key = name.split(".")
    config[group][key] = value
  return config


def _run(caplog, workdir, **overrides):
  """The run's summary and its log (the command's INFO lines)."""
  from experiments import driver
  caplog.clear()
  with caplog.at_level(logging.INFO):
    returned = driver.run(_config(**overrides), str(workdir))
  with open(os.path.join(workdir, "metrics.json")) as f:
    written = json.load(f)
  # What the entry returns (experiments/bench_cases.py reads it) is what it wrote.
  assert json.loads(json.dumps(returned["summary"], default=float)) == written["summary"]
  return written["summary"], caplog.text


def _read_graph(workdir):
  from vcm_jax import io
  with open(os.path.join(workdir, "graph.csv")) as f:
    assert f.readline().strip() == "source,target"
  return io.read_graph(os.path.join(workdir, "graph.csv"), NAMES)  # readable as an input


def _skeleton_shd(a, b):
  a, b = (np.asarray(m) != 0 for m in (a, b))
  return int(np.triu((a | a.T) != (b | b.T)).sum())


def test_learns_the_graph_without_a_graph_file_and_repairs_a_given_one(data_csv, tmp_path,
                                                                        caplog):
  """The graph learned with the regimes (structural EM, exact E-step: ``vcm_jax.fit(x)``
  runs the same ``learn.learn_graph`` and ``choose.fit_default``) is the true one and its
  regimes are at the Bayes ceiling; a graph missing an edge is repaired, the change said
  with its positive score gain."""
  path, ceiling = data_csv
  learned_dir = tmp_path / "learned"
  summary, log = _run(caplog, learned_dir, **{"data.path": path, "data.labels": "regime"})
  adj = _read_graph(learned_dir)
  np.testing.assert_array_equal(adj, TRUE)
  assert summary["labels"]["ari"] > ceiling - 0.03, (summary["labels"]["ari"], ceiling)
  assert os.path.getsize(learned_dir / "graph.png") > 0
  learning = summary["graph_learning"]
  assert learning["search"] == "learn" and "changes" not in learning
  assert learning["rounds"][0]["n_edges"] > 0  # from the mixture's graph, not the empty one
  assert {(e["source"], e["target"]) for e in learning["edges"]} == \
      {(NAMES[i], NAMES[j]) for i, j in np.argwhere(adj)}
  assert log.count("graph search round") == len(learning["rounds"])
  refined = learning["refined"]  # structural EM under the regime model, from the search's graph
  assert np.isfinite(refined["start_bic"]) and isinstance(refined["kept"], bool), refined
  # its regime model: the noise family and scale model the default's first stage chooses
  assert refined["e_step"]["noise"] in ("gauss", "student_t"), refined
  assert ("graph refined by structural EM" in log) == bool(refined["rounds"]), refined

  # Repair: a given graph missing A -> C gets it back, reported as a change with its gain.
  given = tmp_path / "missing.csv"
  given.write_text("source,target\nA,B\nB,D\nC,D\n")
  repaired_dir = tmp_path / "repaired"
  summary, log = _run(caplog, repaired_dir, **{"data.path": path, "data.graph": str(given),
                                                "data.labels": "regime",
                                                "graph.search": "repair"})
  adj = _read_graph(repaired_dir)
  assert adj[0, 2] == 1 and _skeleton_shd(adj, TRUE) == 0, adj
  changes = summary["graph_learning"]["changes"]
  added = [c for c in changes if (c["change"], c["source"], c["target"]) == ("added", "A", "C")]
  assert added and added[0]["gain"] > 0, changes
  assert "graph change from the given graph: added A -> C" in log
  # round 0 is the given graph scored: its edges are not listed as added (they had been)
  first = summary["graph_learning"]["rounds"][0]
  assert first["n_edges"] == 3 and first["added"] == first["removed"] == first["reversed"] == []
  repair = summary["graph_learning"]["repair"]  # which E-step, and why, said and recorded
  assert f"graph repair with the {repair['latent']} latent: {repair['why']}" in log
  if "bic_free_target" in repair:  # the check failed on the given graph: the higher BIC's
    want = ("free-target" if repair["bic_free_target"] > repair["bic_single_target"]
            else "single-target")
    assert repair["latent"] == want and "check fails" in repair["why"], repair
  else:  # the check held: the single-target fit's posterior
    assert repair["latent"] == "single-target" and "fit every regime" in repair["why"], repair
  assert os.path.getsize(repaired_dir / "graph.png") > 0


def test_unknown_graph_search_is_one_line_error(data_csv, tmp_path):
  from experiments import driver
  with pytest.raises(driver.UserError) as err:
    driver.run(_config(**{"data.path": data_csv[0], "graph.search": "guess"}),
               str(tmp_path / "out"))
  assert "config: graph.search='guess' is not one of learn, repair" in str(err.value)
  assert "\n" not in str(err.value)
  assert not (tmp_path / "out").exists()


@pytest.mark.fast
def test_bad_graph_settings_are_one_line_errors_before_any_work(data_csv, tmp_path):
  from experiments import driver
  import vcm_jax
  for key, value, least in (("graph.max_rounds", 0, 1), ("graph.max_parents", -2, 0)):
    with pytest.raises(driver.UserError) as err:
      driver.run(_config(**{"data.path": data_csv[0], key: value}), str(tmp_path / "out"))
    assert str(err.value) == f"config: {key}={value} must be an integer >= {least}"
    assert not (tmp_path / "out").exists()
  x = np.loadtxt(data_csv[0], delimiter=",", skiprows=1)[:, :4]
  with pytest.raises(ValueError, match="graph_search='none' fits a given graph: give one"):
    vcm_jax.fit(x, graph_search="none")


@pytest.mark.fast
def test_no_orientation_stands_where_the_regimes_do_not_pay():
  """One regime's rows cannot orient an edge: where the fit's regimes do not pay for their
  parameters, every learned edge is undecided, saying why; otherwise nothing changes."""
  from vcm_jax import learn
  learned = {"edges": [{"source": "Y", "target": "X", "oriented": True},
                       {"source": "Y", "target": "Z", "oriented": False}], "rounds": []}
  assert learn.given_support(learned, {"supported": True}) is learned
  assert learn.given_support(learned, None) is learned
  out = learn.given_support(learned, {"supported": False})
  assert [e["oriented"] for e in out["edges"]] == [False, False]
  assert "one regime's rows cannot orient an edge" in out["edges"][0]["undecided_why"]
  assert "undecided_why" not in out["edges"][1] and "orientations_withdrawn" in out
  assert learned["edges"][0]["oriented"]  # (the record given is left as it was)
  # The verdict names the edges the data leave unoriented.
  from vcm_jax import identifiability
  entry = identifiability.given_graph({"verdict": "identified", "why": "w"}, out)
  assert entry["verdict"] == "identified" and entry["undecided_edges"] == ["Y - X", "Y - Z"]
  assert identifiability.given_graph(entry, None) is entry



@pytest.mark.fast
def test_the_commands_verdict_names_dropped_regimes_in_regimes_json_ids():
  from experiments import own_data
  support = {"supported": True, "regimes_not_paying": [{"regime": 0, "rows": 3},
                                                       {"regime": 4, "rows": 0}]}
  order = [2, 0, 1, 3, 4]  # new id -> fitted regime: the observational (2) first
  out = own_data.renumbered(support, order)
  assert [d["regime"] for d in out["regimes_not_paying"]] == [1, 4]
  assert support["regimes_not_paying"][0]["regime"] == 0  # (the summary given is unchanged)
  assert own_data.renumbered({"supported": False}, order) == {"supported": False}


@pytest.mark.fast
def test_the_reorient_record_says_whether_the_graph_returned_has_each_reversal():
  """A reversal ``reorient`` kept and a later stage undid reads ``reversed_in_graph``
  False; one the graph returned has, True; the learned graph's own entry has none."""
  from vcm_jax import learn
  tried = [{"edge": None, "bic": -10.0}, {"edge": [0, 1], "bic": -5.0},
           {"edge": [1, 2], "bic": -7.0}]
  adj = np.array([[0, 1, 0], [0, 0, 0], [0, 1, 0]])  # A -> B kept, C -> B: B -> C reversed
  out = learn.reorient_record(tried, adj, ["A", "B", "C"])
  assert out[0] == {"edge": None, "bic": -10.0}
  assert out[1]["edge"] == ["A", "B"] and out[1]["reversed_in_graph"] is False
  assert out[2]["edge"] == ["B", "C"] and out[2]["reversed_in_graph"] is True
  assert tried[1]["edge"] == [0, 1]  # (the record given is left as it was)
