"""Your own data and graph: which sample came from which regime, and what each regime targeted.

  python -m experiments.run --config=configs/csv.py --config.data.path=DATA.csv \\
      --config.data.graph=GRAPH.csv --workdir=DIR

DATA: a CSV with a header row of variable names (or an .npz of named 1-D arrays);
GRAPH: an adjacency CSV, an edge-list CSV (header source,target), GML or GraphML
(README, "Your own data"). Results land in DIR: assignments.csv, regimes.json,
metrics.json and plots.
"""
import dataclasses

import ml_collections

from configs import base
from vcm_jax import choose, config as fit_config


def get_config():
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.data = ml_collections.ConfigDict()
  c.data.dataset = ""             # or a dataset shipped with vcm_jax: sachs (configs/sachs.py)
  c.data.path = ""                # CSV (header of names) or .npz of named 1-D arrays
  c.data.graph = ""               # adjacency CSV, edge-list CSV, GML or GraphML
  c.data.labels = ""              # optional column of true regimes (scored, never fitted)
  # 0: every row fitted, the fit vcm_jax.fit returns for the same seed (one answer at both
  # doors); a fraction in (0, 0.5]: those rows held out, for a held-out log-likelihood
  c.data.heldout_fraction = 0.0
  # The library's default for data of unknown origin (vcm_jax.config.data_default: the
  # stopping rule with plateau cuts, at most 3000 steps; gross errors at 1e-3), the one
  # vcm_jax.fit runs: both doors give the same answer.
  c.model, c.train = base.fit_groups(dataclasses.asdict(fit_config.data_default()))
  c.train.checkpoint_every = 200
  # Which model the data support (vcm_jax.choose.Selection, whose defaults these are):
  # the single-target latent or K regimes with sparse sets of changed mechanisms,
  # Gaussian or Student-t noise. The first fit (single-target, Gaussian) is checked
  # first: where its shared mechanisms fit every regime's rows (vcm_jax.checks), the
  # other latents are not fitted (screen=False fits every candidate).
  # --config.selection.decoders= (empty) fits model.* as given, one model, no choice.
  # Every field of Selection, so that each threshold can be set here and is recorded.
  # (Lists of names are comma-separated strings on the command line.)
  c.selection = ml_collections.ConfigDict(
      {k: ",".join(v) if k in ("decoders", "noises", "scales") else v
       for k, v in dataclasses.asdict(choose.Selection()).items()})
  # The graph: learned from the data when data.graph is not given; with a graph,
  # search=repair adds, removes or reverses edges where the data support it (each change
  # reported with its score gain); "" fits the graph as given.
  c.graph = ml_collections.ConfigDict({"search": "", "max_parents": 0, "max_rounds": 6})
  c.plots = True
  c.mesh = base.mesh_config()
  return c
