"""vcm_jax.fit and Fit: the public API, its one-line errors, and fits that vmap in one call."""
import functools

import jax
import jax.numpy as jnp
import networkx as nx
import numpy as np
import pytest

import vcm_jax
from vcm_jax import config as config_lib
from vcm_jax import graphs, metrics, scm, train

N = 4
CFG = vcm_jax.FitConfig(num_steps=150, pooled_steps=50, batch_size=500, restarts=1, hidden=(4,))
ADJ = np.array([[0, 1, 1, 0], [0, 0, 0, 1], [0, 0, 0, 1], [0, 0, 0, 0]])


@functools.cache
def _data(shift=8.0, n=3000, seed=0, scale=1.0, offset=0.0):
  true = scm.sample_linear_scm(jax.random.key(seed), jnp.asarray(ADJ), shift=shift)
  x, r = scm.sample_data(jax.random.key(seed + 1), true, n)
  return true, np.asarray(x) * scale + offset, np.asarray(r)


@functools.cache
def structured_fit():
  """The structured fit of ``_data()`` (also read by tests/test_own_data_scale.py)."""
  return vcm_jax.fit(_data()[1], ADJ, key=jax.random.key(0), config=CFG)


@functools.cache
def free_fit():
  """The free decoder's fit of ``_data()`` (also read by tests/test_own_data_scale.py)."""
  cfg = CFG.replace(decoder="free", n_regimes=N + 1, num_steps=300)
  return vcm_jax.fit(_data()[1], ADJ, key=jax.random.key(1), config=cfg)


@pytest.fixture(scope="module")
def fitted():
  true, x, r = _data()
  return structured_fit(), true, x, r


def test_fit_answers_in_data_units(fitted):
  fit, true, x, r = fitted
  assert fit.n_regimes == N + 1 and fit.observational == 0
  assert fit.targets == [(), (0,), (1,), (2,), (3,)]
  post = np.asarray(fit.posterior(x))
  assert post.shape == (len(x), N + 1)
  np.testing.assert_allclose(post.sum(1), 1.0, rtol=1e-5)
  assert np.array_equal(np.asarray(fit.assign(x)), post.argmax(1))
  assert float(metrics.adjusted_rand_index(jnp.asarray(r), fit.assign(x), N + 1)) > 0.9
  # Exact log p(x) in data units: within 0.1 nats of the true SCM's.
  gap = float(fit.log_prob(x).mean() - scm.true_log_marginal(true, jnp.asarray(x)).mean())
  assert abs(gap) < 0.1, gap
  # scikit-learn's names give the same answers, as NumPy arrays
  np.testing.assert_array_equal(fit.predict(x[:50]), np.asarray(fit.assign(x[:50])))
  np.testing.assert_allclose(fit.predict_proba(x[:50]), post[:50], atol=1e-6)
  np.testing.assert_allclose(fit.score_samples(x[:50]), np.asarray(fit.log_prob(x[:50])), rtol=1e-6)
  assert isinstance(fit.predict(x[:5]), np.ndarray)


def test_fit_is_unit_equivariant(fitted):
  """Data in other units (x * 7 - 3): the same assignments, log p(x) lower by N log 7."""
  fit, _, x, _ = fitted
  _, x2, _ = _data(scale=7.0, offset=-3.0)
  fit2 = vcm_jax.fit(x2, ADJ, key=jax.random.key(0), config=CFG)
  assert np.mean(np.asarray(fit2.assign(x2)) == np.asarray(fit.assign(x))) > 0.99
  np.testing.assert_allclose(fit2.log_prob(x2).mean(), fit.log_prob(x).mean() - N * np.log(7.0),
                             atol=0.05)


