"""vcm_jax.structure: family scores, exact and greedy DAG search, edge reports, structural EM."""
import functools
import itertools
import math

import jax
import jax.numpy as jnp
import networkx as nx
import numpy as np
import pytest

from vcm_jax import graphs, scm
from vcm_jax import structure as st

# The slow tests here share nothing with other modules: a second process runs them.
pytestmark = pytest.mark.offload


def _shd(a, b):
  """Structural Hamming distance: each node pair whose edge differs (a reversal is one)."""
  a, b = np.asarray(a) > 0, np.asarray(b) > 0
  return int(np.triu((a != b) | (a.T != b.T), 1).sum())


def _single_target(n):
  return np.vstack([np.zeros((1, n), bool), np.eye(n, dtype=bool)])


@functools.lru_cache(maxsize=None)
def _interventional(n=6, rows=5000, seed=1):
  """Linear Gaussian SCM with single-target mean shifts: data, true regimes, true DAG."""
  adj = np.asarray(graphs.sample_er_dag(jax.random.key(seed), n_nodes=n, edge_prob=0.5))
  true = scm.sample_linear_scm(jax.random.key(seed + 1), jnp.asarray(adj), noise_low=0.5,
                               noise_high=1.5, intervention="both", variance_factor=2.0)
  x, regimes = scm.sample_data(jax.random.key(seed + 2), true, rows)
  return np.asarray(x, np.float64), np.asarray(regimes), adj.astype(int), true


def _reference_score(x, weights, changes, node, pa, penalty_per_param):
  """Slow NumPy version: np.linalg.lstsq on sqrt-weighted rows per copy."""
  s = x.shape[0]
  copies = [weights[:, ~changes[:, node]].sum(1)] + [weights[:, k] for k in np.flatnonzero(changes[:, node])]
  total = 0.0
  for w in copies:
    design = np.column_stack([np.ones(s), x[:, list(pa)]]) * np.sqrt(w)[:, None]
    target = x[:, node] * np.sqrt(w)
    coef, *_ = np.linalg.lstsq(design, target, rcond=None)
    var = ((target - design @ coef) ** 2).sum() / w.sum()
    total += -0.5 * w.sum() * (math.log(2 * math.pi * var) + 1) - penalty_per_param * (len(pa) + 2) * (w.sum() > 0.5)
  return total


def _change_set_score(x, weights, node, pa, chosen, penalty_per_param):
  """``_reference_score`` of ``node`` on parents ``pa`` with own copies for the regimes
  ``chosen`` (and a shared copy for the others)."""
  changes = np.zeros((weights.shape[1], x.shape[1]), bool)
  changes[list(chosen), node] = True
  return _reference_score(x, weights, changes, node, pa, penalty_per_param)


@pytest.mark.fast
def test_family_scores_match_weighted_lstsq_reference():
  rng = np.random.default_rng(0)
  s, n, k = 400, 4, 3
  z = rng.normal(size=(s, n))
  x = z @ np.triu(rng.normal(size=(n, n)), 1) + z
  x = x * np.array([0.01, 3.0, 50.0, 1.0]) + np.array([5.0, -2.0, 100.0, 0.0])  # any units
  weights = rng.dirichlet(np.ones(k) * 0.5, size=s)
  changes = np.array([[0, 0, 0, 0], [1, 0, 1, 0], [0, 1, 1, 0]], bool)  # node 2 owned twice
  fam = st.family_scores(x, weights, changes, max_parents=2)
  assert fam.scores.shape == (n, 1 + 3 + 3) and fam.parents.shape == (n, 7, 2)
  per_param = 0.5 * math.log(s)
  for node in range(n):
    for c in range(fam.scores.shape[1]):
      pa = [p for p in fam.parents[node, c] if p >= 0]
      assert node not in pa
      ref = _reference_score(x, weights, changes, node, pa, per_param)
      np.testing.assert_allclose(fam.scores[node, c], ref, rtol=2e-5, atol=2e-2)
  # Per-column affine changes move each node's scores by one constant: -S log|a_j|.
  a = np.array([2.0, -0.5, 10.0, 1.0])
  other = st.family_scores(x * a + 7.0, weights, changes, max_parents=2)
  np.testing.assert_allclose(other.scores - fam.scores,
                             np.broadcast_to(-s * np.log(np.abs(a))[:, None], fam.scores.shape),
                             atol=2e-2)


