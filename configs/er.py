"""The paper's setting (section 4.1): N = 10, ER p = 0.1, shift 10, unit noise, 10 runs.

Fitted with vcm_jax's default recipe (exact posterior, learned prior and scales,
surprise initialisation, restarts). ``configs/paper.py`` has the paper's recipe.
"""
import ml_collections

from configs import base


def get_config():
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.num_runs = 10

  c.scm = ml_collections.ConfigDict()
  c.scm.n_nodes = 10
  c.scm.edge_prob = 0.1
  c.scm.n_train = 10000
  c.scm.n_test = 1000
  c.scm.shift = 10.0
  c.scm.noise_low = 1.0
  c.scm.noise_high = 1.0
  c.scm.obs_fraction = 0.2
  c.scm.intervention = "mean"     # mean | variance | both
  c.scm.variance_factor = 3.0
  c.scm.noise = "gauss"           # gauss | laplace
  c.scm.mechanism = "linear"      # linear | mlp (random tanh MLPs) | fourier (random smooth
                                  # functions: Fourier features of a GP, plus the linear part)
  c.scm.mlp_hidden = 4            # hidden units of each true MLP (fourier: 4x as many features)

  c.model, c.train = base.fit_groups()
  c.plots = True
  c.mesh = base.mesh_config()
  return c
