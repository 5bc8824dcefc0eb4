"""DAGs: jittable Erdos-Renyi sampling, topological order, parent tables, validation.

Convention everywhere: ``adj[i, j] = 1`` means the edge ``i -> j``; node ``j``'s
parents are the non-zero rows of column ``j``.
"""
from __future__ import annotations

import functools
import operator
from typing import Sequence

import jax
import jax.numpy as jnp
import networkx as nx
import numpy as np

from vcm_jax import inputs


# The array functions here are jitted (behind a host check of concrete arguments): called
# eagerly (data generation, the command's set-up, the tests), each of their operations
# compiled a program of its own.
def sample_er_dag(key: jax.Array, *, n_nodes: int, edge_prob: float) -> jax.Array:
  """Erdos-Renyi DAG over a uniformly random node order.

  A strictly upper-triangular Bernoulli matrix is conjugated by a random
  permutation (``P^T A P``), so column order is not a topological order.

  Args:
    key: PRNG key.
    n_nodes: N >= 1, static (else a ``ValueError``).
    edge_prob: probability of each edge of the hidden order (may be traced; a
      concrete one outside [0, 1] is a ``ValueError``).

  Returns:
    adj: ``[N, N]`` float32 0/1 adjacency, ``adj[i, j] = 1`` for ``i -> j``.
  """
  if not (inputs.is_integer(n_nodes) and operator.index(n_nodes) >= 1):
    raise ValueError(f"n_nodes={n_nodes!r} must be an integer >= 1")
  inputs.check_probability("edge_prob", edge_prob)
  return _sample_er_dag(key, operator.index(n_nodes), edge_prob)


@functools.partial(jax.jit, static_argnums=1)
def _sample_er_dag(key, n_nodes: int, edge_prob):
  k_edges, k_perm = jax.random.split(key)
  upper = jnp.triu(jnp.ones((n_nodes, n_nodes), bool), k=1)
  edges = jax.random.bernoulli(k_edges, edge_prob, (n_nodes, n_nodes)) & upper
  perm = jax.random.permutation(k_perm, n_nodes)
  # Node perm[r] takes rank r in the hidden order.
  adj = jnp.zeros((n_nodes, n_nodes), bool).at[perm[:, None], perm[None, :]].set(edges)
  return adj.astype(jnp.float32)


@jax.jit
def node_depths(adj: jax.Array) -> jax.Array:
  """Length of the longest path from a root to each node, ``[N]`` int32.

  N rounds of ``depth_j = max_i adj[i, j] (depth_i + 1)`` reach the fixed point
  on a DAG (no path is longer than N - 1 edges).
  """
  n = adj.shape[-1]
  has_edge = adj > 0

  def relax(depth, _):
    cand = jnp.where(has_edge, depth[:, None] + 1, 0)
    return jnp.maximum(depth, cand.max(axis=0)), None

  depth, _ = jax.lax.scan(relax, jnp.zeros(n, jnp.int32), None, length=n)
  return depth


def topological_order(adj: jax.Array) -> jax.Array:
  """A topological order as an ``[N]`` int32 array (jittable): parents first. A
  concrete ``adj`` that is not a square acyclic graph is a one-line ``ValueError`` (on
  a cycle the depths have no fixed point: the order would be a guess); a traced one
  cannot be checked."""
  check_concrete_dag(adj)
  return jnp.argsort(node_depths(adj), stable=True).astype(jnp.int32)


def check_concrete_dag(adj) -> None:
  """``validate_dag``'s square and cycle checks for a concrete ``[N, N]`` ``adj`` (a
  traced one, or a batch of graphs, passes unchecked): one ``ValueError`` naming the
  cycle. ``kahn_order`` first, so that a DAG costs no graph library."""
  if isinstance(adj, jax.core.Tracer):
    return
  a = np.asarray(adj)
  if a.ndim != 2 or a.shape[0] != a.shape[1]:
    if a.ndim == 2:
      raise ValueError(f"adjacency must be square, got shape {a.shape}")
    return
  edges = (a > 0).astype(int)  # (an edge as the parent table reads one)
  try:
    kahn_order(edges)
  except ValueError:
    validate_dag(edges)  # names the cycle
    raise


def kahn_order(adj) -> list[int]:
  """A topological order on the host (Kahn's algorithm, ready nodes first-in first-out),
  for simulators that draw node by node; ``ValueError`` on a cycle. (``topological_order``
  is the jittable one; the two may order independent nodes differently.)"""
  adj = np.asarray(adj)
  indeg, order = (adj > 0).sum(0).astype(int), []
  ready = [j for j in range(len(adj)) if indeg[j] == 0]
  while ready:
    j = ready.pop(0)
    order.append(j)
    for c in np.flatnonzero(adj[j]):
      indeg[c] -= 1
      if indeg[c] == 0:
        ready.append(int(c))
  if len(order) != len(adj):
    raise ValueError("the graph has a cycle")
  return order


def edge_changes(adj, given=None) -> list[tuple[int, int, str]]:
  """``[(i, j, kind)]``: every edge of ``adj`` (kind ``learned`` without a given graph;
  else ``kept``, ``added`` or ``reversed``: given as ``j -> i``), in row-major order, then
  every edge ``i -> j`` of ``given`` that ``adj`` has in neither direction (``removed``)."""
  adj = np.asarray(adj) != 0
  given = None if given is None else np.asarray(given) != 0
  out = []
  for i, j in zip(*np.nonzero(adj)):
    if given is None:
      kind = "learned"
    else:
      kind = "kept" if given[i, j] else "reversed" if given[j, i] else "added"
    out.append((int(i), int(j), kind))
  if given is not None:
    out += [(int(i), int(j), "removed") for i, j in zip(*np.nonzero(given & ~adj & ~adj.T))]
  return out


