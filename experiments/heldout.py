"""The library's default fit on held-out families, judged against their Bayes ceiling:
``python -m experiments.heldout --workdir=DIR [--families=physical,heteroscedastic,
floored_counts,process_plant,rotating_machinery,building] [--seeds=100,101,102] [--n_rows=0]
[--graph=given]``.

The families (``vcm_jax.families``) are simulators no default of the library was chosen
on: a physical system (bounded actuators, near-deterministic and periodic sensors, a
sensor saturating at a ceiling), heteroscedastic mechanisms, Poisson counts with
readings floored at a bound, a process plant (a quantized sensor, a log-normal
pressure, a scale-only and a gain-only change) and rotating machinery (a current that is
a product of its parents, with noise in proportion to it; a sensor gain changed; a pressure
at a relief valve's ceiling) and a building's heating and ventilation (two on/off
switches, a two-moded outdoor temperature); the last three were added after every
default they judge (the building with the two-point law, ``FitConfig.two_point``).
Each has an exact per-regime log-likelihood, so each seed's ceiling is the ARI of the
exact posterior's argmax under the true simulator.

Each seed is fitted with ``vcm_jax.fit(x, adjacency, key=jax.random.key(seed),
names=names)``: no config, so the own-data default runs, its model choice included.
With ``--graph=learned`` the adjacency is withheld (``vcm_jax.fit(x, None, ...)``: the
graph is learned with the regimes), and the learned graph is scored against the true one
(SHD, with reversals as 2, skeleton and directed F1, edges; ``graph_rivals.graph_metrics``).
Reported per family and seed: ARI and AMI of ``fit.assign(x)`` against the true regimes,
the ceiling's ARI and AMI, the ratio of the fit's ARI to the ceiling's, a structure-free
yardstick (scikit-learn's ``GaussianMixture`` with the true K, ``n_init=5``), the number
of regimes fitted and used (holding rows), whether the observational regime was found (the fitted observational
regime holds the plurality of the true regime-0 rows), the share of true targets named
right (each true regime matched to the fitted regime that holds most of its rows; right
when that regime's targets are exactly the true one), the identifiability verdict, and
the fit's seconds. ``DIR/heldout.json`` and ``DIR/heldout.md``; the table is printed. The
rows of earlier runs into the same workdir are kept (a rerun of a family, seed, row count
and graph replaces its row).

Seeds: the families' change sizes were set on development seeds 0-9 (0-4 used; the
process plant's, the rotating machinery's and the building's on 0-2, from the ceiling
alone); the
report seeds are 100, 101, 102 (the default). ``--seeds`` decides which are run.
"""
from __future__ import annotations

import json
import math
import os
import sys
import time

import numpy as np
from absl import flags

import experiments
from experiments import compilation
from vcm_jax.io import writers

COLUMNS = [("family", "family", "s"), ("seed", "seed", "d"), ("rows", "rows", "d"),
           ("K", "n_regimes", "d"), ("K fit", "n_regimes_fitted", "d"),
           ("K used", "n_regimes_used", "d"), ("ARI", "ari", ".3f"),
           ("AMI", "ami", ".3f"), ("ceiling ARI", "ceiling_ari", ".3f"),
           ("ceiling AMI", "ceiling_ami", ".3f"), ("ARI / ceiling", "ari_ratio", ".3f"),
           ("GMM ARI", "gmm_ari", ".3f"), ("obs found", "observational_found", "s"),
           ("targets right", "targets_right", ".2f"), ("verdict", "verdict", "s"),
           ("chosen", "chosen", "s"), ("fit s", "fit_seconds", ".0f")]
GRAPH_COLUMNS = [("SHD", "shd", "d"), ("SHD rev. 2", "shd2", "d"), ("edges", "edges", "d"),
                 ("true edges", "true_edges", "d"), ("skeleton F1", "f1_skeleton", ".2f"),
                 ("directed F1", "f1_directed", ".2f")]


def majority(true: np.ndarray, fitted: np.ndarray, k: int) -> int:
  """The fitted label that holds most of the rows whose true label is ``k``."""
  return int(np.bincount(fitted[true == k]).argmax())


