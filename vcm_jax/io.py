"""Reading a user's data and graph, checking them, writing results (host side, NumPy).

The only module of the library that touches files. Every problem with the
input raises ``InputError`` with one line that names it: the file, the row and
column of a bad value, the nodes on a cycle, the names that do not match.
Rows are counted from 0 over the data rows (the header is not a row), the way
``assignments.csv`` numbers them.
"""
from __future__ import annotations

import csv
import json
import math
import os
import tempfile
from typing import NamedTuple, Sequence

import networkx as nx
import numpy as np

from vcm_jax import graphs

OBSERVATIONAL_LABELS = ("", "obs", "observational", "none", "control")
EDGE_LIST_HEADERS = (("source", "target"), ("from", "to"), ("parent", "child"), ("cause", "effect"))


class InputError(ValueError):
  """A problem with a user's file: the message names it in one line."""


class Table(NamedTuple):
  names: list          # [N] variable names, in the data's column order
  values: np.ndarray   # [S, N] float64
  labels: np.ndarray | None  # [S] str, the optional label column


def _read_text(path: str, what: str) -> str:
  try:
    with open(path, newline="", encoding="utf-8-sig") as f:  # -sig: drop a BOM
      return f.read()
  except (OSError, UnicodeDecodeError) as err:
    reason = err.strerror if isinstance(err, OSError) and err.strerror else type(err).__name__
    raise InputError(f"cannot read {what} file {path}: {reason}") from None


def _check_names(names: Sequence[str], where: str) -> list:
  names = [n.strip() for n in names]
  if any(not n for n in names):
    raise InputError(f"{where}: column {names.index('') + 1} has an empty name")
  seen = set()
  for n in names:
    if n in seen:
      raise InputError(f"{where}: duplicate name {n!r}")
    seen.add(n)
  return names


def _parse_float(cell: str):
  try:
    return float(cell)
  except ValueError:
    return None


def read_data(path: str, *, labels: str | None = None) -> Table:
  """A CSV (header of names, one sample per row) or ``.npz`` (one 1-D array per name).

  ``labels`` names a column kept out of the variables (the true regimes, if known).
  """
  if path.endswith(".npz"):
    columns, names = _read_npz(path)
  else:
    columns, names = _read_csv_columns(path)
  if labels is not None and labels not in names:
    raise InputError(f"data file {path}: label column {labels!r} is not among its columns "
                     f"({', '.join(names)})")
  label_values = None
  if labels is not None:
    label_values = np.asarray([str(v).strip() for v in columns[names.index(labels)]], dtype=str)
    keep = [i for i, n in enumerate(names) if n != labels]
    names = [names[i] for i in keep]
    columns = [columns[i] for i in keep]
  if not names:
    raise InputError(f"data file {path} has no variable columns")
  values = np.empty((len(columns[0]), len(names)), np.float64)
  for j, (name, col) in enumerate(zip(names, columns)):
    for i, cell in enumerate(col):
      v = _parse_float(cell) if isinstance(cell, str) else float(cell)
      if v is None:
        shown = repr(cell) if cell.strip() else "an empty cell"
        raise InputError(f"data file {path}: non-numeric value {shown} at row {i}, "
                         f"column {name!r}")
      if not math.isfinite(v):
        raise InputError(f"data file {path}: {'NaN' if math.isnan(v) else 'infinite value'} "
                         f"at row {i}, column {name!r}")
      values[i, j] = v
  for j, name in enumerate(names):
    if np.ptp(values[:, j]) == 0:
      raise InputError(f"data file {path}: column {name!r} is constant ({values[0, j]:g} in "
                       f"every row); it carries no information about the regimes")
  return Table(names, values, label_values)


