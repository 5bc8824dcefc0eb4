"""Writing results: atomic text, JSON and ``.npy`` writers, ``assignments.csv`` and graphs."""
from __future__ import annotations

import json
import os
import tempfile
from typing import Iterable, Iterator, Sequence

import numpy as np

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


def data_csv_chunks(x, labels, names: Sequence[str], *, cell: str = "%.7g",
                    block: int = 20000) -> Iterator[str]:
  """A data CSV in row blocks, as ``read_data`` reads it: a header of ``names`` and
  ``regime``, then each row's cells (``cell``: ``"%.7g"``, or ``"%r"`` for every digit
  of the value) and its label (millions of rows without one string object per cell)."""
  labels = np.asarray(labels).astype(str)
  line = ",".join([cell] * len(names)) + ",%s"
  yield ",".join([*names, "regime"]) + "\n"
  for start in range(0, len(x), block):
    rows = zip(*np.asarray(x[start:start + block]).T.tolist(),
               labels[start:start + block].tolist())
    yield "\n".join(map(line.__mod__, rows)) + "\n"


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


def graph_csv(adj, names: Sequence[str]) -> str:
  """A DAG as an edge-list CSV that ``read_graph`` reads back: header ``source,target``,
  a row ``i,j`` per edge ``adj[i, j] != 0`` (row-major order), then a row ``name,`` per
  node without edges (an edge list declares an isolated node so)."""
  adj = np.asarray(adj) != 0
  if adj.shape != (len(names), len(names)):
    raise ValueError(f"adjacency of shape {adj.shape} for {len(names)} names")
  cells = [_csv_cell(str(n)) for n in names]
  lines = ["source,target"]
  lines += [f"{cells[i]},{cells[j]}" for i, j in zip(*np.nonzero(adj))]
  touched = adj.any(0) | adj.any(1)
  lines += [f"{cells[j]}," for j in np.flatnonzero(~touched)]
  return "\n".join(lines) + "\n"


def write_graph(path: str, adj, names: Sequence[str]) -> None:
  """``graph_csv`` written atomically to ``path``."""
  write_text_atomic(path, graph_csv(adj, names))