def test_sample_from_an_intervened_regime(fitted):
  """Samples of regime 1 (node 0 shifted) match that regime's true mean and covariance."""
  fit, true, x, r = fitted
  s = np.asarray(fit.sample(jax.random.key(5), 20000, regime=1), np.float64)
  held = x[r == 1]
  w = np.asarray(true.weights, np.float64)
  inv = np.linalg.inv(np.eye(N) - w)
  shift = np.zeros(N)
  shift[0] = float(true.shift[0])
  np.testing.assert_allclose(s.mean(0), shift @ inv, atol=0.1)
  np.testing.assert_allclose(s.mean(0), held.mean(0), atol=0.15)
  cov = inv.T @ np.diag(np.asarray(true.noise_scale, np.float64) ** 2) @ inv
  # A 150-step MLP fit: its covariance within 12% of the largest variance.
  np.testing.assert_allclose(np.cov(s, rowvar=False), cov, atol=0.12 * np.diag(cov).max())


def test_sample_rejects_an_unknown_regime(fitted):
  with pytest.raises(ValueError, match="regime=5 is not a regime id"):
    fitted[0].sample(jax.random.key(0), 3, regime=5)


def test_networkx_graph_and_default_config():
  _, x, _ = _data(n=600)
  g = nx.DiGraph([(0, 1), (0, 2), (1, 3), (2, 3)])
  assert np.array_equal(graphs.as_adjacency(g), ADJ)
  fit = vcm_jax.fit(x, g, config=dict(num_steps=20, pooled_steps=5, restarts=1))
  assert np.isfinite(np.asarray(fit.log_prob(x[:10]))).all()


def test_many_fits_vmap_over_keys_and_graphs():
  """One call fits 3 keys x 2 graphs; each equals its separate fit."""
  _, x, _ = _data(n=800)
  adjs = jnp.stack([jnp.asarray(ADJ), jnp.asarray(ADJ).at[0, 2].set(0)]).astype(jnp.float32)
  keys = jax.random.split(jax.random.key(3), 3)
  cfg = CFG.replace(num_steps=30, pooled_steps=10)
  one = functools.partial(vcm_jax.fit_graph, config=cfg, max_parents=2)
  batched = jax.jit(jax.vmap(jax.vmap(one, in_axes=(0, None, None)), in_axes=(None, None, 0)))(
      keys, jnp.asarray(x), adjs)
  assert batched.result.restart_log_px.shape == (2, 3, 1)
  jitted = jax.jit(one)
  for g in range(2):
    for k in range(3):
      alone = jitted(keys[k], jnp.asarray(x), adjs[g])
      for a, b in zip(jax.tree.leaves(alone), jax.tree.leaves(jax.tree.map(lambda t: t[g, k],
                                                                           batched))):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-5)
  # Different graphs give different fits (the comparison is not vacuous).
  assert not np.allclose(batched.result.restart_log_px[0], batched.result.restart_log_px[1])
  # A batch of fits is queried inside vmap; outside it, one clear error.
  with pytest.raises(ValueError, match="batch of fits"):
    batched.posterior(x)
  # and every host-side reading of one fit says the same, where it had read the batch
  # axes as a fit's (targets flattened, graph's shape the batch's) or raised NumPy's errors
  for read in ("graph", "edges", "n_iter", "converged", "observational", "targets",
               "target_names", "describe"):
    with pytest.raises(ValueError, match="batch of fits"):
      value = getattr(batched, read)
      value() if callable(value) else None
  post = jax.vmap(jax.vmap(lambda f: f.posterior(x[:7])))(batched)
  assert post.shape == (2, 3, 7, N + 1)


def test_free_decoder_reads_targets_and_observational():
  _, x, r = _data()
  fit = free_fit()
  assign = np.asarray(fit.assign(x))
  obs = fit.observational
  # The regime named observational holds the truly observational rows, and each
  # other regime's main target is the node its rows were intervened on.
  assert np.mean(r[assign == obs] == 0) > 0.9
  target = np.asarray(fit.identification.target)
  for k in range(N + 1):
    if k != obs and np.sum(assign == k) > 50:
      true_k = np.bincount(r[assign == k]).argmax()
      assert target[k] == true_k - 1, (k, target, fit.targets)
      assert target[k] in fit.targets[k]
  assert fit.targets[obs] == ()