def _read_csv_columns(path: str):
  text = _read_text(path, "data")
  rows = [r for r in csv.reader(text.splitlines()) if any(c.strip() for c in r)]
  if not rows:
    raise InputError(f"data file {path} is empty")
  names = _check_names(rows[0], f"data file {path}")
  body = rows[1:]
  if not body:
    raise InputError(f"data file {path} has a header but no data rows")
  for i, row in enumerate(body):
    if len(row) != len(names):
      raise InputError(f"data file {path}: row {i} has {len(row)} fields, the header has "
                       f"{len(names)}")
  return [list(c) for c in zip(*body)], names


def _read_npz(path: str):
  try:
    with np.load(path, allow_pickle=False) as archive:
      arrays = {k: archive[k] for k in archive.files}
  except (OSError, ValueError) as err:
    raise InputError(f"cannot read data file {path}: {err}") from None
  if not arrays:
    raise InputError(f"data file {path} is empty")
  names = _check_names(list(arrays), f"data file {path}")
  lengths = {k: v.shape for k, v in arrays.items()}
  for k, v in arrays.items():
    if v.ndim != 1:
      raise InputError(f"data file {path}: array {k!r} has shape {v.shape}; expected 1-D")
  if len({v.shape[0] for v in arrays.values()}) > 1:
    raise InputError(f"data file {path}: arrays differ in length ({lengths})")
  columns = []
  for k in names:
    v = arrays[k]
    columns.append([str(c) for c in v] if v.dtype.kind in "USO" else v.astype(np.float64))
  if len(columns[0]) == 0:
    raise InputError(f"data file {path} has no data rows")
  return columns, names


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


def label_targets(labels: np.ndarray, names: Sequence[str]) -> np.ndarray | None:
  """Target node per sample from a label column, ``[S]`` int (-1 observational), or None.

  Labels name the target node (or one of ``OBSERVATIONAL_LABELS``), or are
  regime ids ``0..N`` with 0 observational and ``k`` the k-th data column.
  Other labels still give ARI and NMI, but no target accuracy.
  """
  index = {n: i for i, n in enumerate(names)}
  obs = {s for s in OBSERVATIONAL_LABELS}
  lowered = np.char.lower(labels.astype(str))
  if all(l in index or low in obs for l, low in zip(labels, lowered)):
    return np.array([index.get(l, -1) if low not in obs else -1
                     for l, low in zip(labels, lowered)], np.int32)
  try:
    ids = labels.astype(np.float64)
  except ValueError:
    return None
  if np.all(ids == np.round(ids)) and ids.min() >= 0 and ids.max() <= len(names):
    return ids.astype(np.int32) - 1
  return None


def write_text_atomic(path: str, text: str) -> None:
  """Write through a temporary file and rename: a crash never leaves half a file."""
  directory = os.path.dirname(path) or "."
  fd, tmp = tempfile.mkstemp(dir=directory, suffix=".tmp")
  try:
    with os.fdopen(fd, "w", newline="") as f:
      f.write(text)
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise


def write_json_atomic(path: str, payload) -> None:
  write_text_atomic(path, json.dumps(payload, indent=2) + "\n")


def assignments_csv(posterior: np.ndarray, targets: Sequence[str]) -> str:
  """``row,regime,target,probability,p_0..p_{K-1}``: regime = argmax of the posterior.

  Args:
    posterior: ``[S, K]`` regime probabilities (regime 0 observational).
    targets: ``[K]`` target name per regime ("" for the observational one).
  """
  regime = posterior.argmax(1)
  prob = posterior[np.arange(len(regime)), regime]
  k = posterior.shape[1]
  lines = [",".join(["row", "regime", "target", "probability"] + [f"p_{j}" for j in range(k)])]
  body = np.char.mod("%.6g", posterior)
  for i in range(len(regime)):
    lines.append(f"{i},{regime[i]},{_csv_cell(targets[regime[i]])},{prob[i]:.6g},"
                 + ",".join(body[i]))
  return "\n".join(lines) + "\n"


def _csv_cell(text: str) -> str:
  if any(c in text for c in ',"\n'):
    return '"' + text.replace('"', '""') + '"'
  return text