@pytest.mark.fast
def test_family_scores_survive_hard_interventions():
  """A node clamped in its regime (variance 1e-18): the own copy's variance is floored,
  nothing is nan, and that regime's own copy makes the true parent set still best."""
  rng = np.random.default_rng(1)
  s = 600
  regime = rng.integers(0, 2, s)
  x0 = rng.normal(size=s)
  x1 = np.where(regime == 1, 3.0 + 1e-9 * rng.normal(size=s), 0.8 * x0 + 0.5 * rng.normal(size=s))
  x = np.column_stack([x0, x1])
  fam = st.family_scores(x, np.eye(2)[regime], np.array([[0, 0], [0, 1]], bool), max_parents=1)
  assert np.isfinite(fam.scores).all()
  assert np.array_equal(st.search(fam, method="exact"), [[0, 1], [0, 0]])


def test_search_recovers_true_dag_with_true_regimes():
  x, regimes, adj, _ = _interventional()
  n = adj.shape[0]
  fam = st.family_scores(x, np.eye(n + 1)[regimes], _single_target(n), max_parents=3)
  exact, exact_score = st.search(fam, method="exact", return_score=True)
  assert np.array_equal(exact, adj)
  assert exact_score == pytest.approx(st.graph_score(fam, adj))
  hill = st.search(fam, method="hill")
  assert nx.is_directed_acyclic_graph(nx.from_numpy_array(hill, create_using=nx.DiGraph))
  assert _shd(hill, adj) <= 1
  # The empty graph is far worse: the score is not flat.
  assert st.graph_score(fam, np.zeros_like(adj)) < exact_score - 100


@pytest.mark.fast
def test_free_family_greedy_takes_the_reference_greedys_regimes_with_more_regimes_than_rescored():
  """With more regimes than ``RESCORED`` (the candidates a step ranks by a downdate of the
  shared copy, then scores again exactly), each family's changing regimes are those of a
  NumPy greedy forward that scores every candidate exactly at every step
  (``_reference_score``), and so is its score."""
  rng = np.random.default_rng(5)
  s, k = 1800, 9
  assert k > st.RESCORED
  regime = rng.integers(0, k, s)
  shift = rng.normal(0.0, 1.5, size=(k, 3)) * (rng.random((k, 3)) < 0.4)
  x0 = rng.normal(size=s) + shift[regime, 0]
  x1 = 0.8 * x0 + 0.7 * rng.normal(size=s) + shift[regime, 1]
  x2 = -0.6 * x1 + 0.5 * rng.normal(size=s) + shift[regime, 2]
  x = np.column_stack([x0, x1, x2])
  weights = 0.85 * np.eye(k)[regime] + 0.15 * rng.dirichlet(np.ones(k), s)
  per_param = 0.5 * math.log(s)
  fam, own = st.family_scores_free(x, weights, max_parents=2)
  for node in range(3):
    for c in range(fam.scores.shape[1]):
      pa = [p for p in fam.parents[node, c] if p >= 0]
      ref = lambda chosen: _change_set_score(x, weights, node, pa, chosen, per_param)
      chosen, current = [], ref(())
      while len(chosen) < k - 1:
        gains = {r: ref(chosen + [r]) for r in range(k) if r not in chosen}
        best = max(gains, key=gains.get)
        if gains[best] <= current:
          break
        chosen, current = chosen + [best], gains[best]
      assert sorted(chosen) == list(np.flatnonzero(own[node, c])), (node, pa)
      np.testing.assert_allclose(fam.scores[node, c], current, rtol=2e-5, atol=5e-2)
    assert own[node].sum(-1).max() > 1  # (several regimes taken: the steps after the first ran)


