"""Named data in, names out: a table's columns and a graph's nodes matched by name.

``as_arrays(x, graph, names)`` turns what a user hands ``vcm_jax.fit`` into the
arrays the library fits: ``x`` as ``[S, N]`` float32, the graph as an ``[N, N]``
adjacency in the column order, and the column names. The data may be a pandas
DataFrame (pandas is optional: it is read through ``.columns`` and ``.to_numpy``)
or an array with ``names=``; the graph a ``networkx.DiGraph``, an edge list of
``(source, target)`` pairs, a dict of children lists (``{"A": ["B"]}``), a named
adjacency (a DataFrame with the names as index and columns), or an ``[N, N]`` array.
Named nodes are matched by name in any order. A name missing from one side, an extra
one, or a duplicate is a one-line ``ValueError`` naming it; an array with a graph over
non-integer nodes and no names is an error, not a guess by position; a graph of no
known form is one line too.
"""
from __future__ import annotations

from typing import Sequence

import networkx as nx
import numpy as np


def is_frame(obj) -> bool:
  return hasattr(obj, "columns") and hasattr(obj, "to_numpy")


def _unique_names(names: Sequence, where: str) -> tuple:
  names = tuple(names)
  seen, dup = set(), []
  for name in names:
    if name in seen and name not in dup:
      dup.append(name)
    seen.add(name)
  if dup:
    raise ValueError(f"{where} has duplicate names: {', '.join(map(str, dup))}")
  return names


def _match(graph_nodes: Sequence, names: tuple, what: str) -> list[int]:
  """Column index of every graph node; every column must be a node and vice versa."""
  graph_nodes = _unique_names(graph_nodes, what)
  missing = [n for n in names if n not in set(graph_nodes)]
  extra = [n for n in graph_nodes if n not in set(names)]
  if missing or extra:
    parts = []
    if extra:
      parts.append(f"{what} names {', '.join(map(repr, extra))}, not in the data's columns")
    if missing:
      parts.append(f"data column(s) {', '.join(map(repr, missing))} missing from {what}")
    raise ValueError("; ".join(parts))
  where = {name: i for i, name in enumerate(names)}
  return [where[n] for n in graph_nodes]


def data_names(x, names=None) -> tuple[np.ndarray, tuple | None]:
  """``(values [S, N], names or None)`` of a DataFrame or an array (``names=``)."""
  if is_frame(x):
    frame_names = tuple(x.columns)
    if names is not None and tuple(names) != frame_names:
      raise ValueError("names= differs from the DataFrame's columns; give one of them")
    names = frame_names
    x = x.to_numpy()
  values = np.asarray(x)
  if names is not None:
    names = _unique_names(names, "the data")
    if values.ndim == 2 and len(names) != values.shape[1]:
      raise ValueError(f"names has {len(names)} entries but x has {values.shape[1]} columns")
  return values, names


def adjacency(graph, names: tuple | None, n_columns: int | None) -> np.ndarray:
  """The graph as an ``[N, N]`` 0/1 int array in the data's column order (module doc);
  ``n_columns`` None (no data, ``graphs.as_adjacency``): integer nodes ``0..`` the
  largest one named."""
  if isinstance(graph, nx.Graph):
    if not graph.is_directed():
      raise ValueError("graph must be directed (a networkx.DiGraph), got an undirected graph")
    return _from_edges(list(graph.nodes), list(graph.edges), names, n_columns, "the graph")
  if is_frame(graph):
    rows, cols = tuple(graph.index), tuple(graph.columns)
    if set(rows) != set(cols):
      raise ValueError("a named adjacency needs the same names as its index and its columns")
    values = np.asarray(graph.to_numpy())
    edges = [(rows[i], cols[j]) for i, j in zip(*np.nonzero(values))]
    return _from_edges(list(cols), edges, names, n_columns, "the adjacency")
  from_dict = isinstance(graph, dict)
  if from_dict:  # {node: its children}, networkx's dict of lists
    graph = [(a, b) for a, children in graph.items() for b in _children(a, children)]
  if from_dict or (_is_edge_list(graph) and not _is_adjacency_of_two(graph, n_columns)):
    edges = [tuple(e) for e in graph]
    nodes = list(dict.fromkeys(n for e in edges for n in e))
    if names is not None:  # nodes without edges are the data's other columns
      nodes += [n for n in names if n not in set(nodes)]
    return _from_edges(nodes, edges, names, n_columns, "the edge list")
  _not_a_pair(graph)
  try:
    adj = np.asarray(graph)
  except ValueError:  # (ragged rows)
    adj = None
  if (adj is None or adj.ndim != 2 or adj.shape[0] != adj.shape[1]
      or not (adj.dtype == bool or np.issubdtype(adj.dtype, np.number))):
    raise ValueError(f"graph must be an [N, N] adjacency, a networkx.DiGraph, an edge list of "
                     f"(source, target) pairs, a dict of children or a named adjacency; got "
                     f"{type(graph).__name__}{'' if adj is None else f' of shape {adj.shape}'}")
  return adj.astype(np.int64) if adj.dtype == bool else adj


