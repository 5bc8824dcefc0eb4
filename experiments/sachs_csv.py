"""Sachs as a user's files: ``data.csv`` (named columns and a ``regime`` column of the
true labels) and ``graph.csv`` (the 17-arc consensus DAG as an edge list), rows
optionally in a shuffled order, for the own-data command:

  python -m experiments.sachs_csv --out=DIR --shuffle_seed=7
  python -m experiments.run --config=configs/csv.py --workdir=RUN \
    --config.data.path=DIR/data.csv --config.data.graph=DIR/graph.csv \
    --config.data.labels=regime

The fit does not depend on the row order in principle; this measures whether it does
in practice (minibatches and subsamples are drawn by row index).
"""
import os

import numpy as np
from absl import flags

import experiments
from vcm_jax.io import writers
from vcm_jax.datasets import load_sachs

_OUT = flags.DEFINE_string("out", None, "folder to write data.csv and graph.csv into")
_SHUFFLE = flags.DEFINE_integer("shuffle_seed", -1, "seed of a random row order (-1: as shipped)")


def write(out: str, shuffle_seed: int = -1) -> None:
  d = load_sachs()
  order = np.arange(len(d.values))
  if shuffle_seed >= 0:
    order = np.random.default_rng(shuffle_seed).permutation(order)
  os.makedirs(out, exist_ok=True)
  writers.write_chunks_atomic(os.path.join(out, "data.csv"), writers.data_csv_chunks(
      d.values[order], d.labels[order], d.names, cell="%r"))
  writers.write_graph(os.path.join(out, "graph.csv"), d.adjacency, d.names)


def main(argv):
  del argv
  write(_OUT.value, _SHUFFLE.value)


if __name__ == "__main__":
  flags.mark_flag_as_required("out")
  experiments.run_main(main)
