"""Fit a CSV of measurements on a DAG you trust, and print the regimes found.

  python examples/fit_csv.py DATA.csv GRAPH.csv [--steps=400]

DATA.csv: a header of variable names, one row per sample (a 'regime' label column,
if present, is left out of the fit). GRAPH.csv: an adjacency matrix or an edge list.
"""
import argparse

import numpy as np

import vcm_jax
from vcm_jax import io


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("data")
  parser.add_argument("graph")
  parser.add_argument("--labels", default="regime", help="label column to leave out, if present")
  parser.add_argument("--steps", type=int, default=400)
  args = parser.parse_args()

  with open(args.data) as f:
    header = f.readline().strip().split(",")
  table = io.read_data(args.data, labels=args.labels if args.labels in header else None)
  adj = io.read_graph(args.graph, table.names)
  fit = vcm_jax.fit(table.values, adj, config={"num_steps": args.steps})

  assigned = np.asarray(fit.assign(table.values))
  weights = np.asarray(fit.weights)
  print(f"{len(table.values)} rows, {len(table.names)} variables, {fit.n_regimes} regimes")
  print(f"{'regime':>6}  {'rows':>6}  {'weight':>6}  targets")
  for k, targets in enumerate(fit.targets):
    what = ("observational" if k == fit.observational
            else ", ".join(table.names[j] for j in targets))
    print(f"{k:>6}  {np.sum(assigned == k):>6}  {weights[k]:6.3f}  {what}")
  print(f"mean log p(x): {float(np.mean(fit.log_prob(table.values))):.3f} nats per row")


if __name__ == "__main__":
  main()
