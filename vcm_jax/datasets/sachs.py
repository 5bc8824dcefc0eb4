"""Sachs et al. (2005) flow-cytometry data, shipped with the package (no network).

11 phosphoproteins and phospholipids measured in single human T cells under 9
stimulation conditions (7466 cells). ``sachs.csv.gz`` holds the raw values and
a ``condition`` column; ``SACHS_PROVENANCE.md`` says where they come from.

Default convention (Kumar et al. 2024, Mameche et al. 2025): the first seven
conditions (5846 cells); cd3cd28 and cd3cd28icam2 pooled as the observational
regime, and each inhibitor's regime labelled by the column it targets.
"""
from __future__ import annotations

import csv
import gzip
import importlib.resources
import io
from typing import NamedTuple

import numpy as np

# Regime label of each condition under the default convention; pma and b2camp
# (general activators, no single target) are left out of that convention.
_REGIME = {"cd3cd28": "observational", "cd3cd28icam2": "observational",
           "cd3cd28+aktinhib": "pakts473", "cd3cd28+g0076": "PKC",
           "cd3cd28+psitect": "PIP2", "cd3cd28+u0126": "pmek", "cd3cd28+ly": "PIP3"}
_ACTIVATORS = ("pma", "b2camp")

# bnlearn's consensus network (17 arcs), in the file's column names.
_ARCS = (("p44/42", "pakts473"), ("pmek", "p44/42"), ("PIP3", "PIP2"),
         ("PKA", "pakts473"), ("PKA", "p44/42"), ("PKA", "pjnk"), ("PKA", "pmek"),
         ("PKA", "P38"), ("PKA", "praf"), ("PKC", "pjnk"), ("PKC", "pmek"),
         ("PKC", "P38"), ("PKC", "PKA"), ("PKC", "praf"), ("plcg", "PIP2"),
         ("plcg", "PIP3"), ("praf", "pmek"))


class SachsData(NamedTuple):
  """The data set; S = 5846 (default) or 7466 (``all_conditions``)."""
  values: np.ndarray      # [S, 11] float32, raw or natural log
  labels: np.ndarray      # [S] str, regime of each cell
  names: list[str]        # [11] column names, as in the source file
  adjacency: np.ndarray   # [11, 11] int, adjacency[i, j] = 1 for i -> j
  targets: dict[str, tuple[str, ...] | None]  # () observational, None unknown
  description: str


def _read_csv() -> tuple[list[str], np.ndarray, np.ndarray]:
  """Header (11 names), ``[7466, 11]`` float64 raw values, ``[7466]`` condition names."""
  blob = importlib.resources.files(__package__).joinpath("sachs.csv.gz").read_bytes()
  reader = csv.reader(io.StringIO(gzip.decompress(blob).decode("ascii")))
  header = next(reader)
  rows = list(reader)
  values = np.array([r[:-1] for r in rows], np.float64)
  conditions = np.array([r[-1] for r in rows])
  return header[:-1], values, conditions


def load_sachs(*, log: bool = True, all_conditions: bool = False) -> SachsData:
  """Load the Sachs data with the consensus DAG.

  Args:
    log: natural log of the values. Every raw value is >= 1.0 (the source
      floors readings at 1.0), so the log is finite and >= 0; no clipping.
    all_conditions: all 9 conditions (7466 cells) labelled by their raw
      condition names, pma and b2camp with target ``None`` (unknown). Default:
      the 5846-cell convention with labels ``observational`` or the target's
      column name, as ``vcm_jax.io.label_targets`` reads them.

  Returns:
    ``SachsData`` (see its fields for shapes).
  """
  names, values, conditions = _read_csv()
  if not np.all(values > 0):  # guards a re-derived file; the shipped one passes
    raise ValueError("Sachs data has non-positive values; log is undefined")
  if all_conditions:
    labels = conditions
    targets = {c: (() if r == "observational" else (r,)) for c, r in _REGIME.items()}
    targets.update({c: None for c in _ACTIVATORS})
  else:
    keep = np.isin(conditions, list(_REGIME))
    values = values[keep]
    labels = np.array([_REGIME[c] for c in conditions[keep]])
    targets = {r: (() if r == "observational" else (r,)) for r in _REGIME.values()}
  if log:
    values = np.log(values)
  index = {n: i for i, n in enumerate(names)}
  adjacency = np.zeros((len(names), len(names)), np.int32)
  for a, b in _ARCS:
    adjacency[index[a], index[b]] = 1
  regimes = ("all 9 conditions" if all_conditions
             else "first 7 conditions, cd3cd28 and cd3cd28icam2 observational")
  description = (
      f"Sachs et al. (2005) flow cytometry: {len(values)} cells x {len(names)} proteins, "
      f"{'natural log' if log else 'raw'} values, {regimes}; graph: bnlearn consensus "
      "network (17 arcs). Source: cdt 0.6.0 cyto_full_data.csv.")
  return SachsData(values.astype(np.float32), labels, list(names), adjacency, targets,
                   description)