def judge(fam, fitted: np.ndarray, observational: int, targets: list) -> dict:
  """What the fit found of the truth: the observational regime, the targets."""
  right = [tuple(targets[majority(fam.regimes, fitted, k)]) == tuple(fam.targets[k])
           for k in range(1, fam.n_regimes)]
  return {"observational_found": majority(fam.regimes, fitted, 0) == observational,
          "observational_share": float(np.mean(fitted[fam.regimes == 0] == observational)),
          "targets_right": float(np.mean(right))}


def _gaussian_mixture(mixture, x, k: int, seed: int):
  """The yardstick's labels (scikit-learn's ``GaussianMixture``, its defaults, the true
  K, ``n_init=5``), or ``(None, why)``. Where a component collapses on the float32 rows
  (a few hundred rows: ``--n_rows=300``), scikit-learn's message asks for float64 rows,
  and they are tried; where that fails too, no yardstick (its reason is recorded)."""
  for rows in (x, np.asarray(x, np.float64)):
    try:
      return mixture(n_components=k, n_init=5, random_state=seed).fit(rows).predict(rows), None
    except ValueError as err:
      failed = str(err).split(". ")[0]
  return None, failed


def run_one(name: str, seed: int, n_rows: int, graph: str = "given") -> dict:
  import jax
  from sklearn.metrics import adjusted_mutual_info_score
  from sklearn.mixture import GaussianMixture

  import vcm_jax
  from vcm_jax import families, metrics

  make = families.FAMILIES[name]
  fam = make(seed, n_rows=n_rows) if n_rows else make(seed)
  k_true = fam.n_regimes
  ari = lambda pred, n_pred: float(metrics.adjusted_rand_index(
      fam.regimes, np.asarray(pred), k_true, int(n_pred)))
  bayes = families.bayes_assignment(fam)
  start = time.time()
  given = fam.adjacency if graph == "given" else None
  fit = vcm_jax.fit(fam.x, given, key=jax.random.key(seed), names=fam.names)
  fitted = np.asarray(fit.assign(fam.x))
  seconds = time.time() - start
  gmm_labels, gmm_failed = _gaussian_mixture(GaussianMixture, fam.x, k_true, seed)
  record = fit.verdict if isinstance(fit.verdict, dict) else {}
  verdict = record.get("verdict")
  choice = fit.choice.summary() if fit.choice is not None else {}
  row = {"family": name, "seed": seed, "rows": int(fam.x.shape[0]), "nodes": int(fam.x.shape[1]),
         "n_regimes": k_true, "n_regimes_fitted": int(fit.n_regimes),
         "n_regimes_used": int(len(np.unique(fitted))),
         "ari": ari(fitted, fit.n_regimes),
         "ami": float(adjusted_mutual_info_score(fam.regimes, fitted)),
         "ceiling_ari": ari(bayes, k_true),
         "ceiling_ami": float(adjusted_mutual_info_score(fam.regimes, bayes)),
         "gmm_ari": math.nan if gmm_labels is None else ari(gmm_labels, k_true),
         **({"gmm_failed": gmm_failed} if gmm_failed else {}),
         **judge(fam, fitted, fit.observational, fit.targets),
         "verdict": verdict, "chosen": _chosen(choice.get("chosen")),
         "why": record.get("why"), "free_target_rival": record.get("free_target_rival"),
         "warnings": list(fit.warnings),
         "fitted_targets": [list(t) for t in fit.targets],
         "true_targets": [list(t) for t in fam.targets], "changes": fam.changes,
         "fit_seconds": seconds}
  row["ari_ratio"] = row["ari"] / row["ceiling_ari"]
  if given is None:
    from experiments.graph_rivals import graph_metrics
    row.update(graph_metrics(fam.adjacency, np.asarray(fit.graph)))
  return row


def earlier_rows(path: str) -> list:
  """The rows an earlier run wrote to ``path`` (none where there is no such file)."""
  return experiments.earlier_output(path, lambda rows: isinstance(rows, list) and all(
      {"family", "seed", "rows"} <= set(r) for r in rows), [])


def _row_key(row: dict) -> tuple:
  graph = row.get("graph", "learned" if "shd" in row else "given")
  return row["family"], row["seed"], row["rows"], graph