@pytest.mark.fast
def test_free_family_scores_are_their_own_change_sets_scored_exactly():
  """Each family's score is the reference score of the regimes it chose to change (the
  shared copy refitted exactly on the others), at least that of no change and of every
  single change (greedy forward's first steps), and on mean shifts with clear targets
  the choice is the true target and is the best of all change sets that leave the shared copy some rows."""
  rng = np.random.default_rng(3)
  s, k = 900, 3
  regime = rng.integers(0, k, s)
  x0 = rng.normal(size=s) + 2.5 * (regime == 1)           # regime 1 shifts node 0
  x1 = 0.9 * x0 + 0.6 * rng.normal(size=s) - 2.0 * (regime == 2)  # regime 2 shifts node 1
  x2 = -0.7 * x1 + 0.5 * rng.normal(size=s)
  x = np.column_stack([x0, x1, x2]) * np.array([3.0, 0.1, 1.0])
  per_param = 0.5 * math.log(s)
  for weights in (np.eye(k)[regime], 0.9 * np.eye(k)[regime] + 0.1 * rng.dirichlet(np.ones(k), s)):
    fam, own = st.family_scores_free(x, weights, max_parents=2)
    for node in range(3):
      for c in range(fam.scores.shape[1]):
        pa = [p for p in fam.parents[node, c] if p >= 0]
        ref = lambda chosen: _change_set_score(x, weights, node, pa, chosen, per_param)
        np.testing.assert_allclose(fam.scores[node, c], ref(np.flatnonzero(own[node, c])),
                                   rtol=2e-5, atol=5e-2)
        assert fam.scores[node, c] >= max(ref(()), *(ref((r,)) for r in range(k))) - 5e-2
    truth = {0: ((), (1,)), 1: ((0,), (2,)), 2: ((1,), ())}
    for node, (pa, target) in truth.items():
      c = next(c for c in range(fam.scores.shape[1])
               if sorted(p for p in fam.parents[node, c] if p >= 0) == list(pa))
      assert tuple(np.flatnonzero(own[node, c])) == target, (node, own[node, c])
      if weights[0].max() == 1.0:
        changes = np.zeros((k, 3), bool)
        best = max(_reference_score(x, weights, _set(changes, subset, node), node, pa, per_param)
                   for size in range(k) for subset in itertools.combinations(range(k), size))
        np.testing.assert_allclose(fam.scores[node, c], best, rtol=2e-5, atol=5e-2)
    assert np.array_equal(st.search(fam, method="exact"), [[0, 1, 0], [0, 0, 1], [0, 0, 0]])


def _set(changes, subset, node):
  out = changes.copy()
  out[list(subset), node] = True
  return out


@pytest.mark.fast
def test_schur_complement_is_the_residual_variance_of_a_solve():
  rng = np.random.default_rng(0)
  for d in (1, 3, 6):
    m = rng.normal(size=(d + 1, 40))
    cov = m @ m.T / 40
    a, b, c = cov[:d, :d], cov[:d, d], cov[d, d]
    got = float(st._schur_complement(jnp.asarray(a), jnp.asarray(b), jnp.asarray(c)))
    np.testing.assert_allclose(got, c - b @ np.linalg.solve(a, b), rtol=1e-4)


def test_learning_without_targets_recovers_the_graph_and_every_target():
  """Free targets: the true labels and no targets give the true graph and every regime's
  target (the graph-free start: ``tests/test_mixture_scm.py``)."""
  x, regimes, adj, _ = _interventional()
  n = adj.shape[0]
  fam, own = st.family_scores_free(x, np.eye(n + 1)[regimes], max_parents=3)
  found = st.search(fam, method="exact")
  assert np.array_equal(found, adj)
  np.testing.assert_array_equal(st.changes_of(fam, own, adj), _single_target(n))


def _random_table(n, max_parents, seed):
  rng = np.random.default_rng(seed)
  parents, valid = st.parent_sets(n, max_parents)
  size = (parents >= 0).sum(-1)
  # Parent sets score in a rugged way: greedy search has local optima here.
  scores = rng.normal(size=valid.shape) * 3.0 + 1.5 * size - 0.8 * size ** 2
  scores = np.where(valid, scores, -np.inf)
  return st.FamilyScores(scores=scores, parents=parents, loglik=scores, n_rows=1)