@pytest.mark.parametrize("bad, message", [
    (dict(x=np.ones((10, 3))), "3 columns but the graph has 4"),
    (dict(graph=ADJ + np.eye(4, 4, -3, dtype=int)), "graph has a cycle: 0 -> 1 -> 3 -> 0"),
    (dict(config={"decoder": "dense"}), "model.decoder='dense' is not one of structured, free"),
    (dict(config={"num_step": 3}), "unknown fit config key 'num_step'"),
    (dict(config={"estimator": "gumbel"}), "needs train.posterior='encoder'"),
    (dict(x=np.full((600, 4), 1e39)), "1e[+]39 at row 0, column 0 is beyond float32's range"),
    (dict(x=np.ones((10, 4)) + np.arange(4)), "10 rows; 4 variables need at least 20"),
    (dict(x="column 3 near 1e8"), r"column 3 holds one value \(1e\+08\).*below float32's "
     "resolution"),
    (dict(x="a word at row 5, column 2"), "not a number, 'abc', at row 5, column 2"),
    (dict(x="one row"), r"must be \[samples, nodes\]; got shape \(4,\)"),
    (dict(graph="A->B"), r"graph must be an \[N, N\] adjacency"),
    (dict(graph=[("A", "B", 1)]), r"entry \('A', 'B', 1\) is not a \(source, target\) pair"),
    (dict(key="seed"), "key must be a JAX PRNG key"),
    (dict(config=None, selection={"bogus": 1}), "unknown selection key 'bogus'"),
    # a value of the wrong type: one line, not a TypeError from the first comparison
    (dict(config={"learning_rate": "fast"}), "train.learning_rate='fast' must be a number"),
    (dict(config={"hidden": 8}), "model.hidden=8 must be a list of integers"),
    (dict(config={"num_steps": 10.5}), "train.num_steps=10.5 must be an integer"),
    # complex numbers (their imaginary parts were dropped with a NumPy warning)
    (dict(x="complex"), r"x holds complex numbers \(.*at row 0, column 0\); a fit takes real"),
    # an integer node outside the columns (it read as a named node)
    (dict(graph=[(0, 1), (1, 5)]), r"names node 5, but the data have 4 columns \(nodes 0..3\)"),
])
def test_bad_input_is_one_clear_error(bad, message):
  _, x, _ = _data(n=600)
  x = x.copy()
  args = dict(x=x, graph=ADJ, config=CFG, key=None, selection=None)
  args.update(bad)
  recipe = args["x"] if isinstance(args["x"], str) else None
  if recipe == "column 3 near 1e8":  # not constant, but one value in float32
    x = x.astype(np.float64)
    x[:, 3] = 1e8 + np.random.default_rng(0).uniform(size=len(x))
    args["x"] = x
  elif recipe == "a word at row 5, column 2":
    args["x"] = x.astype(object)
    args["x"][5, 2] = "abc"
  elif recipe == "one row":
    args["x"], args["graph"] = x[0], None
  elif recipe == "complex":
    args["x"] = x + 1j * x
  with pytest.raises(ValueError, match=message) as err:
    vcm_jax.fit(args["x"], args["graph"], config=args["config"], key=args["key"],
                selection=args["selection"])
  assert "\n" not in str(err.value)