def _children(node, children) -> list:
  if isinstance(children, (str, bytes)) or not hasattr(children, "__iter__"):
    raise ValueError(f"graph[{node!r}] must list {node!r}'s children; got {children!r}")
  return list(children)


def _not_a_pair(graph) -> None:
  """A list of sequences, some not of two entries and not a row of numbers: an edge list
  with a bad entry (an adjacency's rows are numbers)."""
  if not isinstance(graph, (list, tuple)):
    return
  for e in graph:
    if (isinstance(e, (list, tuple)) and len(e) != 2
        and not all(isinstance(v, (int, float, bool, np.number)) for v in e)):
      raise ValueError(f"the edge list's entry {tuple(e)!r} is not a (source, target) pair")


def _is_edge_list(graph) -> bool:
  if isinstance(graph, np.ndarray) or not isinstance(graph, (list, tuple)):
    return False
  return len(graph) == 0 or all(isinstance(e, (list, tuple)) and len(e) == 2
                                and not isinstance(e[0], (list, tuple)) for e in graph)


def _is_adjacency_of_two(graph, n_columns: int | None) -> bool:
  """A 2 x 2 list of 0 / 1 for two columns: the adjacency, not two edges (read as edges it
  would hold a self-loop, a repeated edge or a cycle: never a DAG)."""
  return (n_columns in (2, None) and len(graph) == 2
          and all(isinstance(v, (int, np.integer)) and v in (0, 1) for e in graph for v in e))


def _from_edges(nodes: list, edges: list, names: tuple | None, n_columns: int | None,
                what: str) -> np.ndarray:
  if names is None:
    integers = all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in nodes)
    if nodes and not integers:
      raise ValueError(f"{what} has named nodes ({', '.join(map(repr, nodes[:3]))}, ...) but "
                       "the data have no names: pass a DataFrame or names=")
    if n_columns is None:  # (no data: the nodes 0..the largest named)
      n_columns = int(max(nodes)) + 1 if nodes else 0
    outside = sorted(v for v in nodes if not 0 <= v < n_columns)
    if outside:  # (a node 0..N-1 without edges is a column all the same)
      raise ValueError(f"{what} names node {outside[-1]}, but the data have {n_columns} "
                       f"columns (nodes 0..{n_columns - 1})")
    if len(nodes) < n_columns:  # integer nodes: columns without edges are nodes too
      nodes = nodes + [i for i in range(n_columns) if i not in set(nodes)]
    names_ = tuple(range(n_columns))
    column = _match(nodes, names_, what)
  elif set(nodes) == set(range(len(names))) and not set(nodes) & set(names):
    column = list(nodes)  # integer nodes 0..N-1 with named columns: positions
  else:
    column = _match(nodes, names, what)
  pos = dict(zip(nodes, column))
  adj = np.zeros((len(nodes), len(nodes)), np.int64)
  for a, b in edges:
    if a not in pos or b not in pos:
      raise ValueError(f"{what} has an edge {a!r} -> {b!r} over a node not in the data")
    adj[pos[a], pos[b]] = 1
  return adj


def as_arrays(x, graph, names=None):
  """``(x [S, N], adjacency [N, N] or None, names tuple or None)`` (module doc)."""
  values, names = data_names(x, names)
  n = values.shape[1] if values.ndim == 2 else 0
  adj = None if graph is None else adjacency(graph, names, n)
  return values, adj, names
