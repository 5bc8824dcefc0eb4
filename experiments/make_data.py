"""Write a synthetic dataset the way a user would hand it over, truth kept aside.

  python -m experiments.make_data --config=configs/er.py --out=DIR [--config.scm.n_nodes=30 ...]

DIR gets ``data.csv`` (a header of node names X0..X{N-1}, one sample per row, and
a ``regime`` column naming each sample's target node, or ``observational``),
``graph.csv`` (adjacency with names), ``edges.csv`` (the same graph as an edge
list) and ``truth.json``: the Bayes ceiling on these rows (ARI and target
accuracy of the exact posterior under the true SCM) and the true mechanisms.
Fit it with ``configs/csv.py`` and ``--config.data.labels=regime``.
"""
from __future__ import annotations

import os

import jax
import numpy as np
from absl import flags

import experiments
from experiments import driver, loop, synthetic
from vcm_jax import evaluate, graphs, inputs, io, scm
from vcm_jax.io import writers


OUTPUTS = ("data.csv", "graph.csv", "edges.csv", "truth.json")


def make_dataset(config, out: str) -> dict:
  """Sample one graph, SCM and dataset from ``config.scm`` and write them to ``out``."""
  c = config.scm
  k_graph, k_scm, k_data = jax.random.split(jax.random.key(config.seed), 3)
  adj = graphs.sample_er_dag(k_graph, n_nodes=c.n_nodes, edge_prob=c.edge_prob)
  true = synthetic.true_scm(k_scm, adj, c)
  x, regimes = scm.sample_data(k_data, true, c.n_train, noise=c.noise)
  bayes = evaluate.bayes_ceiling(true, x, regimes, noise=c.noise)
  k = c.n_nodes + 1
  names = [f"X{j}" for j in range(c.n_nodes)]
  x, regimes, adj = np.asarray(x), np.asarray(regimes), np.asarray(adj)
  os.makedirs(out, exist_ok=True)
  labels = np.array(["observational"] + names)[regimes]
  io.write_chunks_atomic(os.path.join(out, "data.csv"),
                         writers.data_csv_chunks(x, labels, names))
  adj_lines = ["," + ",".join(names)]
  adj_lines += [names[i] + "," + ",".join(str(int(v)) for v in adj[i]) for i in range(len(names))]
  io.write_text_atomic(os.path.join(out, "graph.csv"), "\n".join(adj_lines) + "\n")
  edge_lines = ["source,target"] + [f"{names[i]},{names[j]}" for i, j in np.argwhere(adj)]
  edge_lines += [f"{n}," for j, n in enumerate(names) if not adj[j].any() and not adj[:, j].any()]
  io.write_text_atomic(os.path.join(out, "edges.csv"), "\n".join(edge_lines) + "\n")
  truth = {
      "bayes_ari": float(bayes["bayes_ari"]),
      "bayes_target_accuracy": float(bayes["bayes_target_accuracy"]),
      "n_rows": int(len(x)), "n_edges": int(adj.sum()),
      "regime_counts": np.bincount(regimes, minlength=k).tolist(),
      "mechanism": c.mechanism,
      "shift": np.asarray(true.shift).tolist(),
      "weights": np.asarray(true.weights).tolist(),  # [i][j]: i -> j (zero for mlp)
      "bias": np.asarray(true.bias).tolist(),
      "noise_scale": np.asarray(true.noise_scale).tolist(),
      "int_scale": np.asarray(true.int_scale).tolist(),
      "scm": config.scm.to_dict(), "seed": config.seed,
  }
  io.write_json_atomic(os.path.join(out, "truth.json"), truth)
  return truth


def check_out(out: str) -> None:
  """``BadFlag`` where ``out`` holds files that no earlier make_data run wrote (a folder
  of such a run is written again: the same config gives the same files)."""
  held = set(os.listdir(out)) if os.path.isdir(out) else set()
  if held and not (held <= set(OUTPUTS) and "truth.json" in held):
    shown = ", ".join(sorted(held)[:4])
    raise experiments.BadFlag(f"--out={out} already holds files ({shown}, ...): choose another "
                              "folder, or empty it")


def main(argv):
  del argv
  out = _OUT.value
  try:  # the run command's checks of the scm group, before anything is sampled
    driver.validate_scm(_CONFIG.value.scm)
    loop.check_seed(_CONFIG.value)
  except driver.UserError as err:
    raise experiments.BadFlag(str(err)) from None
  scm_group = _CONFIG.value.scm  # (the rows the own-data command needs: it refused fewer)
  if scm_group.n_train < inputs.min_rows(scm_group.n_nodes):
    raise experiments.BadFlag(
        f"config: scm.n_train={scm_group.n_train}: the own-data command needs at least "
        f"{inputs.min_rows(scm_group.n_nodes)} rows for {scm_group.n_nodes} variables")
  check_out(out)
  experiments.configure_jax()
  truth = make_dataset(_CONFIG.value, out)
  print(f"wrote {out}/data.csv ({truth['n_rows']} rows), graph.csv ({truth['n_edges']} edges), "
        f"edges.csv, truth.json; Bayes ceiling ARI {truth['bayes_ari']:.4f}, target accuracy "
        f"{truth['bayes_target_accuracy']:.4f}")


if __name__ == "__main__":
  # Flags are defined only when run as a program: tests import this module beside
  # the other entry points, which define flags of the same names.
  _CONFIG = experiments.define_config("config", "configs/er.py", "Config with an scm group.")
  _OUT = flags.DEFINE_string("out", None, "Directory for data.csv, graph.csv, truth.json.")
  flags.mark_flags_as_required(["out"])
  experiments.run_main(main)