def named_changes(given, learned, names) -> list[dict]:
  """The changes from ``given`` to ``learned`` without score gains (a graph learned
  from scratch beside a given one): ``{change: added / reversed / removed, source,
  target}`` by name."""
  return [dict(change=kind, source=names[i], target=names[j])
          for i, j, kind in edge_changes(learned, given) if kind != "kept"]


def max_in_degree(adj) -> int:
  """Largest number of parents of any node, over any leading batch axes (host)."""
  adj = np.asarray(adj)
  return int((adj > 0).sum(axis=-2).max()) if adj.size else 0


def parent_table(adj: jax.Array, max_parents: int) -> tuple[jax.Array, jax.Array]:
  """Gather table of each node's parents, padded to ``max_parents`` (static).

  Lets per-node mechanisms read only their parents: cost O(N * D) per sample
  instead of O(N^2) for a dense mask when graphs are sparse.

  Returns:
    idx: ``[N, D]`` int32 parent indices (padding points at node 0).
    mask: ``[N, D]`` float32, 1 where ``idx`` is a real parent.

  A concrete ``adj`` that is not square, has a cycle, or has a node of more than
  ``max_parents`` parents is a ``ValueError`` (the table would drop some: the fit would
  run on another graph); a traced one cannot be checked, and its table keeps the first
  ``max_parents``.
  """
  if not isinstance(adj, jax.core.Tracer):
    check_concrete_dag(adj)
    check_max_parents(adj, max_parents)
  return _parent_table(adj, max(int(max_parents), 1))


def check_max_parents(adj, max_parents: int) -> None:
  """A ``ValueError`` where a node of the concrete ``adj`` has more than ``max_parents``
  parents (the parent table would drop some)."""
  in_degree = (np.asarray(adj) > 0).sum(-2)
  if in_degree.max(initial=0) > max(int(max_parents), 1):
    j = np.unravel_index(np.argmax(in_degree), in_degree.shape)[-1]
    raise ValueError(f"max_parents={max_parents} is below node {j}'s {in_degree.max()} "
                     "parents: the parent table would drop some; use the largest in-degree "
                     "(graphs.max_in_degree)")


@functools.partial(jax.jit, static_argnames="d")
def _parent_table(adj, d: int):
  n = adj.shape[-1]
  is_parent = adj.T > 0  # [child, parent]
  # Parents first (stable, so by index), then non-parents.
  order = jnp.argsort(~is_parent, axis=1, stable=True)[:, :d]
  mask = jnp.take_along_axis(is_parent, order, axis=1)
  idx = jnp.where(mask, order, 0).astype(jnp.int32)
  if d > n:  # more slots than nodes: pad.
    pad = d - n
    idx = jnp.pad(idx, ((0, 0), (0, pad)))
    mask = jnp.pad(mask, ((0, 0), (0, pad)))
  return idx, mask.astype(jnp.float32)


def table_adjacency(parent_idx, parent_mask) -> np.ndarray:
  """``[N, N]`` 0/1 adjacency of a parent table (``parent_table``'s inverse, host)."""
  idx, mask = np.asarray(parent_idx), np.asarray(parent_mask) > 0
  adj = np.zeros((idx.shape[0],) * 2, int)
  for child in range(idx.shape[0]):
    adj[idx[child][mask[child]], child] = 1
  return adj


def validate_dag(adj, names: Sequence[str] | None = None) -> None:
  """Host-side check of a user's graph; raises ``ValueError`` naming the problem.

  Checks: square, 0/1 entries, no self-loop, no cycle (the cycle's nodes are
  named in the message).
  """
  adj = np.asarray(adj)
  if adj.ndim != 2 or adj.shape[0] != adj.shape[1]:
    raise ValueError(f"adjacency must be square, got shape {adj.shape}")
  n = adj.shape[0]
  names = list(names) if names is not None else [str(i) for i in range(n)]
  if not np.all(np.isin(adj, (0, 1))):
    i, j = np.argwhere(~np.isin(adj, (0, 1)))[0]
    raise ValueError(f"adjacency entry ({names[i]}, {names[j]}) is {adj[i, j]!r}; expected 0 or 1")
  loops = np.flatnonzero(np.diag(adj))
  if loops.size:
    raise ValueError(f"self-loop on node {names[loops[0]]}")
  g = nx.from_numpy_array(adj, create_using=nx.DiGraph)
  try:
    cycle = nx.find_cycle(g)
  except nx.NetworkXNoCycle:
    return
  nodes = [names[u] for u, _ in cycle]
  raise ValueError("graph has a cycle: " + " -> ".join(nodes + [nodes[0]]))


def resolve_max_parents(adj, requested: int = 0) -> int:
  """The parent table's width for graphs ``adj`` (host): ``requested``, or the largest
  in-degree when it is 0, and at least 1; ``ValueError`` when ``requested`` is below
  the largest in-degree (the table would silently drop parents)."""
  needed = max_in_degree(adj)
  if 0 < requested < needed:
    raise ValueError(f"model.max_parents={requested} is below the graph's largest in-degree "
                     f"({needed}); use 0 for automatic")
  return max(requested or needed, 1)


def as_adjacency(graph) -> np.ndarray:
  """A graph over nodes ``0..N-1`` (an adjacency array, a ``networkx.DiGraph`` or an edge
  list) as an ``[N, N]`` 0/1 array (host): ``named.adjacency`` without names, so a graph
  over named nodes is an error here, never read by position."""
  from vcm_jax import named
  return named.adjacency(graph, None, graph.number_of_nodes() if isinstance(graph, nx.Graph)
                         else None)
