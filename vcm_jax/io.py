"""Reading a user's data and graph, checking them, writing results (host side, NumPy).

The only module of the library that touches files. Every problem with the
input raises ``InputError`` with one line that names it: the file, the row and
column of a bad value, the nodes on a cycle, the names that do not match.
Rows are counted from 0 over the data rows (the header is not a row), the way
``assignments.csv`` numbers them.
"""
from __future__ import annotations

import array
import csv
import json
import math
import os
import tempfile
import warnings
from typing import Iterable, Iterator, NamedTuple, Sequence

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


def _bad_cell(path, cell, value, row: int, name: str) -> str | None:
  """The one-line complaint about a cell (``value`` is its float, or None), or None if fine."""
  if value is None:
    shown = repr(cell) if cell.strip() else "an empty cell"
    return f"data file {path}: non-numeric value {shown} at row {row}, column {name!r}"
  if not math.isfinite(value):
    return (f"data file {path}: {'NaN' if math.isnan(value) else 'infinite value'} "
            f"at row {row}, column {name!r}")
  return None


def read_data(path: str, *, labels: str | None = None) -> Table:
  """A CSV (header of names, one sample per row) or ``.npz`` (one 1-D array per name).

  ``labels`` names a column kept out of the variables (the true regimes, if known).
  A CSV is parsed by NumPy's C reader (a million rows of 100 columns in seconds);
  a file it cannot take, or that has a bad cell, goes through the careful reader,
  which names the first bad cell (the leftmost column that has one, its first row).
  """
  if path.endswith(".npz"):
    names, values, label_values = _read_npz(path, labels)
  else:
    table = _read_csv_fast(path, labels)
    names, values, label_values = table if table is not None else _read_csv_careful(path, labels)
  constant = np.flatnonzero(np.ptp(values, axis=0) == 0)
  if constant.size:
    j = int(constant[0])
    raise InputError(f"data file {path}: column {names[j]!r} is constant ({values[0, j]:g} in "
                     f"every row); it carries no information about the regimes")
  return Table(names, values, label_values)


def _label_errors(path, names, labels, n_variables):
  if labels is not None and labels not in names:
    raise InputError(f"data file {path}: label column {labels!r} is not among its columns "
                     f"({', '.join(names)})")
  if not n_variables:
    raise InputError(f"data file {path} has no variable columns")


def _first_non_finite(path, names, values):
  """Raise for the first NaN or infinity, in the careful reader's order (by column, then row)."""
  finite = np.isfinite(values)
  if finite.all():
    return
  j = int(np.flatnonzero(~finite.all(0))[0])
  i = int(np.flatnonzero(~finite[:, j])[0])
  raise InputError(_bad_cell(path, "", float(values[i, j]), i, names[j]))


def _read_csv_fast(path: str, labels: str | None):
  """``(names, values [S, N] float64, labels [S] or None)`` by ``np.loadtxt``, or None when
  the file needs the careful reader (unreadable, blank or ragged rows, a non-numeric cell...).

  Every row's field count is checked (no ``usecols``, which would let extra fields
  through); the label column goes through a converter that numbers its distinct values.
  """
  codes: dict = {}
  try:
    with open(path, encoding="utf-8-sig") as f:  # -sig: drop a BOM; universal newlines
      first = f.readline()
      header = next(csv.reader([first]), [])
      if not any(c.strip() for c in header) or first.count('"') % 2:
        return None  # a blank first line, or a quoted name over several lines
      try:
        names = _check_names(header, f"data file {path}")
      except InputError:
        return None  # the careful reader names it, after the problems that come first
      label_col = names.index(labels) if labels in names else None
      converters = None if label_col is None else {
          label_col: lambda cell: float(codes.setdefault(cell, len(codes)))}
      with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "input contained no data": the careful reader says it
        data = np.loadtxt(f, delimiter=",", comments=None, quotechar='"', dtype=np.float64,
                          ndmin=2, converters=converters)
  except (OSError, ValueError):  # UnicodeDecodeError is a ValueError
    return None
  if data.shape[0] == 0 or data.shape[1] != len(names):
    return None
  _label_errors(path, names, labels, len(names) - (label_col is not None))
  if label_col is None:
    _first_non_finite(path, names, data)
    return names, data, None
  keys = np.asarray([str(k).strip() for k in codes], dtype=str)
  label_values = keys[data[:, label_col].astype(np.int64)]
  last = label_col == len(names) - 1  # the usual place: a view, no copy
  values = data[:, :-1] if last else np.delete(data, label_col, axis=1)
  names = [n for j, n in enumerate(names) if j != label_col]
  _first_non_finite(path, names, values)
  return names, values, label_values