def test_queries_check_their_rows(fitted):
  """A fit's queries take the checks its input took: a NaN row or the wrong columns are
  one line, not NaN or a broadcasting error; one row as ``[N]``; regime ids of any
  integer type range-checked; an integer key is its seed."""
  fit, _, x, _ = fitted
  bad = x[:5].copy()
  bad[3, 1] = np.nan
  for query in (fit.score, fit.bic, fit.posterior, fit.assign, fit.log_prob):
    with pytest.raises(ValueError, match=r"non-finite value \(nan\) at row 3, column 1"):
      query(bad)
  with pytest.raises(ValueError, match="3 columns but the graph has 4"):
    fit.posterior(x[:, :3])
  np.testing.assert_array_equal(fit.posterior(x[7]), fit.posterior(x[7:8]))
  for regime in (jnp.int32(5), np.int64(-1), 1.5):
    with pytest.raises(ValueError, match="is not a regime id of this fit"):
      fit.sample(jax.random.key(0), 3, regime=regime)
  np.testing.assert_array_equal(fit.sample(3, 4, regime=np.int64(2)),
                                fit.sample(jax.random.key(3), 4, regime=2))
  np.testing.assert_array_equal(fit.sample(np.array(3), 4), fit.sample(3, 4))  # a 0-d seed
  with pytest.raises(ValueError, match=r"n=-1 must be a number of samples"):
    fit.sample(0, -1)
  for query in (fit.score, fit.bic, fit.posterior, fit.log_prob):  # (NaN; ZeroDivisionError)
    with pytest.raises(ValueError, match="x has no rows"):
      query(x[:0])
  # printed, one line (the arrays are its fields; it held 12 kB of them)
  assert repr(fit).startswith("Fit(structured latent, K = 5") and "\n" not in repr(fit)
  assert "observational regime 0" in repr(fit) and len(repr(fit)) < 300
  assert fit.edges == [("X0", "X1"), ("X0", "X2"), ("X1", "X3"), ("X2", "X3")]
  assert fit.describe().endswith("identifiability: not judged (one model as given: "
                                 "vcm_jax.identifiability.of_fit(fit, x) judges it)")


def test_fit_graph_checks_concrete_inputs_and_traced_ones_run():
  """``fit_graph`` (the pure fit) on a concrete graph whose in-degree exceeds
  ``max_parents`` dropped the extra parents and fitted another graph; a cycle or a NaN
  ran to a NaN fit. Each is one line now; under ``jit`` the same call runs."""
  _, x, _ = _data(n=600)
  cfg = CFG.replace(num_steps=10, pooled_steps=0)
  key = jax.random.key(0)
  with pytest.raises(ValueError, match="max_parents=1 is below node 3's 2 parents"):
    vcm_jax.fit_graph(key, x, jnp.asarray(ADJ, jnp.float32), config=cfg, max_parents=1)
  with pytest.raises(ValueError, match="max_parents=1 is below node 3's 2 parents"):
    graphs.parent_table(jnp.asarray(ADJ), 1)
  with pytest.raises(ValueError, match="graph has a cycle: 0 -> 1 -> 3 -> 0"):
    vcm_jax.fit_graph(key, x, jnp.asarray(ADJ + np.eye(4, 4, -3, dtype=int)), config=cfg,
                      max_parents=2)
  bad = x.copy()
  bad[5, 0] = np.nan
  with pytest.raises(ValueError, match=r"non-finite value \(nan\) at row 5, column 0"):
    vcm_jax.fit_graph(key, bad, jnp.asarray(ADJ), config=cfg, max_parents=2)
  # traced: no check (the table keeps the first parent), and the program runs
  idx, mask = jax.jit(lambda a: graphs.parent_table(a, 1))(jnp.asarray(ADJ))
  assert mask.shape == (4, 1) and float(mask[3, 0]) == 1.0
  # an integer edge list (its nodes 0..N-1) is a graph here too
  np.testing.assert_array_equal(graphs.as_adjacency([(0, 1), (0, 2), (1, 3), (2, 3)]), ADJ)
  np.testing.assert_array_equal(graphs.as_adjacency({0: [1, 2], 1: [3], 2: [3]}), ADJ)