def _chosen(chosen) -> str:
  """The chosen candidate in a few words (its settings' values; K only where set)."""
  if not isinstance(chosen, dict):
    return str(chosen)
  return " ".join(str(v) for k, v in chosen.items() if not (k == "n_regimes" and not v))


def table(rows: list) -> str:
  columns = COLUMNS + (GRAPH_COLUMNS if any("shd" in row for row in rows) else [])
  if len({_row_key(row)[3] for row in rows}) > 1:  # given and learned graphs: say which
    columns = columns[:2] + [("graph", "graph", "s")] + columns[2:]
    rows = [dict(row, graph=_row_key(row)[3]) for row in rows]
  def cell(row, key, fmt):
    value = row.get(key)
    if value is None:
      return "-"
    if isinstance(value, bool):
      return "yes" if value else "no"
    return format(value, fmt)
  lines = ["| " + " | ".join(head for head, _, _ in columns) + " |",
           "|" + "---|" * len(columns)]
  for row in rows:
    lines.append("| " + " | ".join(cell(row, key, fmt) for _, key, fmt in columns) + " |")
  return "\n".join(lines)


def main(argv):
  del argv
  experiments.configure_jax()
  compilation.enable_cache(compilation.default_cache_dir())
  from vcm_jax import families

  experiments.names_known(_FAMILIES.value, families.FAMILIES, "families")
  seeds = experiments.seeds_of(_SEEDS.value)
  if _N_ROWS.value < 0 or 0 < _N_ROWS.value < 100:
    raise experiments.BadFlag(f"--n_rows={_N_ROWS.value}: 0 (the family's default) or at "
                              "least 100 (a few rows for each of up to 8 regimes)")
  os.makedirs(_WORKDIR.value, exist_ok=True)
  json_path = os.path.join(_WORKDIR.value, "heldout.json")
  # Rows of earlier runs into this workdir are kept (a rerun of the same family, seed,
  # rows and graph replaces its row): a run of one more seed adds to the table.
  rows = earlier_rows(json_path)
  for name in _FAMILIES.value:
    for seed in seeds:
      row = dict(run_one(name, seed, _N_ROWS.value, _GRAPH.value), graph=_GRAPH.value)
      rows = [r for r in rows if _row_key(r) != _row_key(row)]
      print(json.dumps({k: row[k] for k in ("family", "seed", "ari", "ceiling_ari", "gmm_ari",
                                            "verdict", "fit_seconds", "shd") if k in row}),
            flush=True)
      rows.append(row)
      writers.write_text_atomic(json_path, json.dumps(
          rows, indent=1,  # (numpy scalars in the verdict's record)
          default=lambda v: v.item() if hasattr(v, "item") else str(v)))
  command = "python -m experiments.heldout " + " ".join(sys.argv[1:])
  graphs = {_row_key(row)[3] for row in rows}
  graph = (f" (the graph {graphs.pop()})" if len(graphs) == 1 else
           " (the graph given or learned: the graph column)")
  text = (f"# Held-out families: the default fit{graph} against the Bayes ceiling\n\n"
          f"`{command}` (and the rows of earlier runs into this workdir)\n\n{table(rows)}\n")
  writers.write_text_atomic(os.path.join(_WORKDIR.value, "heldout.md"), text)
  print(table(rows))


if __name__ == "__main__":
  # Flags are defined only when run as a program: tests import this module beside
  # the other entry points, which define flags of the same names.
  _WORKDIR = flags.DEFINE_string("workdir", None, "Where heldout.json and heldout.md go.",
                                 required=True)
  from vcm_jax import families as _families_module
  _FAMILIES = flags.DEFINE_list("families", list(_families_module.FAMILIES),
                                "Families of vcm_jax.families.FAMILIES.")
  _SEEDS = flags.DEFINE_list("seeds", ["100", "101", "102"],
                             "Report seeds (development seeds are 0-9).")
  _N_ROWS = flags.DEFINE_integer("n_rows", 0, "Rows per data set (0: the family's default).")
  _GRAPH = flags.DEFINE_enum("graph", "given", ["given", "learned"],
                             "given: the family's true DAG; learned: none given, the fit learns it.")
  experiments.run_main(main)