@pytest.mark.fast
def test_exact_search_is_the_brute_force_optimum():
  n = 4
  for seed in range(3):
    fam = _random_table(n, 3, seed)
    best = -np.inf
    for bits in itertools.product([0, 1], repeat=n * (n - 1)):
      adj = np.zeros((n, n), int)
      adj[~np.eye(n, dtype=bool)] = bits
      if nx.is_directed_acyclic_graph(nx.from_numpy_array(adj, create_using=nx.DiGraph)):
        best = max(best, st.graph_score(fam, adj))
    adj, score = st.search(fam, method="exact", return_score=True)
    assert score == pytest.approx(best)
    assert st.graph_score(fam, adj) == pytest.approx(best)


@pytest.mark.fast
def test_exact_search_beats_or_equals_hill_climbing():
  for seed in range(6):
    fam = _random_table(7, 2, seed)
    exact, e_score = st.search(fam, method="exact", return_score=True)
    hill, h_score = st.search(fam, method="hill", restarts=1, seed=seed, return_score=True)
    assert h_score == pytest.approx(st.graph_score(fam, hill))
    assert nx.is_directed_acyclic_graph(nx.from_numpy_array(hill, create_using=nx.DiGraph))
    assert e_score >= h_score - 1e-9
  # Forbidden edges are honoured by both.
  forbidden = np.ones((7, 7), bool)
  for method in ("exact", "hill"):
    assert st.search(fam, method=method, forbidden=forbidden).sum() == 0


def test_edge_report_orients_intervened_edges():
  x, regimes, adj, _ = _interventional()
  n = adj.shape[0]
  fam = st.family_scores(x, np.eye(n + 1)[regimes], _single_target(n), max_parents=3)
  report = st.edge_report(fam, adj)
  assert {r["edge"] for r in report} == set(zip(*map(tuple, np.nonzero(adj))))
  for r in report:  # both endpoints are intervened in some regime
    assert r["decided"] and r["reverse_gain"] > 10 and r["gain"] > 10, r
  hill = st.edge_report(fam, adj, method="hill")
  assert [r["decided"] for r in hill] == [r["decided"] for r in report]


@pytest.mark.fast
def test_edge_report_observational_chain_is_undecided_v_structure_is_decided():
  rng = np.random.default_rng(3)
  s = 3000
  a = rng.normal(size=s)
  b = 0.9 * a + 0.5 * rng.normal(size=s)
  fam = st.family_scores(np.column_stack([a, b]), np.ones((s, 1)), np.zeros((1, 2), bool))
  (r,) = st.edge_report(fam, [[0, 1], [0, 0]])
  assert r["gain"] > 100 and abs(r["reverse_gain"]) < 1.0 and not r["decided"], r
  # a -> c <- b: both edges compelled by observational data alone.
  bb = rng.normal(size=s)
  c = 0.8 * a + 0.8 * bb + 0.5 * rng.normal(size=s)
  fam = st.family_scores(np.column_stack([a, bb, c]), np.ones((s, 1)), np.zeros((1, 3), bool))
  v = np.array([[0, 0, 1], [0, 0, 1], [0, 0, 0]])
  assert np.array_equal(st.search(fam, method="exact"), v)
  report = st.edge_report(fam, v)
  assert all(r["decided"] for r in report), report


def test_structural_em_with_true_posterior_recovers_the_graph():
  x, regimes, adj, true = _interventional()
  n = adj.shape[0]
  posterior = np.asarray(scm.true_posterior(true, jnp.asarray(x, jnp.float32)), np.float64)
  changes = _single_target(n)
  fam = st.family_scores(x, posterior, changes)
  calls = []

  def fit_regimes(graph):
    calls.append(np.array(graph))
    return posterior, changes, st.graph_score(fam, graph)

  out = st.structural_em(fit_regimes, x)
  assert np.array_equal(out.adj, adj)
  assert len(calls) <= 3 and np.array_equal(calls[1], adj)
  assert out.history[1]["added"] and out.history[-1]["stop"] == "graph repeats"
  assert out.score == pytest.approx(st.graph_score(fam, adj))
  assert all(e["decided"] for e in out.edges)

  # A regime model that prefers the empty graph: one proposal, then a stop, the first kept.
  worse = st.structural_em(lambda g: (posterior, changes, -float(np.sum(g))), x, report=False)
  assert len(worse.history) == 2 and worse.history[-1]["stop"] == "score did not improve"
  assert worse.adj.sum() == 0 and np.array_equal(worse.history[1]["adj"], adj)