def test_fit_graph_takes_what_fit_takes():
  """``fit_graph`` on concrete inputs as ``fit`` takes them: an integer seed, rows as a
  list, a config as a dict of its fields, integer data (counts) fitted as float32, so
  that a fixed noise floor of 0.5 stays 0.5 (in an integer array it had been 0: log 0 =
  -inf, no floor at all). Each was a deep traceback, or the silent floor."""
  _, x, _ = _data(n=600)
  counts = np.round(x).astype(np.int32)
  small = dict(num_steps=5, pooled_steps=0, restarts=1, hidden=(4,), noise_floor=0.5)
  fit = vcm_jax.fit_graph(0, counts.tolist(), ADJ.tolist(), config=small, max_parents=2)
  as_floats = vcm_jax.fit_graph(jax.random.key(0), counts.astype(np.float32), ADJ,
                                config=vcm_jax.FitConfig(**small), max_parents=2)
  floor = np.asarray(fit.result.params["log_floor"])
  assert np.isfinite(floor).all(), floor
  np.testing.assert_allclose(floor, np.asarray(as_floats.result.params["log_floor"]))
  np.testing.assert_allclose(np.asarray(fit.result.restart_log_px),
                             np.asarray(as_floats.result.restart_log_px), rtol=1e-6)


def test_non_finite_cell_is_named():
  _, x, _ = _data(n=600)
  x = x.copy()
  x[17, 2] = np.nan
  with pytest.raises(ValueError, match="row 17, column 2"):
    vcm_jax.fit(x, ADJ, config=CFG)


def test_config_groups_round_trip_and_defaults_match_configs():
  """One truth: the configs' groups are FitConfig's fields with its defaults."""
  from configs import er
  c = er.get_config()
  assert config_lib.coerce(c) == vcm_jax.FitConfig()
  groups = config_lib.config_groups(CFG)
  assert config_lib.from_groups(groups["model"], groups["train"]) == CFG
  assert set(config_lib.choices()["decoder"]) == {"structured", "free", "sparse"}
  with pytest.raises(ValueError, match="unknown fit config key 'hiden'"):
    config_lib.from_groups({"hiden": (3,)})


def test_encoder_only_when_its_q_is_used():
  exact = train.make_trainer(CFG, n_nodes=N, max_parents=2).model
  paper = train.make_trainer(CFG.replace(posterior="encoder"), n_nodes=N, max_parents=2).model
  assert exact.encoder is None and paper.encoder is not None


def test_compiled_programs_are_released_only_where_they_crowd_the_memory_maps(monkeypatch):
  """``programs.release_if_crowded`` clears JAX's caches, and the maps the executables
  held, only above its share of the limit; ``vcm_jax.fit`` asks as it starts."""
  from vcm_jax import programs
  if programs.map_count() is None or programs.map_limit() is None:
    pytest.skip("no /proc: the count cannot be read")
  held = [jax.jit(lambda a, i=i: jnp.tanh(a * i).sum()) for i in range(20)]
  for f in held:
    f(jnp.ones(3)).block_until_ready()
  assert not programs.release_if_crowded()  # (this process is far below a third)
  before = programs.map_count()
  monkeypatch.setattr(programs, "map_limit", lambda: before)  # now above a third of it
  # (the programs of this test only: the suite's other programs stay compiled)
  monkeypatch.setattr(programs.jax, "clear_caches", lambda: [f.clear_cache() for f in held])
  assert programs.release_if_crowded()
  assert programs.map_count() <= before - 2 * len(held), (before, programs.map_count())
  asked = []
  monkeypatch.setattr(programs, "release_if_crowded", lambda: asked.append(1))
  x = np.random.default_rng(0).normal(size=(50, 2)).astype(np.float32)
  with pytest.raises(ValueError):  # (a bad config is named after the data are read)
    vcm_jax.fit(x, np.zeros((2, 2)), config={"no_such_key": 1})
  assert asked
