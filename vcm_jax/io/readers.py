"""Reading a user's data file (CSV or ``.npz``) and its label column.

Every problem raises ``InputError`` with one line that names the file, the row
and column of a bad value. Rows are counted from 0 over the data rows (the
header is not a row), the way ``assignments.csv`` numbers them.
"""
from __future__ import annotations

import array
import csv
import math
import warnings
from typing import NamedTuple, Sequence

import numpy as np

from vcm_jax.io.errors import InputError

OBSERVATIONAL_LABELS = ("", "obs", "observational", "none", "control")


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
    shown = f"non-numeric value {cell!r}" if cell.strip() else "an empty cell"
    return f"data file {path}: {shown} at row {row}, column {name!r}"
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
  text_cells = [0] * len(variables)  # per variable column, its cells that are not numbers
  n_rows = 0
  for i, row in enumerate(rows):
    if len(row) != len(names):
      raise InputError(f"data file {path}: row {i} has {len(row)} fields, the header has "
                       f"{len(names)}")
    parsed = [_parse_float(row[j]) for j in variables]
    if None in parsed or not all(math.isfinite(v) for v in parsed):
      for slot, (j, v) in enumerate(zip(variables, parsed)):
        problem = _bad_cell(path, row[j], v, i, names[j])
        text_cells[slot] += v is None and bool(row[j].strip())
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
    slot = min(first_bad)
    hint = ""
    if text_cells[slot] == n_rows and labels is None:  # a column of words: labels?
      hint = (f" (every cell of {names[variables[slot]]!r} is text: if it holds the regime "
              f"labels, name it with --config.data.labels={names[variables[slot]]})")
    raise InputError(first_bad[slot] + hint)
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