# (not fast: over 2 s with its compiles)
def test_refine_keeps_the_regime_models_graph_only_where_its_check_holds():
  """``learn.refine`` from a graph with two edges reversed, the E-step the true regimes
  (free-target families, the table's own score as the BIC): structural EM finds the true
  graph, kept where ``holds`` says the regime model's check holds on it, the learned
  graph kept (and recorded as refused) where it does not; from the true graph nothing
  moves and no check is asked."""
  from vcm_jax import learn
  x, regimes, adj, _ = _interventional()
  n = adj.shape[0]
  weights = np.eye(n + 1)[regimes]
  fam, _ = st.family_scores_free(x, weights, max_parents=n - 1)
  assert np.array_equal(st.search(fam), adj)  # (the table's optimum is the truth)
  fit_regimes = lambda g: (weights, _single_target(n), st.graph_score(fam, g))
  edges = list(zip(*np.nonzero(adj)))
  wrong = adj.copy()
  for i, j in edges[:2]:
    wrong[i, j], wrong[j, i] = 0, 1
  assert st.is_dag(wrong) and _shd(wrong, adj) == 2
  learned = st.StructuralEM(adj=wrong, score=0.0, weights=None, changes=None, history=[],
                            edges=[], family=None)
  asked = []

  def holds(answer):
    return lambda g: asked.append(np.array(g)) or answer

  found, record = learn.refine(fit_regimes, holds(True), x, learned, max_parents=n - 1)
  assert np.array_equal(found.adj, adj) and record["kept"] and record["check_holds"]
  assert np.array_equal(asked[-1], adj)
  assert found.score == pytest.approx(st.graph_score(fam, adj))
  assert record["rounds"][0]["bic"] > record["start_bic"]
  assert sorted(record["rounds"][0]["reversed"]) == sorted((int(j), int(i)) for i, j in edges[:2])
  found, record = learn.refine(fit_regimes, holds(False), x, learned, max_parents=n - 1)
  assert np.array_equal(found.adj, wrong) and not record["kept"] and not record["check_holds"]
  asked.clear()
  right = learned._replace(adj=adj)
  found, record = learn.refine(fit_regimes, holds(True), x, right, max_parents=n - 1)
  assert found is right and not record["kept"] and "check_holds" not in record and not asked


@pytest.fixture
def default_200_steps():
  """``config.data_default`` with at most 200 steps, for every fit of the test (each
  structural EM round's): the test's time is mostly those steps (the batch is 1000 rows,
  whatever the data's size). (The graph learned and repaired through the command, with
  the regimes at the ceiling: tests/test_cli_graph.py.)"""
  from vcm_jax import config
  data_default = config.data_default
  with pytest.MonkeyPatch.context() as patch:
    patch.setattr(config, "data_default", lambda: data_default().replace(num_steps=200))
    yield


@pytest.mark.usefixtures("default_200_steps")
def test_repair_of_a_right_graph_under_multi_target_regimes_changes_nothing():
  """A regime that changes two mechanisms fails the single-target fit's check on the
  right graph, and there the free-target mixture's BIC is the higher: the repair
  searches with that latent from it (not the single-target posterior, under which
  structural EM drifted) and keeps every edge."""
  import sys
  import os
  from vcm_jax import config, learn
  sys.path.insert(0, os.path.dirname(__file__))
  import test_sparse
  x, _, _ = test_sparse._multi_target_data(n=3000)
  out = learn.learn_graph(jax.random.key(0), x, config.data_default(), start=test_sparse.ADJ)
  repair = out["repair"]
  assert repair["latent"] == "free-target", repair
  assert repair["bic_free_target"] > repair["bic_single_target"], repair
  assert out["changes"] == [], out["changes"]
  np.testing.assert_array_equal(out["adjacency"], test_sparse.ADJ)


