"""vcm_jax.train and vcm_jax.model: purity under jit/vmap, gradients, NaN safety, recovery;
composability."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from vcm_jax import elbo, graphs, identify, metrics, networks, predict, scm, train, units
from vcm_jax import model as model_lib
from vcm_jax.config import FitConfig
from vcm_jax.densities import gaussian_log_density

# Its fits compile programs no other module does: run in a second pytest process, beside
# the session (conftest.py: ``offload``).
pytestmark = pytest.mark.offload

N = 4
SMALL = FitConfig(num_steps=20, pooled_steps=10, batch_size=200, restarts=1, hidden=(4,),
                  encoder_hidden=(8,))


def _make_fit(cfg, n_nodes, max_parents):
  """``fit(key, x, parent_idx, parent_mask) -> FitResult`` and its model."""
  trainer = train.make_trainer(cfg, n_nodes=n_nodes, max_parents=max_parents)
  return functools.partial(train.fit_arrays, trainer=trainer), trainer.model


def _problem_graph(key, edge_prob=0.5):
  return graphs.sample_er_dag(jax.random.split(key, 4)[0], n_nodes=N, edge_prob=edge_prob)


@functools.partial(jax.jit, static_argnames=("n_train", "n_test"))
def _problem_from_key(key, shift, edge_prob, *, n_train, n_test):
  _, k_s, k_x, k_t = jax.random.split(key, 4)
  adj = _problem_graph(key, edge_prob)
  true = scm.sample_linear_scm(k_s, adj, shift=shift)
  x, _ = scm.sample_data(k_x, true, n_train)
  x_test, r_test = scm.sample_data(k_t, true, n_test)
  return dict(adj=adj, true=true, x=x, x_test=x_test, r_test=r_test)


def _problem(seed, n_train=400, n_test=1, shift=10.0, edge_prob=0.5):
  """Graph, true SCM and data from one jitted call (one compile per sample sizes)."""
  return _problem_from_key(jax.random.key(seed), shift, edge_prob, n_train=n_train, n_test=n_test)


def _assert_tree_close(a, b, rtol, atol):
  la, ta = jax.tree.flatten(a)
  lb, tb = jax.tree.flatten(b)
  assert ta == tb
  for x, y in zip(la, lb):
    np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=rtol, atol=atol)


@pytest.fixture(scope="module")
def small_results():
  """The three small fits, each one jitted call."""
  keys = jax.random.split(jax.random.key(0), 3)
  return keys, [D.small_fit_jit(k, p["x"], *t) for k, p, t in zip(keys, D.problems, D.tables)]


def test_fit_same_with_and_without_jit(small_results):
  keys, results = small_results
  eager = D.small_fit(keys[0], D.problems[0]["x"], *D.tables[0])
  jitted = results[0]
  assert jitted.history["loss"].shape == (SMALL.num_steps,)
  assert jitted.restart_log_px.shape == (SMALL.restarts,)
  _assert_tree_close(eager, jitted, rtol=1e-4, atol=1e-4)
  # The fit moved away from its initialisation and its loss is finite throughout.
  assert np.all(np.isfinite(jitted.history["loss"]))
  assert float(jitted.history["loss"][-1]) < float(jitted.history["loss"][0])
  # The stopping rule off (stop_tolerance 0, the default): every step runs, nothing stops.
  assert SMALL.stop_tolerance == 0
  assert int(jitted.steps_used) == SMALL.num_steps and not bool(jitted.stopped)


def test_vmapped_fits_equal_separate_fits(small_results):
  keys, results = small_results
  xs = jnp.stack([p["x"] for p in D.problems])
  idxs = jnp.stack([t[0] for t in D.tables])
  masks = jnp.stack([t[1] for t in D.tables])
  batched = jax.jit(jax.vmap(D.small_fit))(keys, xs, idxs, masks)
  for i in range(3):
    _assert_tree_close(jax.tree.map(lambda t: t[i], batched), results[i], rtol=1e-4, atol=1e-5)
  # Different data, different fits (the comparison is not vacuous).
  assert not np.allclose(batched.restart_log_px[0], batched.restart_log_px[1])


def test_a_continuation_never_ends_below_its_start(small_results):
  """``train.continue_fit`` keeps its start's parameters where training ended below
  them (a rate that wrecks the fit), and its own where it ended above (the module's
  rate: 20 steps in, the small fit is still climbing)."""
  keys, results = small_results
  x, (idx, mask) = D.problems[0]["x"], D.tables[0]
  start = results[0]
  for rate, kept in ((1e3, True), (SMALL.learning_rate, False)):
    cfg = SMALL.replace(learning_rate=rate)
    trainer = train.make_trainer(cfg, n_nodes=N, max_parents=D.maxp)
    out = jax.jit(functools.partial(train.continue_fit, trainer=trainer))(
        keys[1], start, x, idx, mask)
    assert float(out.restart_log_px.max()) >= float(start.restart_log_px.max()) - 1e-5
    same = jax.tree.map(lambda a, b: bool(np.allclose(a, b)), out.params, start.params)
    assert all(jax.tree.leaves(same)) == kept, (rate, out.restart_log_px,
                                                 start.restart_log_px)


def _x64_setup(cfg, seed=0, batch=16):
  """A model, float64 params with random decoder weights, and a float64 batch."""
  p = D.problems[0]
  idx, mask = D.tables[0]
  model = model_lib.build_model(cfg, n_nodes=N, max_parents=D.maxp)
  params = model_lib.init_params(jax.random.key(seed), model, idx, mask)
  leaves, tree = jax.tree.flatten(params["decoder"])
  ks = jax.random.split(jax.random.key(seed + 1), len(leaves))
  dec = jax.tree.unflatten(tree, [0.3 * jax.random.normal(k, l.shape) for k, l in zip(ks, leaves)])
  params = dict(params, decoder=dec)
  params = jax.tree.map(lambda a: jnp.asarray(np.asarray(a), jnp.float64), params)
  xs, _, _ = units.standardize(p["x"][:batch])
  return model, params, jnp.asarray(np.asarray(xs), jnp.float64), idx, mask


@pytest.mark.parametrize("estimator,posterior", [("exact", "encoder"), ("gumbel", "encoder")])
def test_objective_gradients_check_grads(estimator, posterior):
  cfg = FitConfig(hidden=(3,), encoder_hidden=(5,), estimator=estimator, posterior=posterior)
  with jax.enable_x64(True):
    model, params, xs, idx, mask = _x64_setup(cfg)
    key = jax.random.key(3)

    @jax.jit
    def loss_of(dec, prior_logits):
      p = dict(params, decoder=dec, prior_logits=prior_logits)
      return train.objective(p, key, xs, idx, mask, model=model, beta=0.7)[0]

    assert loss_of(params["decoder"], params["prior_logits"]).dtype == jnp.float64
    check_grads(loss_of, (params["decoder"], params["prior_logits"]), order=1, modes=["rev"])


def test_exact_posterior_objective_gradients():
  # posterior='exact': no encoder; the decoder and prior ascend the exact log p(x).
  cfg = FitConfig(hidden=(3,), encoder_hidden=(5,), estimator="exact", posterior="exact")
  with jax.enable_x64(True):
    model, params, xs, idx, mask = _x64_setup(cfg, seed=4)
    assert model.encoder is None and "encoder" not in params
    obj = lambda p: train.objective(p, None, xs, idx, mask, model=model, beta=1.0)
    neg_log_px = lambda p: -model.log_marginal(p, xs, idx, mask).mean()
    g_obj, g_lpx = jax.jit(jax.grad(lambda p: obj(p)[0]))(params), jax.jit(jax.grad(neg_log_px))(params)
    _assert_tree_close(g_obj, g_lpx, rtol=1e-9, atol=1e-12)
    check_grads(jax.jit(lambda d: neg_log_px(dict(params, decoder=d))), (params["decoder"],),
                order=1, modes=["rev"])
    # The loss is -log p(x), and the reported ELBO (q = the exact posterior) equals log p(x).
    loss, aux = jax.jit(obj)(params)
    np.testing.assert_allclose(loss, jax.jit(neg_log_px)(params), rtol=1e-10)
    np.testing.assert_allclose(aux["elbo"], -loss, rtol=1e-9)
    np.testing.assert_allclose(aux["expected_loglik"] - aux["kl"], aux["elbo"], rtol=1e-9)


@pytest.mark.parametrize("estimator,posterior", [("exact", "encoder"), ("gumbel", "encoder"),
                                                 ("straight_through", "encoder")])
def test_objective_finite_with_saturated_encoder(estimator, posterior):
  saturation = 1e30  # q exactly one-hot: exp(-2e30) underflows to 0
  cfg = FitConfig(hidden=(3,), encoder_hidden=(5,), estimator=estimator, posterior=posterior)
  idx, mask = D.tables[0]
  model = model_lib.build_model(cfg, n_nodes=N, max_parents=D.maxp)
  params = model_lib.init_params(jax.random.key(0), model, idx, mask)
  enc = params["encoder"]["params"]
  last = sorted(enc)[-1]
  bias = jnp.array([saturation] + [-saturation] * N)  # q is one-hot on category 0
  enc = dict(enc, **{last: dict(enc[last], bias=bias, kernel=jnp.zeros_like(enc[last]["kernel"]))})
  params = dict(params, encoder={"params": enc})
  xs, _, _ = units.standardize(D.problems[0]["x"][:64])
  q = jax.nn.softmax(model.encoder.apply(params["encoder"], xs))
  assert np.all(np.asarray(q[:, 1:]) == 0.0)  # exact zeros in q
  f = jax.jit(jax.value_and_grad(
      lambda p, k: train.objective(p, k, xs, idx, mask, model=model, beta=1.0), has_aux=True))
  (loss, aux), grads = f(params, jax.random.key(1))
  assert np.isfinite(float(loss))
  assert all(np.isfinite(float(v)) for v in aux.values())
  assert all(np.all(np.isfinite(np.asarray(g))) for g in jax.tree.leaves(grads))


def _easy_problem():
  """An N=4 ER(0.5) graph with at least two edges (the first such seed), shift 10,
  3000 training and 1000 held-out samples."""
  n_edges = jax.jit(lambda key: _problem_graph(key).sum())
  seed = next(s for s in range(20, 200) if float(n_edges(jax.random.key(s))) >= 2)
  return _problem(seed, n_train=3000, n_test=1000, shift=10.0, edge_prob=0.5)


def _made(fn):
  """A cached property made as at import: float32 and concrete, whatever the context of
  its first use (inside ``jax.enable_x64`` or a trace)."""
  @functools.wraps(fn)
  def make(self):
    with jax.enable_x64(False), jax.ensure_compile_time_eval():
      return fn(self)
  return functools.cached_property(make)


class _Data:
  """The module's data and small fit, made on first use: not at collection, so that runs
  that skip these tests (``pytest -m fast``, ``-k``) do not pay for their compiles."""

  @_made
  def problems(self):  # three datasets on three graphs; one max_parents for all: they stack
    return [_problem(s) for s in (10, 11, 12)]

  @_made
  def maxp(self):
    return max(1, graphs.max_in_degree(np.stack([p["adj"] for p in self.problems])))

  @_made
  def tables(self):
    return [graphs.parent_table(p["adj"], self.maxp) for p in self.problems]

  @functools.cached_property
  def small_fit(self):
    return _make_fit(SMALL, N, self.maxp)[0]

  @functools.cached_property
  def small_fit_jit(self):
    return jax.jit(self.small_fit)

  @_made
  def easy(self):
    return _easy_problem()

  @_made
  def easy_maxp(self):
    return max(1, graphs.max_in_degree(self.easy["adj"]))

  @_made
  def easy_table(self):
    return graphs.parent_table(self.easy["adj"], self.easy_maxp)


D = _Data()


# --- recovery on an easy problem -------------------------------------------------

def _recovery(cfg):
  fit, model = _make_fit(cfg, N, D.easy_maxp)

  # The data are arguments, not constants closed over: XLA would constant-fold the fit's
  # sorts of the rows while compiling (measured: 5.5 s of compilation against 1.3 s).
  @jax.jit
  def go(key, easy, table):
    result = fit(key, easy["x"], *table)
    post = predict.exact_posterior(model, result, easy["x_test"], *table)
    pred, _ = identify.assign_regimes(post)
    r = easy["r_test"]
    bayes, _ = identify.assign_regimes(scm.true_posterior(easy["true"], easy["x_test"]))
    return {"ari": metrics.adjusted_rand_index(r, pred, N + 1),
            "bayes_ari": metrics.adjusted_rand_index(r, bayes, N + 1),
            "target_accuracy": metrics.target_accuracy(r - 1, pred - 1),
            "observational_identified": identify.observational_identified(r, pred, N + 1),
            "heldout": predict.log_prob(model, result, easy["x_test"], *table).mean(),
            "true_heldout": scm.true_log_marginal(easy["true"], easy["x_test"]).mean()}

  return {k: np.asarray(v) for k, v in go(jax.random.key(7), D.easy, D.easy_table).items()}


def test_recovery_on_easy_problem():
  assert float(D.easy["adj"].sum()) >= 2  # a graph with edges
  out = _recovery(FitConfig(num_steps=300, pooled_steps=100, batch_size=500, restarts=1))
  assert out["bayes_ari"] > 0.95
  assert out["ari"] >= 0.95, out
  assert bool(out["observational_identified"]), out
  assert out["target_accuracy"] >= 0.95, out
  # The fitted density is nearly the true one on held-out data (nats per sample).
  assert abs(out["heldout"] - out["true_heldout"]) < 0.15, out


def test_broken_recipe_fails_recovery_threshold():
  # Random init with zero-initialised state differences, unit scales, a uniform prior
  # and 5 steps: the two states of each mechanism stay nearly equal, so the same
  # thresholds must fail (they are not vacuous).
  out = _recovery(FitConfig(init="random", scale="unit", estimator="exact",
                                  prior="uniform", num_steps=5, pooled_steps=100,
                                  batch_size=500, restarts=1))
  assert out["ari"] < 0.95, out
  assert out["target_accuracy"] < 0.95, out


# --- composability of the public functions ----------------------------------------

def _pipeline(key, n=64):
  k_g, k_s, k_d = jax.random.split(key, 3)
  adj = graphs.sample_er_dag(k_g, n_nodes=5, edge_prob=0.5)
  true = scm.sample_linear_scm(k_s, adj, shift=4.0)
  x, r = scm.sample_data(k_d, true, n)
  ll = scm.regime_log_likelihoods(true, x)
  return true, x, r, ll, elbo.log_marginal(ll, jnp.log(true.regime_probs))


def _mean_log_px(key, x):
  k_g, k_s, _ = jax.random.split(key, 3)
  adj = graphs.sample_er_dag(k_g, n_nodes=5, edge_prob=0.5)
  true = scm.sample_linear_scm(k_s, adj, shift=4.0)
  return elbo.log_marginal(scm.regime_log_likelihoods(true, x), jnp.log(true.regime_probs)).mean()


def test_composed_pipeline_vmap_jit_and_grad():
  from scipy import special, stats

  keys = jax.random.split(jax.random.key(30), 3)
  trues, xs, rs, lls, lms = jax.jit(jax.vmap(_pipeline))(keys)
  assert lls.shape == (3, 64, 6) and lms.shape == (3, 64)
  assert len({np.asarray(a).tobytes() for a in trues.adj}) > 1  # different graphs
  # Each graph's numbers against a numpy/scipy computation of the same SCM.
  for i in range(3):
    t = {k: np.asarray(v[i], np.float64) for k, v in trues._asdict().items() if v is not None}
    x = np.asarray(xs[i], np.float64)
    mean = t["bias"] + x @ t["weights"]
    l_obs = stats.norm.logpdf(x, mean, t["noise_scale"])
    l_int = stats.norm.logpdf(x, mean + t["shift"], t["noise_scale"] * t["int_scale"])
    ll = np.stack([l_obs.sum(-1)] + [l_obs.sum(-1) - l_obs[:, j] + l_int[:, j] for j in range(5)], -1)
    np.testing.assert_allclose(lls[i], ll, rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(lms[i], special.logsumexp(ll + np.log(t["regime_probs"]), -1),
                               rtol=1e-5, atol=1e-3)

  with jax.enable_x64(True):
    x = jax.random.normal(jax.random.key(31), (6, 5), jnp.float64) * 2
    grads = jax.jit(jax.vmap(jax.grad(_mean_log_px, argnums=1), in_axes=(0, None)))(keys, x)
    assert grads.shape == (3, 6, 5) and grads.dtype == jnp.float64
    eps = 1e-5
    basis = jnp.eye(x.size, dtype=jnp.float64).reshape(x.size, *x.shape)

    def fd(key):
      f = jax.vmap(lambda d: _mean_log_px(key, x + eps * d) - _mean_log_px(key, x - eps * d))
      return (f(basis) / (2 * eps)).reshape(x.shape)

    numeric = jax.jit(jax.vmap(fd))(keys)
    np.testing.assert_allclose(grads, numeric, rtol=1e-6, atol=1e-8)
    assert np.abs(np.asarray(grads)).max() > 1e-3
    # Different graphs give different gradients.
    assert not np.allclose(grads[0], grads[1])


@pytest.mark.fast
def test_kmeans_finds_separated_centroids():
  rng = np.random.default_rng(0)
  centres = np.array([[0.0, 0.0], [8.0, 0.0], [0.0, 8.0]])
  pts = np.concatenate([c + 0.3 * rng.normal(size=(200, 2)) for c in centres]).astype(np.float32)
  from vcm_jax import clustering
  found, labels = jax.jit(clustering.kmeans, static_argnums=2)(jax.random.key(0), pts, 3)
  found = np.asarray(found)
  assert len(set(np.asarray(labels).tolist())) == 3
  order = np.argsort(found[:, 0] + 10 * found[:, 1])
  np.testing.assert_allclose(found[order], centres, atol=0.1)


@pytest.mark.parametrize("estimator, posterior", [("exact", "exact"), ("gumbel", "encoder")])
def test_no_teacher_forcing_trains_and_scores(estimator, posterior):
  """Without teacher forcing the regime likelihoods are those of the propagated means
  (a diagonal Gaussian per regime, independent of x's parents), and training runs finite."""
  x = D.problems[0]["x"]
  idx, mask = D.tables[0]
  cfg = FitConfig(mechanism="linear", teacher_forcing=False, estimator=estimator,
                        posterior=posterior, num_steps=20, pooled_steps=5, batch_size=100)
  n = x.shape[1]
  model = model_lib.build_model(cfg, n_nodes=n, max_parents=idx.shape[1])
  params = model_lib.init_params(jax.random.key(0), model, idx, mask)
  params = jax.tree.map(lambda a: a + 0.1, params)
  ll = model.regime_log_likelihoods(params, x[:5], idx, mask)
  states = jnp.concatenate([jnp.zeros((1, n)), jnp.eye(n)])
  mean, log_scale = networks.free_running(
      lambda xh: model.decoder.apply(params["decoder"], xh, states, idx, mask), (n + 1, n), n)
  want = gaussian_log_density(x[:5, None], mean, log_scale).sum(-1)
  np.testing.assert_allclose(ll, want, rtol=1e-5)
  result = jax.jit(_make_fit(cfg, n, idx.shape[1])[0])(jax.random.key(1), x, idx, mask)
  assert np.all(np.isfinite(np.asarray(result.history["loss"])))


def test_chunks_compile_once_donate_the_state_and_match_one_call():
  """The driver's chunked loop: one program for every chunk, the old state's buffers
  handed to XLA (donated), and the same numbers as one call of all the steps."""
  from experiments import loop

  trainer = train.make_trainer(SMALL, n_nodes=N, max_parents=D.maxp)
  p, (idx, mask) = D.problems[0], D.tables[0]
  batched = lambda a: a[None]
  state0 = jax.jit(jax.vmap(trainer.init))(jax.random.key(0)[None], batched(p["x"]),
                                           batched(idx), batched(mask))
  xs = jax.vmap(units.to_standard)(batched(p["x"]), state0.loc, state0.scale)
  run = loop.jit_run_steps(trainer)
  whole, _ = run(jax.tree.map(jnp.copy, state0), xs, batched(idx), batched(mask), 12)
  state = state0
  for _ in range(3):
    previous = state
    state, _ = run(state, xs, batched(idx), batched(mask), 4)
    assert all(a.is_deleted() for a in jax.tree.leaves((previous.params, previous.opt_state)))
  assert run._cache_size() == 2  # 12 steps and 4 steps; the three chunks of 4 share one
  _assert_tree_close(state.params, whole.params, rtol=1e-5, atol=1e-6)


def test_stopping_rule_stops_freezes_and_matches_chunks():
  """A tolerance no window can beat: every restart stops at the second window boundary
  (the first has no previous window); later steps change nothing; the library's
  while_loop, one long call and chunks of another size give the same fit."""
  cfg = SMALL.replace(num_steps=60, stop_window=10, stop_tolerance=1e6, restarts=2)
  fit, _ = _make_fit(cfg, N, D.maxp)
  p, (idx, mask) = D.problems[0], D.tables[0]
  result = jax.jit(fit)(jax.random.key(0), p["x"], idx, mask)
  assert int(result.steps_used) == 20 and bool(result.stopped)
  assert np.all(np.asarray(result.history["loss"][20:]) == 0)  # steps never run
  trainer = train.make_trainer(cfg, n_nodes=N, max_parents=D.maxp)
  state = jax.jit(trainer.init)(jax.random.key(0), p["x"], idx, mask)  # (eager: 3x the compiles)
  xs = units.to_standard(p["x"], state.loc, state.scale)
  run = jax.jit(trainer.run_steps, static_argnums=4)
  whole, _ = run(state, xs, idx, mask, 60)
  chunked = state
  for _ in range(4):
    chunked, _ = run(chunked, xs, idx, mask, 15)
  at_stop, _ = run(state, xs, idx, mask, 20)
  for other in (chunked, at_stop):
    _assert_tree_close(whole.params, other.params, rtol=1e-6, atol=1e-7)
  np.testing.assert_array_equal(whole.stop.steps_used, [20, 20])
  _assert_tree_close(result.params, jax.jit(trainer.finish)(whole, xs, idx, mask).params,
                     rtol=1e-5, atol=1e-6)
  # Off (tolerance 0): all steps run, as before the rule existed; checked where a program
  # with the rule off is compiled anyway (test_fit_same_with_and_without_jit: a whole fit;
  # test_plateau_schedule_cuts_the_rate_then_stops: window boundaries passed).


def test_stopping_rule_waits_while_the_likelihood_improves():
  """A small tolerance on a fit that is still learning: no stop in the first windows."""
  cfg = SMALL.replace(num_steps=40, stop_window=10, stop_tolerance=1e-4, restarts=1,
                      pooled_steps=0, init="random")
  result = jax.jit(_make_fit(cfg, N, D.maxp)[0])(jax.random.key(0), D.problems[0]["x"],
                                                 *D.tables[0])
  assert int(result.steps_used) >= 30, int(result.steps_used)


def test_plateau_schedule_cuts_the_rate_then_stops():
  """lr_schedule='plateau' with a tolerance no window can beat: plateaus at windows 2, 3
  and 4 (the first has no previous one); the first two cut the rate by the factor, the
  third stops. A plateau run's first 20 steps equal a constant-rate run's, and its update
  in window 3 is the constant rate's scaled by the factor (one Adam step, checked). Steps
  go one at a time (one compiled program per trainer; chunks give one call's numbers)."""
  cfg = SMALL.replace(num_steps=80, stop_window=10, stop_tolerance=1e6, restarts=1,
                      lr_schedule="plateau", plateau_factor=0.5, plateau_decays=2)
  p, (idx, mask) = D.problems[0], D.tables[0]
  result = jax.jit(_make_fit(cfg, N, D.maxp)[0])(jax.random.key(0), p["x"], idx, mask)
  assert int(result.steps_used) == 40 and bool(result.stopped)
  trainer = train.make_trainer(cfg, n_nodes=N, max_parents=D.maxp)
  state = jax.jit(trainer.init)(jax.random.key(0), p["x"], idx, mask)  # (eager: many compiles)
  xs = units.to_standard(p["x"], state.loc, state.scale)
  constant = train.make_trainer(cfg.replace(lr_schedule="constant", stop_tolerance=0.0), n_nodes=N, max_parents=D.maxp)

  def stepper(trainer):
    step = jax.jit(trainer.run_steps, static_argnums=4)

    def steps(state, n):
      for _ in range(n):
        state, _ = step(state, xs, idx, mask, 1)
      return state
    return steps

  plateau_steps, constant_steps = stepper(trainer), stepper(constant)
  state20 = plateau_steps(state, 20)
  np.testing.assert_allclose(state20.stop.lr_scale, [0.5])
  np.testing.assert_array_equal(state20.stop.decays, [1])
  c20 = constant_steps(state, 20)
  _assert_tree_close(state20.params, c20.params, rtol=1e-6, atol=1e-7)
  # The rule off (tolerance 0): two window boundaries passed, nothing stopped or cut.
  assert int(c20.step) == 20 and not np.any(c20.stop.done) and np.all(c20.stop.lr_scale == 1)
  # One more step: the plateau run moves half as far as the constant-rate one.
  p21, c21 = plateau_steps(state20, 1), constant_steps(c20, 1)
  moved = lambda a, b: jax.tree.map(lambda u, v: np.asarray(u - v), a, b)
  _assert_tree_close(jax.tree.map(lambda u: 2 * u, moved(p21.params, state20.params)),
                     moved(c21.params, c20.params), rtol=1e-4, atol=1e-7)
  with pytest.raises(ValueError, match="stop_tolerance > 0"):
    cfg.replace(stop_tolerance=0.0)
