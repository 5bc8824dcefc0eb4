"""The low-level functions a researcher composes (SCMs, graphs, metrics, the ELBO's KL,
Gumbel-Softmax, the baselines) on bad concrete input: one ``ValueError`` naming the
problem, where each had returned numbers (a cycle, a regime id out of range, a
probability above 1) or ended in a deep traceback (a new-user tour, 2026-12-07); the same
calls under ``jit``, where the values are traced, still run."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vcm_jax import elbo, graphs, gumbel, metrics, scm
from vcm_jax.baselines import linear, mixture

pytestmark = pytest.mark.fast

CYCLE = np.array([[0, 1, 0], [0, 0, 1], [1, 0, 0]])
CHAIN = np.array([[0, 1, 0], [0, 0, 1], [0, 0, 0]])
KEY = jax.random.key(0)


def test_a_cycle_is_named_wherever_a_graph_is_read():
  for call in (lambda: graphs.topological_order(jnp.asarray(CYCLE)),
               lambda: graphs.parent_table(jnp.asarray(CYCLE), 2),
               lambda: scm.sample_linear_scm(KEY, jnp.asarray(CYCLE, jnp.float32)),
               lambda: linear.linear_em(KEY, jnp.ones((10, 3)), jnp.asarray(CYCLE, jnp.float32))):
    with pytest.raises(ValueError, match="graph has a cycle: 0 -> 1 -> 2 -> 0"):
      call()
  with pytest.raises(ValueError, match=r"adjacency must be square, got shape \(3, 4\)"):
    graphs.parent_table(jnp.zeros((3, 4)), 2)
  # a DAG passes, and under jit (traced: unchecked) the same functions run
  np.testing.assert_array_equal(graphs.topological_order(jnp.asarray(CHAIN)), [0, 1, 2])
  assert jax.jit(graphs.topological_order)(jnp.asarray(CYCLE)).shape == (3,)


def test_scm_sampling_checks_its_numbers():
  true = scm.sample_linear_scm(KEY, jnp.asarray(CHAIN, jnp.float32))
  with pytest.raises(ValueError, match=r"regimes\[1\] = 7 is not a regime id of this SCM \(0..3"):
    scm.sample_data(KEY, true, 3, regimes=jnp.array([0, 7, -3]))
  with pytest.raises(ValueError, match="n_samples=-1 must be an integer >= 0"):
    scm.sample_data(KEY, true, -1)
  with pytest.raises(ValueError, match=r"obs_fraction=1.5 must be a probability"):
    scm.sample_linear_scm(KEY, jnp.asarray(CHAIN, jnp.float32), obs_fraction=1.5)
  with pytest.raises(ValueError, match="x has 4 columns; this SCM has 3 nodes"):
    scm.true_log_marginal(true, jnp.ones((5, 4)))
  # good ids give their regime's rows: an intervention on node 2 shifts node 2 alone
  x, r = scm.sample_data(KEY, true, 0, regimes=jnp.array([0, 3, 3]))
  assert x.shape == (3, 3) and list(np.asarray(r)) == [0, 3, 3]
  x, _ = jax.jit(lambda reg: scm.sample_data(KEY, true, 0, regimes=reg))(jnp.array([0, 7]))
  assert x.shape == (2, 3)  # traced ids: unchecked, as the docstring says


def test_er_dags_check_their_arguments():
  with pytest.raises(ValueError, match="n_nodes=-2 must be an integer >= 1"):
    graphs.sample_er_dag(KEY, n_nodes=-2, edge_prob=0.5)
  with pytest.raises(ValueError, match=r"edge_prob=1.5 must be a probability"):
    graphs.sample_er_dag(KEY, n_nodes=4, edge_prob=1.5)
  adjs = jax.vmap(lambda k, p: graphs.sample_er_dag(k, n_nodes=4, edge_prob=p))(
      jax.random.split(KEY, 2), jnp.array([0.0, 1.0]))
  assert float(adjs[0].sum()) == 0 and float(adjs[1].sum()) == 6


def test_metrics_name_labels_of_different_lengths():
  for call in (lambda: metrics.adjusted_rand_index(jnp.zeros(5, int), jnp.zeros(4, int), 2),
               lambda: metrics.adjusted_mutual_info(np.zeros(5), np.zeros(4))):
    with pytest.raises(ValueError, match=r"label different rows: shapes \(5,\) and \(4,\)"):
      call()


def test_kl_of_a_masked_category_has_finite_gradients():
  """A ``-inf`` logit (JAX's masking idiom) is q = 0: the KL and its gradient are those
  of a very negative logit (its gradient was NaN)."""
  log_p = jnp.log(jnp.array([0.7, 0.0, 0.3]))
  kl = lambda logits: elbo.kl_categorical(logits, log_p)
  masked = jnp.array([0.2, -jnp.inf, -0.4])
  finite = jnp.array([0.2, -1e4, -0.4])
  np.testing.assert_allclose(kl(masked), kl(finite), rtol=1e-6)
  grad = jax.grad(kl)(masked)
  assert np.isfinite(np.asarray(grad)).all(), grad
  np.testing.assert_allclose(grad, jax.grad(kl)(finite), atol=1e-6)


def test_gumbel_softmax_needs_a_positive_temperature():
  logits = jnp.zeros(3)
  for tau in (0.0, -1.0):
    with pytest.raises(ValueError, match="temperature=.* must be > 0"):
      gumbel.gumbel_softmax(KEY, logits, tau)
  y = jax.jit(gumbel.gumbel_softmax)(KEY, logits, 0.5)
  np.testing.assert_allclose(float(y.sum()), 1.0, rtol=1e-6)


def test_a_mixture_needs_a_component():
  with pytest.raises(ValueError, match="n_components=0 must be >= 1"):
    mixture.gaussian_mixture(KEY, jnp.ones((10, 2)), n_components=0)


def test_a_fixed_noise_floor_survives_integer_rows():
  """``train.noise_log_floor`` on integer rows (counts under ``train.fit_arrays``, which
  takes what it is given): the floor of 0.5 in a floating type, log(0.5 / scale), where
  an int32 array had rounded it to 0 (log 0 = -inf: no floor)."""
  from vcm_jax import config, train
  cfg = config.FitConfig(noise_floor=0.5)
  floor = train.noise_log_floor(cfg, jnp.asarray([[1, 2], [3, 4]], jnp.int32), jnp.full(2, 2.0))
  np.testing.assert_allclose(np.asarray(floor), np.log([0.25, 0.25]), rtol=1e-6)


def test_counts_are_integers_and_raw_keys_from_numpy_are_keys():
  with pytest.raises(ValueError, match="n_nodes=4.5 must be an integer"):
    graphs.sample_er_dag(KEY, n_nodes=4.5, edge_prob=0.5)
  true = scm.sample_linear_scm(KEY, jnp.asarray(CHAIN, jnp.float32))
  with pytest.raises(ValueError, match="n_samples=2.5 must be an integer"):
    scm.sample_data(KEY, true, 2.5)
  assert graphs.sample_er_dag(KEY, n_nodes=np.int64(3), edge_prob=np.full((3, 3), 0.5)).shape \
      == (3, 3)
  from vcm_jax import api
  raw = np.asarray(jax.random.PRNGKey(0))
  np.testing.assert_array_equal(np.asarray(api.as_key(raw)), raw)


def test_a_library_process_turns_on_the_commands_compilation_cache(tmp_path, monkeypatch):
  """``vcm_jax.programs.enable_cache``: the own-data command's cache folder by default
  ($VCM_JAX_CACHE_DIR), every program cached; '' leaves JAX's settings alone."""
  from vcm_jax import programs
  names = ("jax_compilation_cache_dir", "jax_persistent_cache_min_compile_time_secs",
           "jax_persistent_cache_min_entry_size_bytes")
  before = {n: getattr(jax.config, n) for n in names}
  try:
    assert programs.enable_cache("") == "" and jax.config.jax_compilation_cache_dir == \
        before["jax_compilation_cache_dir"]
    monkeypatch.setenv(programs.CACHE_ENV, str(tmp_path / "cache"))
    assert programs.enable_cache() == str(tmp_path / "cache") and (tmp_path / "cache").is_dir()
    assert jax.config.jax_compilation_cache_dir == str(tmp_path / "cache")
    assert jax.config.jax_persistent_cache_min_compile_time_secs == 0.0
  finally:
    for n, v in before.items():
      jax.config.update(n, v)
