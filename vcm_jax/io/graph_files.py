"""Reading a graph file (adjacency CSV, edge-list CSV, GML, GraphML) as a DAG
over the data's columns, matching its node names to them."""
from __future__ import annotations

import csv
from typing import Sequence

import networkx as nx
import numpy as np

from vcm_jax import graphs
from vcm_jax.io.errors import InputError
from vcm_jax.io.readers import _check_names, _parse_float, _read_text

EDGE_LIST_HEADERS = (("source", "target"), ("from", "to"), ("parent", "child"), ("cause", "effect"))


def read_graph(path: str, names: Sequence[str]) -> np.ndarray:
  """The DAG over ``names`` as ``[N, N]`` 0/1 (``A[i, j] = 1`` for ``i -> j``), in that order.

  Formats, detected from the extension and the content: GML, GraphML (networkx),
  an edge-list CSV (header ``source,target``, or from,to / parent,child /
  cause,effect; a row with an empty target declares an isolated node), an adjacency CSV (header row and first column of names).
  """
  text = _read_text(path, "graph")
  head = text.lstrip()[:200].lower()
  if not head:
    raise InputError(f"graph file {path} is empty")
  if path.lower().endswith(".gml") or head.startswith("graph"):
    nodes, edges = _read_networkx(path, nx.read_gml)
  elif path.lower().endswith(".graphml") or head.startswith("<?xml") or "<graphml" in head:
    nodes, edges = _read_networkx(path, nx.read_graphml)
  else:
    rows = [[c.strip() for c in r] for r in csv.reader(text.splitlines()) if any(c.strip() for c in r)]
    if tuple(c.lower() for c in rows[0][:2]) in EDGE_LIST_HEADERS:
      nodes, edges = _edge_list(path, rows)
    else:
      nodes, edges = _adjacency(path, rows)
  return _align(path, nodes, edges, list(names))


def _read_networkx(path, reader):
  try:
    g = reader(path)
  except Exception as err:  # networkx raises many types for malformed files
    raise InputError(f"cannot read graph file {path}: {str(err).splitlines()[0]}") from None
  if not g.is_directed():
    raise InputError(f"graph file {path} holds an undirected graph; a DAG needs directed edges")
  nodes = [str(n) for n in g.nodes]
  return nodes, [(str(u), str(v)) for u, v in g.edges]


def _edge_list(path, rows):
  nodes, edges = [], []
  for i, row in enumerate(rows[1:]):
    if len(row) < 2 or not row[0]:
      raise InputError(f"graph file {path}: edge row {i} needs 'source,target'")
    source, target = row[0], row[1]
    nodes.append(source)
    if target:
      nodes.append(target)
      edges.append((source, target))
  return list(dict.fromkeys(nodes)), edges


def _adjacency(path, rows):
  header = _check_names(rows[0][1:], f"graph file {path} (header)")
  row_names = _check_names([r[0] for r in rows[1:]], f"graph file {path} (first column)")
  if set(row_names) != set(header) or len(rows) - 1 != len(header):
    raise InputError(f"graph file {path}: an adjacency matrix needs the same names in its header "
                     f"and first column (header {len(header)}, rows {len(rows) - 1}); for an edge "
                     f"list use the header 'source,target'")
  edges = []
  for row in rows[1:]:
    if len(row) != len(header) + 1:
      raise InputError(f"graph file {path}: row {row[0]!r} has {len(row) - 1} entries, "
                       f"expected {len(header)}")
    for target, cell in zip(header, row[1:]):
      v = _parse_float(cell)
      if v not in (0.0, 1.0):
        raise InputError(f"graph file {path}: entry ({row[0]}, {target}) is {cell!r}; "
                         f"expected 0 or 1")
      if v == 1.0:
        edges.append((row[0], target))
  return header, edges


def _align(path, nodes, edges, names):
  if len(set(names)) != len(names):
    dup = next(n for n in names if names.count(n) > 1)
    raise InputError(f"duplicate variable name {dup!r}")
  missing = [n for n in nodes if n not in names]
  if missing:
    raise InputError(f"graph file {path}: node(s) {', '.join(map(repr, missing))} are not "
                     f"columns of the data")
  absent = [n for n in names if n not in set(nodes)]
  if absent:
    raise InputError(f"data column(s) {', '.join(map(repr, absent))} are not in the graph "
                     f"{path} (an edge list declares an isolated node with a row 'name,')")
  index = {n: i for i, n in enumerate(names)}
  adj = np.zeros((len(names), len(names)), np.int32)
  for u, v in edges:
    if u == v:
      raise InputError(f"graph file {path}: self-loop on node {u!r}")
    adj[index[u], index[v]] = 1
  try:
    graphs.validate_dag(adj, names)
  except ValueError as err:
    raise InputError(f"graph file {path}: {err}") from None
  return adj
