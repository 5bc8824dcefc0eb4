"""The data a fit takes, checked the same way at both doors (``vcm_jax.fit`` and the
own-data command): numbers, finite, within float32's range, no column that float32
holds as one value, enough rows. Each failure is a one-line ``ValueError`` that names
the cell or the column; the command prefixes its file's name."""
from __future__ import annotations

import operator

import numpy as np

_F32_MAX = float(np.finfo(np.float32).max)


def is_integer(n) -> bool:
  """Whether ``n`` is an integer (Python's, NumPy's, a 0-d integer array), not a float,
  a bool or a string that would read as one."""
  try:
    operator.index(n)
  except TypeError:
    return False
  return not isinstance(n, bool)


def check_probability(name: str, value) -> None:
  """A ``ValueError`` where a concrete ``value`` (a number or an array) has an entry
  outside [0, 1]; a traced one (under ``jit`` or ``vmap``) cannot be checked."""
  import jax
  if isinstance(value, jax.core.Tracer):
    return
  v = np.asarray(value, float)
  if not ((v >= 0) & (v <= 1)).all():
    raise ValueError(f"{name}={value} must be a probability, in [0, 1]")


def min_rows(n_nodes: int) -> int:
  """Fewest rows a fit needs: a few per regime of the structured latent, and 20 in all."""
  return max(20, 2 * (n_nodes + 1))


def _column(j: int, names) -> str:
  return f"{j}" if names is None else f"{j} ({names[j]!r})"


def _first_non_number(x: np.ndarray, names, what: str) -> str:
  """Where a table that NumPy cannot read as numbers first holds a cell that is not one
  (by column, then row), in one line."""
  cells = np.asarray(x, dtype=object)
  if cells.ndim != 2:
    return f"{what} must be numbers and [samples, nodes]; got shape {cells.shape}"
  for j in range(cells.shape[1]):
    for i, cell in enumerate(cells[:, j]):
      try:
        float(cell)
      except (TypeError, ValueError):
        return (f"{what} has a value that is not a number, {cell!r}, at row {i}, column "
                f"{_column(j, names)}")
  return f"{what} must be numbers"


def checked(x, n_nodes: int | None = None, names=None, what: str = "x") -> np.ndarray:
  """``x`` as an ``[S, N]`` float32 array to fit, or a one-line ``ValueError`` (module
  doc).

  ``n_nodes``: the graph's node count (None: no graph); ``names``: the N column names;
  ``what``: how the messages name the data (the command: its file)."""
  wide = _finite_table(x, n_nodes, names, what)
  s, n = wide.shape
  if s < min_rows(n):
    raise ValueError(f"{what} has {s} rows; {n} variables need at least {min_rows(n)}")
  x = wide.astype(np.float32, copy=False)
  for j in np.flatnonzero((x == x[:1]).all(0)):
    # One value in float32 where float64 saw several: the spread is below float32's
    # resolution at the column's size (values near 1e8 step by 8).
    spread = np.ptp(wide[:, j])
    why = ("nothing to fit; drop it" if spread == 0 else
           f"its spread ({spread:.3g}) is below float32's resolution at that size: subtract "
           "an offset (or rescale) first")
    raise ValueError(f"{what}: column {_column(j, names)} holds one value ({x[0, j]:.6g}) in "
                     f"every row: {why}")
  return x


def query_rows(x, n_nodes: int, names=None) -> np.ndarray:
  """Rows a fitted model is asked about (``Fit.score``, ``posterior``...): ``[S, N]``
  float32 (one row may come as ``[N]``), numbers, finite, within float32's range, the
  fit's N columns; or a one-line ``ValueError``."""
  if np.ndim(x) == 1 and np.shape(x)[0] == n_nodes:
    x = np.asarray(x)[None]
  rows = _finite_table(x, n_nodes, names, "x")
  if rows.shape[0] == 0:  # (a score of no rows was NaN, a BIC a ZeroDivisionError)
    raise ValueError("x has no rows")
  return rows.astype(np.float32, copy=False)


def _finite_table(x, n_nodes: int | None, names, what: str) -> np.ndarray:
  """``x`` as float64 ``[S, N]`` (float32 as it is: no copy, and within range by its
  type), numbers, finite, within float32's range."""
  try:
    wide = np.asarray(x)
  except (TypeError, ValueError):
    raise ValueError(_first_non_number(x, names, what)) from None
  if np.iscomplexobj(wide):  # (astype would drop the imaginary parts with a warning)
    where = ""
    if wide.ndim == 2 and np.any(np.imag(wide) != 0):
      i, j = np.argwhere(np.imag(wide) != 0)[0]
      where = f" ({wide[i, j]} at row {i}, column {_column(j, names)})"
    raise ValueError(f"{what} holds complex numbers{where}; a fit takes real numbers")
  try:
    if wide.dtype != np.float32:
      wide = wide.astype(np.float64)
  except (TypeError, ValueError):
    raise ValueError(_first_non_number(x, names, what)) from None
  if wide.ndim != 2:
    raise ValueError(f"{what} must be [samples, nodes]; got shape {wide.shape}")
  if n_nodes is not None and wide.shape[1] != n_nodes:
    raise ValueError(f"{what} has {wide.shape[1]} columns but the graph has {n_nodes} nodes")
  finite = np.isfinite(wide)
  if not finite.all():
    i, j = np.argwhere(~finite)[0]
    raise ValueError(f"{what} has a non-finite value ({wide[i, j]}) at row {i}, column "
                     f"{_column(j, names)}")
  big = wide.dtype != np.float32 and np.abs(wide).max(initial=0.0) > _F32_MAX
  if big:
    i, j = np.argwhere(np.abs(wide) > _F32_MAX)[0]
    raise ValueError(f"{what}: the value {wide[i, j]:.6g} at row {i}, column "
                     f"{_column(j, names)} is beyond float32's range (+-{_F32_MAX:.3g}): "
                     "rescale the column")
  return wide