@pytest.mark.fast
def test_is_dag_agrees_with_networkx():
  """``structure.is_dag`` (the one cycle test of the search and the repair's changes)
  against networkx on random directed graphs, cyclic and not."""
  rng = np.random.default_rng(0)
  verdicts = []
  for _ in range(200):
    n = int(rng.integers(1, 7))
    adj = (rng.random((n, n)) < rng.uniform(0.05, 0.4)).astype(int)
    np.fill_diagonal(adj, 0)
    want = nx.is_directed_acyclic_graph(nx.from_numpy_array(adj, create_using=nx.DiGraph))
    assert st.is_dag(adj) == want, adj
    verdicts.append(want)
  assert 20 < sum(verdicts) < 180  # both kinds were drawn


@pytest.mark.fast
def test_edge_diff_names_added_removed_and_reversed_edges():
  """``structure.edge_diff`` (the search's and the repair's history) on a hand-made
  pair, and against a set reference on random graphs: a reversed edge is neither added
  nor removed."""
  old = np.zeros((3, 3), int); old[0, 1] = old[1, 2] = 1
  new = np.zeros((3, 3), int); new[1, 0] = new[0, 2] = 1
  assert st.edge_diff(old, new) == dict(added=[(0, 2)], removed=[(1, 2)], reversed=[(0, 1)])
  rng = np.random.default_rng(1)
  for _ in range(100):
    a, b = (np.triu(rng.random((5, 5)) < 0.4, 1) for _ in range(2))
    turned = np.triu(rng.random((5, 5)) < 0.5, 1)
    b = np.where(turned | turned.T, b.T, b)  # some edges turned round
    e_a = {(int(i), int(j)) for i, j in zip(*np.nonzero(a))}
    e_b = {(int(i), int(j)) for i, j in zip(*np.nonzero(b))}
    rev = {(i, j) for i, j in e_a if (j, i) in e_b}
    d = st.edge_diff(a, b)
    assert set(d["reversed"]) == rev
    assert set(d["added"]) == e_b - e_a - {(j, i) for i, j in rev}
    assert set(d["removed"]) == e_a - e_b - rev


@pytest.mark.fast
def test_a_mixture_with_no_finite_restart_gives_uniform_responsibilities_and_says_so():
  """Rows the mixture cannot fit (a NaN in every restart's data): structural EM's first
  posterior is uniform, with a FitWarning, never a NaN posterior."""
  import vcm_jax
  from vcm_jax import learn
  x = np.random.default_rng(0).normal(size=(60, 3))
  x[5, 1] = np.nan
  with pytest.warns(vcm_jax.FitWarning, match="no finite restart"):
    weights = learn.mixture_posterior(jax.random.key(0), x, n_regimes=2)
  np.testing.assert_array_equal(weights, np.full((60, 2), 0.5))


@pytest.mark.fast
def test_sparse_candidates_keep_the_true_parents_within_the_table():
  """Each node's candidates (its strongest partial correlations within the regimes)
  hold its true parents, the table over their sets is no larger than the one over every
  set of the narrower width, and the search over it finds the true graph as the search
  over every set does; where every set fits, None."""
  from vcm_jax import learn
  x, regimes, adj, _ = _interventional()
  n = adj.shape[0]
  weights = np.eye(n + 1)[regimes]
  assert learn.n_families([n - 1] * n, 3) == n * (1 + 5 + 10 + 10)
  assert learn.sparse_candidates(x, weights, 3) is None   # (6 nodes: every set fits)
  # the learning search: every set up to 15 nodes; above, 4 parents among candidates
  assert learn.search_max_parents(15) == learn.default_max_parents(15) == 4
  assert learn.search_max_parents(16) == learn.search_max_parents(30) == 4
  assert (learn.default_max_parents(16), learn.default_max_parents(30)) == (3, 2)
  keep = np.zeros((n, n), bool)
  keep[0, 5] = keep[5, 0] = True
  # sets of up to 3 parents, no node with more than every set of up to 2 (1 + 5 + 10 =
  # 16): at most 4 candidates a node (1 + 4 + 6 + 4 = 15 sets; 5 would be 26)
  cand = learn.sparse_candidates(x, weights, 3, width=2, keep=keep)
  assert cand.shape == (n, n) and cand.dtype == bool and not cand.diagonal().any()
  assert np.array_equal(cand, cand.T) and cand[0, 5]
  assert cand.sum(0).max() <= 4 and cand.sum() < n * (n - 1), cand
  assert (cand[adj > 0]).all(), (adj, cand)
  fam, _ = st.family_scores_free(x, weights, max_parents=3, candidates=cand)
  assert fam.scores.shape[1] <= learn.n_families([n - 1], 2)
  assert np.array_equal(st.search(fam, method="exact"), adj)


