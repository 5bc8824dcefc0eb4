"""Sachs et al. (2005) flow cytometry, shipped with vcm_jax: 5846 cells, 11 proteins,
6 regimes (observational and 5 inhibitors), the 17-arc consensus DAG.

  python -m experiments.run --config=configs/sachs.py --workdir=DIR

``configs/csv.py`` with its own defaults and nothing else: the data come from
``vcm_jax.datasets.load_sachs()`` (log-transformed) instead of a file, and their
labels are scored, never fitted. The same rows written to a CSV and read by
``configs/csv.py`` reach the fit as the same arrays, graph and split
(tests/test_datasets.py), so a user who has never heard of Sachs gets this fit.
"""
from configs import csv


def get_config():
  c = csv.get_config()
  c.data.dataset = "sachs"
  return c
