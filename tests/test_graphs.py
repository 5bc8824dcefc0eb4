"""vcm_jax.graphs: ER DAG sampling, topological order, parent tables, validation."""
import functools

import jax
import jax.numpy as jnp
import networkx as nx
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vcm_jax import graphs


@functools.partial(jax.jit, static_argnames="n_nodes")
def _sample_many(keys, edge_prob, *, n_nodes):
  return jax.vmap(lambda k: graphs.sample_er_dag(k, n_nodes=n_nodes, edge_prob=edge_prob))(keys)


_N, _REPS = 6, 2000


def _batch(seed, p):
  """``[2000, 6, 6]`` DAGs: one compiled program serves every test of this module."""
  return np.asarray(_sample_many(jax.random.split(jax.random.key(seed), _REPS), p, n_nodes=_N))


def _is_dag(adj):
  return nx.is_directed_acyclic_graph(nx.from_numpy_array(np.asarray(adj), create_using=nx.DiGraph))


@pytest.mark.fast
def test_sample_er_dag_acyclic_binary_no_self_loops():
  adjs = _batch(0, 0.6)[:200]
  assert adjs.shape == (200, 6, 6)
  assert adjs.dtype == np.float32
  assert set(np.unique(adjs)) <= {0.0, 1.0}
  assert np.all(np.diagonal(adjs, axis1=1, axis2=2) == 0)
  assert all(_is_dag(a) for a in adjs)


@pytest.mark.fast
def test_sample_er_dag_edge_density_matches_edge_prob():
  n, p, reps = _N, 0.3, _REPS
  adjs = _batch(1, p)
  pairs = n * (n - 1) // 2
  total = adjs.sum()
  expected = reps * pairs * p
  std = np.sqrt(reps * pairs * p * (1 - p))
  assert abs(total - expected) < 5 * std, (total, expected, std)
  # An edge never appears in both directions.
  assert np.all(adjs * np.swapaxes(adjs, 1, 2) == 0)
  # Per-graph mean number of edges = p N (N - 1) / 2.
  assert abs(adjs.sum(axis=(1, 2)).mean() - p * pairs) < 5 * std / reps