def _read_csv_careful(path: str, labels: str | None):
  """The reader of record, cell by cell, naming every problem; returns what
  ``_read_csv_fast`` does.

  Rows whose cells are all blank are skipped; rows are numbered over the others.
  Problems are reported in a fixed order: the file, its header, missing rows, the
  first ragged row, the label column, then the first bad cell (leftmost column,
  then first row). Memory: the text and one row at a time, not one object per cell.
  """
  text = _read_text(path, "data")
  rows = (r for r in csv.reader(text.splitlines()) if any(c.strip() for c in r))
  header = next(rows, None)
  if header is None:
    raise InputError(f"data file {path} is empty")
  names = _check_names(header, f"data file {path}")
  label_col = names.index(labels) if labels in names else None
  variables = [j for j in range(len(names)) if j != label_col]
  values, label_cells, first_bad = array.array("d"), [], {}
  n_rows = 0
  for i, row in enumerate(rows):
    if len(row) != len(names):
      raise InputError(f"data file {path}: row {i} has {len(row)} fields, the header has "
                       f"{len(names)}")
    parsed = [_parse_float(row[j]) for j in variables]
    if None in parsed or not all(math.isfinite(v) for v in parsed):
      for slot, (j, v) in enumerate(zip(variables, parsed)):
        problem = _bad_cell(path, row[j], v, i, names[j])
        if problem and slot not in first_bad:
          first_bad[slot] = problem
      parsed = [math.nan if v is None else v for v in parsed]
    values.extend(parsed)
    if label_col is not None:
      label_cells.append(row[label_col].strip())
    n_rows += 1
  if not n_rows:
    raise InputError(f"data file {path} has a header but no data rows")
  _label_errors(path, names, labels, len(variables))
  if first_bad:
    raise InputError(first_bad[min(first_bad)])
  label_values = None if label_col is None else np.asarray(label_cells, dtype=str)
  values = np.frombuffer(values, np.float64).reshape(n_rows, len(variables)).copy()
  return [names[j] for j in variables], values, label_values


def _read_npz(path: str, labels: str | None):
  """``(names, values [S, N] float64, labels [S] or None)`` from one 1-D array per name."""
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
  columns = list(arrays.values())
  if len(columns[0]) == 0:
    raise InputError(f"data file {path} has no data rows")
  variables = [n for n in names if n != labels]
  _label_errors(path, names, labels, len(variables))
  label_values = None
  if labels is not None:
    column = columns[names.index(labels)]
    column = column if column.dtype.kind in "USO" else column.astype(np.float64)
    label_values = np.char.strip(column.astype(str))
  values = np.empty((len(columns[0]), len(variables)), np.float64)
  for j, name in enumerate(variables):  # by column: the first bad cell of the leftmost one
    column = columns[names.index(name)]
    if column.dtype.kind in "USO":
      cells = [str(c) for c in column]
      parsed = [_parse_float(c) for c in cells]
      bad = next((i for i, v in enumerate(parsed) if v is None or not math.isfinite(v)), None)
      if bad is not None:
        raise InputError(_bad_cell(path, cells[bad], parsed[bad], bad, name))
      values[:, j] = parsed
    else:
      values[:, j] = column
      _first_non_finite(path, [name], values[:, j:j + 1])
  return variables, values, label_values


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
  obs = set(OBSERVATIONAL_LABELS)
  # Decide on the distinct labels (a few hundred), then spread over the rows (millions).
  distinct, inverse = np.unique(np.asarray(labels).astype(str), return_inverse=True)
  inverse = inverse.reshape(-1)
  lowered = [l.lower() for l in distinct.tolist()]
  if all(l in index or low in obs for l, low in zip(distinct.tolist(), lowered)):
    codes = np.array([index.get(l, -1) if low not in obs else -1
                      for l, low in zip(distinct.tolist(), lowered)], np.int32)
    return codes[inverse]
  try:
    ids = distinct.astype(np.float64)
  except ValueError:
    return None
  if np.all(ids == np.round(ids)) and ids.min() >= 0 and ids.max() <= len(names):
    return (ids.astype(np.int32) - 1)[inverse]
  return None