def _wide_parent_data(seed=0, rows=3000):
  """x4 <- x0, x1, x2, x3 (four parents, x3 weakest) and x5 <- x4; regime k >= 1 shifts
  node k - 1 (single-target mean shifts, the observational regime 0)."""
  rng = np.random.default_rng(seed)
  n = 6
  regime = rng.integers(0, n + 1, rows)
  shift = 2.5 * (regime[:, None] - 1 == np.arange(n)[None])
  e = rng.normal(size=(rows, n))
  x = np.zeros((rows, n))
  x[:, :4] = e[:, :4] + shift[:, :4]
  x[:, 4] = x[:, :4] @ np.array([0.9, -0.8, 0.7, 0.6]) + 0.5 * e[:, 4] + shift[:, 4]
  x[:, 5] = -0.8 * x[:, 4] + 0.5 * e[:, 5] + shift[:, 5]
  adj = np.zeros((n, n), int)
  adj[:4, 4] = 1
  adj[4, 5] = 1
  return x, regime, adj


def test_families_grown_past_the_cap_are_those_of_a_wider_table():  # (not fast: 3 programs)
  """``grown_at_cap`` adds, for a node at the cap, its parents plus each allowed node not
  already among them, scored exactly as the wider table scores the same sets (with the
  same change sets); nodes under the cap get none, and a graph under the cap grows
  nothing."""
  x, regime, adj = _wide_parent_data()
  weights = 0.9 * np.eye(7)[regime] + 0.1 / 7
  narrow, own = st.family_scores_free(x, weights, max_parents=2)
  wide, wide_own = st.family_scores_free(x, weights, max_parents=3)
  at_cap = np.zeros_like(adj)
  at_cap[[0, 1], 4] = 1                                    # node 4 at the cap of 2
  assert st.grown_at_cap(narrow, own, np.zeros_like(adj), x, weights, cap=2) is None
  grown, grown_own = st.grown_at_cap(narrow, own, at_cap, x, weights, cap=2)
  assert grown.parents.shape[-1] >= 3 and grown_own.shape[1] == grown.scores.shape[1]
  added = {j: [tuple(sorted(p for p in grown.parents[j, c] if p >= 0))
               for c in range(narrow.scores.shape[1], grown.scores.shape[1])
               if np.isfinite(grown.scores[j, c])] for j in range(6)}
  assert added[4] == [(0, 1, 2), (0, 1, 3), (0, 1, 5)]
  assert not any(added[j] for j in (0, 1, 2, 3, 5))
  for c in range(narrow.scores.shape[1], grown.scores.shape[1]):
    if not np.isfinite(grown.scores[4, c]):
      continue
    pa = sorted(p for p in grown.parents[4, c] if p >= 0)
    w = next(w for w in range(wide.scores.shape[1])
             if sorted(p for p in wide.parents[4, w] if p >= 0) == pa)
    np.testing.assert_allclose(grown.scores[4, c], wide.scores[4, w], rtol=1e-6)  # (float32)
    np.testing.assert_allclose(grown.loglik[4, c], wide.loglik[4, w], rtol=1e-6)
    assert np.array_equal(grown_own[4, c], wide_own[4, w])
  # candidates limit the new parent; sets already in the table are not added again
  cand = np.ones((6, 6), bool)
  cand[5, 4] = False
  limited, _ = st.grown_at_cap(narrow, own, at_cap, x, weights, cap=2, candidates=cand)
  assert sorted(tuple(sorted(p for p in limited.parents[4, c] if p >= 0))
                for c in range(narrow.scores.shape[1], limited.scores.shape[1])
                if np.isfinite(limited.scores[4, c])) == [(0, 1, 2), (0, 1, 3)]
  assert st.grown_at_cap(grown, grown_own, at_cap, x, weights, cap=2) is None