@pytest.mark.fast
def test_sample_er_dag_extreme_probabilities():
  n = _N
  empty = _batch(2, 0.0)
  full = _batch(2, 1.0)[:100]
  assert empty.sum() == 0
  # p = 1: a tournament that is a DAG, i.e. every pair joined once, acyclic.
  assert np.all(full.sum(axis=(1, 2)) == n * (n - 1) // 2)
  assert all(_is_dag(a) for a in full)


@pytest.mark.fast
def test_column_order_is_not_topological():
  adjs = _batch(3, 0.5)[:50]
  lower = np.tril(adjs, k=-1).sum(axis=(1, 2))  # edges i -> j with i > j
  upper = np.triu(adjs, k=1).sum(axis=(1, 2))
  assert (lower > 0).any()
  assert (upper > 0).any()
  # Roughly symmetric between the two halves (random node order).
  assert 0.3 < lower.sum() / (lower.sum() + upper.sum()) < 0.7


def _check_topological(adj, order):
  adj, order = np.asarray(adj), np.asarray(order)
  n = adj.shape[0]
  assert sorted(order.tolist()) == list(range(n))
  pos = np.empty(n, int)
  pos[order] = np.arange(n)
  for i, j in zip(*np.nonzero(adj)):
    assert pos[i] < pos[j], (i, j, order)


@pytest.mark.fast
def test_topological_order_parents_first_under_jit_and_vmap():
  adjs = jnp.asarray(_batch(4, 0.5)[:40])
  orders = jax.jit(jax.vmap(graphs.topological_order))(adjs)
  assert orders.dtype == jnp.int32
  for adj, order in zip(adjs, orders):
    _check_topological(adj, order)
  # Eager and jitted agree.
  np.testing.assert_array_equal(graphs.topological_order(adjs[0]),
                                jax.jit(graphs.topological_order)(adjs[0]))


@pytest.mark.fast
def test_topological_order_long_chain():
  # Chain 4 -> 3 -> 2 -> 1 -> 0: the only order is reversed.
  n = 5
  adj = np.zeros((n, n), np.float32)
  for i in range(1, n):
    adj[i, i - 1] = 1
  order = jax.jit(graphs.topological_order)(jnp.asarray(adj))
  np.testing.assert_array_equal(order, [4, 3, 2, 1, 0])
  np.testing.assert_array_equal(graphs.node_depths(jnp.asarray(adj)), [4, 3, 2, 1, 0])


@pytest.mark.fast
@pytest.mark.parametrize("max_parents", [None, 2, 9])
def test_parent_table_matches_numpy(max_parents):
  adjs = _batch(5, 0.5)[:20]
  for adj in adjs:
    in_deg = adj.sum(axis=0).astype(int)
    d = int(in_deg.max()) if max_parents is None else max_parents
    if d < in_deg.max():
      continue
    idx, mask = graphs.parent_table(jnp.asarray(adj), d)
    idx, mask = np.asarray(idx), np.asarray(mask)
    assert idx.shape == (6, max(d, 1)) and mask.shape == (6, max(d, 1))
    assert idx.dtype == np.int32 and mask.dtype == np.float32
    assert set(np.unique(mask)) <= {0.0, 1.0}
    for j in range(6):
      parents = np.flatnonzero(adj[:, j])
      real = idx[j][mask[j] > 0]
      np.testing.assert_array_equal(np.sort(real), parents)
      assert mask[j].sum() == in_deg[j]
      # Parents come first, padding points at node 0.
      assert np.all(mask[j][:in_deg[j]] == 1)
      assert np.all(idx[j][mask[j] == 0] == 0)


@pytest.mark.fast
def test_parent_table_more_slots_than_nodes_and_jit():
  adj = jnp.array([[0, 1, 1], [0, 0, 1], [0, 0, 0]], jnp.float32)
  idx, mask = jax.jit(graphs.parent_table, static_argnums=1)(adj, 5)
  np.testing.assert_array_equal(idx, [[0, 0, 0, 0, 0], [0, 0, 0, 0, 0], [0, 1, 0, 0, 0]])
  np.testing.assert_array_equal(mask, [[0, 0, 0, 0, 0], [1, 0, 0, 0, 0], [1, 1, 0, 0, 0]])
  # max_parents = 0 still gives one (masked) slot.
  idx0, mask0 = graphs.parent_table(jnp.zeros((3, 3)), 0)
  assert idx0.shape == (3, 1) and float(mask0.sum()) == 0


@pytest.mark.fast
def test_validate_dag_names_cycle_nodes():
  names = ["alpha", "beta", "gamma", "delta"]
  adj = np.zeros((4, 4), int)
  adj[0, 1] = adj[1, 2] = adj[2, 0] = 1  # alpha -> beta -> gamma -> alpha
  adj[2, 3] = 1
  with pytest.raises(ValueError, match="cycle") as err:
    graphs.validate_dag(adj, names)
  msg = str(err.value)
  for name in ("alpha", "beta", "gamma"):
    assert name in msg
  assert "delta" not in msg
  # Default names are the node indices.
  with pytest.raises(ValueError, match=r"0.*1.*2|1.*2.*0|2.*0.*1"):
    graphs.validate_dag(adj)


@pytest.mark.fast
def test_validate_dag_self_loop_and_bad_inputs():
  adj = np.zeros((3, 3))
  adj[0, 1] = 1
  adj[2, 2] = 1
  with pytest.raises(ValueError, match="self-loop") as err:
    graphs.validate_dag(adj, ["x", "y", "zed"])
  assert "zed" in str(err.value)
  with pytest.raises(ValueError, match="square"):
    graphs.validate_dag(np.zeros((2, 3)))
  bad = np.zeros((3, 3))
  bad[0, 2] = 0.5
  with pytest.raises(ValueError, match="0 or 1"):
    graphs.validate_dag(bad)
  ok = np.zeros((3, 3))
  ok[0, 1] = ok[1, 2] = ok[0, 2] = 1
  assert graphs.validate_dag(ok) is None
  assert graphs.validate_dag(_batch(0, 0.7)[0]) is None


@pytest.mark.fast
def test_max_in_degree():
  adj = np.zeros((4, 4))
  adj[0, 3] = adj[1, 3] = adj[2, 3] = adj[0, 1] = 1
  assert graphs.max_in_degree(adj) == 3
  assert graphs.max_in_degree(adj.T) == 2  # in-degree of the transpose = out-degree of node 0
  batch = np.stack([adj, np.zeros((4, 4))])
  assert graphs.max_in_degree(batch) == 3
  assert graphs.max_in_degree(np.zeros((3, 3))) == 0
  adjs = _batch(6, 0.5)[:30]
  assert graphs.max_in_degree(adjs) == int(adjs.sum(axis=1).max())


_SAMPLERS = {n: jax.jit(functools.partial(graphs.sample_er_dag, n_nodes=n)) for n in range(1, 13)}


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 12), p=st.floats(0.0, 1.0), seed=st.integers(0, 2**31 - 1))
def test_property_sampled_dag_is_acyclic(n, p, seed):
  adj = np.asarray(_SAMPLERS[n](jax.random.key(seed), edge_prob=p))
  assert adj.shape == (n, n)
  assert _is_dag(adj)
  assert np.all(np.diag(adj) == 0)
  graphs.validate_dag(adj)  # raises on any cycle or self-loop


@pytest.mark.fast
def test_edge_changes_names_kept_added_reversed_and_removed():
  stated = np.array([[0, 1, 1, 0], [0, 0, 0, 1], [0, 0, 0, 0], [0, 0, 0, 0]])
  learned = np.array([[0, 1, 0, 0], [0, 0, 0, 0], [1, 0, 0, 0], [1, 0, 0, 0]])
  assert graphs.edge_changes(learned, stated) == [
      (0, 1, "kept"), (2, 0, "reversed"), (3, 0, "added"), (1, 3, "removed")]
  assert graphs.edge_changes(learned) == [(0, 1, "learned"), (2, 0, "learned"),
                                          (3, 0, "learned")]
  assert graphs.named_changes(stated, learned, "abcd") == [
      dict(change="reversed", source="c", target="a"),
      dict(change="added", source="d", target="a"),
      dict(change="removed", source="b", target="d")]
