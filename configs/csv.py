"""Your own data and graph: which sample came from which regime, and what each regime targeted.

  python -m experiments.run --config=configs/csv.py --config.data.path=DATA.csv \\
      --config.data.graph=GRAPH.csv --workdir=DIR

DATA: a CSV with a header row of variable names (or an .npz of named 1-D arrays);
GRAPH: an adjacency CSV, an edge-list CSV (header source,target), GML or GraphML
(README, "Your own data"). Results land in DIR: assignments.csv, regimes.json,
metrics.json and plots.
"""
import ml_collections

from configs import base


def get_config():
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.data = ml_collections.ConfigDict()
  c.data.dataset = ""             # or a dataset shipped with vcm_jax: sachs (configs/sachs.py)
  c.data.path = ""                # CSV (header of names) or .npz of named 1-D arrays
  c.data.graph = ""               # adjacency CSV, edge-list CSV, GML or GraphML
  c.data.labels = ""              # optional column of true regimes (scored, never fitted)
  c.data.heldout_fraction = 0.1   # rows held out for the held-out log-likelihood and K
  c.model, c.train = base.fit_groups()
  # Own data: train until the likelihood stops improving (many regimes need more than
  # 400 steps), at most 3000 steps; at each plateau the learning rate is cut (x0.3),
  # and training stops at the third (a rate still high at a plateau stopped 100 x 101
  # regimes short of the ceiling: 0.964x).
  c.train.num_steps = 3000
  c.train.stop_tolerance = 1e-3
  c.train.lr_schedule = "plateau"
  # Real measurements carry a few wild values: a cell is a gross error with probability
  # 1e-3 (a Cauchy), so one cell 25 sd out no longer picks its row's regime, and the
  # row is flagged (assignments.csv, column outlier).
  c.model.outlier_fraction = 1e-3
  c.train.checkpoint_every = 200
  # Which model the data support (vcm_jax.choose): the single-target latent or K regimes
  # with sparse sets of changed mechanisms, Gaussian or Student-t noise. The first fit
  # (single-target, Gaussian) is checked first: where its shared mechanisms fit every
  # regime's rows (vcm_jax.checks), the other latents are not fitted (screen=False fits
  # every candidate). --config.selection.decoders= (empty) fits model.* as given.
  # max_mechanisms: a step's cost budget (mechanism evaluations per row), so hundreds of
  # variables try only the cheap latents.
  c.selection = ml_collections.ConfigDict()
  c.selection.decoders = "structured,sparse"   # "" fits model.decoder and model.noise as given
  c.selection.noises = "gauss,student_t"
  c.selection.screen = True
  c.selection.k_candidates = ()   # sparse K tried; () = 2, 3, 4, 6, 8, 12 (up to N + 1)
  c.selection.max_mechanisms = 400
  c.selection.restarts = 1         # starts per candidate (the chosen model gets train.restarts)
  # Where the first fit's check fails (regimes that change several mechanisms), the chosen
  # model's fit has more local optima: it gets this many starts, the best log p(x) kept
  # (Sachs AMI, seeds 0 / 1: 0.565 / 0.515 with 2 starts, 0.527 / 0.563 with 4: the same
  # mean, the spread moved; set with the labels in view).
  c.selection.violated_restarts = 4
  c.selection.max_rows = 20000     # candidates fitted on at most this many training rows
  c.plots = True
  c.mesh = base.mesh_config()
  return c