def write_text_atomic(path: str, text: str) -> None:
  """Write through a temporary file and rename: a crash never leaves half a file."""
  write_chunks_atomic(path, [text])


def write_chunks_atomic(path: str, chunks: Iterable[str]) -> None:
  """``write_text_atomic`` for text made a piece at a time (a large CSV in row blocks)."""
  _write_atomic(path, lambda f: f.writelines(chunks), "w")


def write_npy_atomic(path: str, values: np.ndarray) -> None:
  """``np.save`` through a temporary file and rename."""
  _write_atomic(path, lambda f: np.save(f, values, allow_pickle=False), "wb")


def _write_atomic(path, write, mode):
  directory = os.path.dirname(path) or "."
  fd, tmp = tempfile.mkstemp(dir=directory, suffix=".tmp")
  try:
    with os.fdopen(fd, mode, **({} if "b" in mode else {"newline": ""})) as f:
      write(f)
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise


def write_json_atomic(path: str, payload) -> None:
  write_text_atomic(path, json.dumps(payload, indent=2) + "\n")


FULL_POSTERIOR_MAX = 12  # up to this many regimes assignments.csv lists every probability
TOP_REGIMES = 3          # above it: the best regimes of each row only (posterior.npy has all)


def assignments_csv(posterior: np.ndarray, targets: Sequence[str]) -> str:
  """``assignments.csv`` as one string (``assignments_chunks`` joined)."""
  return "".join(assignments_chunks(posterior, targets))


def assignments_chunks(posterior: np.ndarray, targets: Sequence[str], *, outlier=None,
                       block: int = 65536) -> Iterator[str]:
  """``assignments.csv`` in row blocks: ``row,regime,target,probability`` and then
  ``p_0..p_{K-1}`` when K <= ``FULL_POSTERIOR_MAX``, else for the 2nd and 3rd most
  probable regimes ``top2_regime,top2_target,top2_probability,top3_...``.

  ``regime`` is the argmax of the posterior (the first, on ties), ``target`` its
  target node's name. Formatting runs in C over each row (``%`` on a tuple), so a
  million rows take seconds.

  Args:
    posterior: ``[S, K]`` regime probabilities (regime 0 observational), any float dtype.
    targets: ``[K]`` target name per regime ("" for the observational one; names
      joined by ``+`` for a regime that changes several mechanisms).
    outlier: optional ``[S]`` probability that a row holds a gross error: a last
      column ``outlier``.
  """
  s, k = posterior.shape
  full = k <= FULL_POSTERIOR_MAX
  top = 1 if full else min(TOP_REGIMES, k)
  head = ["row", "regime", "target", "probability"]
  if full:
    head += [f"p_{j}" for j in range(k)]
  else:
    head += [f"top{t}_{f}" for t in range(2, top + 1) for f in ("regime", "target", "probability")]
  line = "%d," + ",".join(["%d,%s,%.6g"] * top) + ("," + ",".join(["%.6g"] * k) if full else "")
  if outlier is not None:
    head, line = head + ["outlier"], line + ",%.4g"
  cells = np.asarray([_csv_cell(t) for t in targets], dtype=object)
  yield ",".join(head) + "\n"
  for start in range(0, s, block):
    p = np.asarray(posterior[start:start + block], np.float64)
    columns = [np.arange(start, start + len(p))]
    rest, at = (p.copy() if top > 1 else p), np.arange(len(p))
    for t in range(top):  # argmax, then argmax of the rest: ties go to the lower id
      best = rest.argmax(1)
      columns += [best, cells[best], p[at, best]]
      if t + 1 < top:
        rest[at, best] = -np.inf
    if full:
      columns += list(p.T)
    if outlier is not None:
      columns.append(np.asarray(outlier[start:start + block], np.float64))
    rows = zip(*(c.tolist() for c in columns))
    yield "\n".join(map(line.__mod__, rows)) + "\n"


def write_assignments(path: str, posterior: np.ndarray, targets: Sequence[str],
                      outlier=None) -> None:
  """``assignments_chunks`` written atomically to ``path``."""
  write_chunks_atomic(path, assignments_chunks(posterior, targets, outlier=outlier))


def _csv_cell(text: str) -> str:
  if any(c in text for c in ',"\n'):
    return '"' + text.replace('"', '""') + '"'
  return text
