"""The paper's setting (section 4.1): N = 10, ER p = 0.1, shift 10, unit noise, 10 runs.

Fitted with vcm_jax's default recipe (exact posterior, learned prior and scales,
surprise initialisation, restarts). ``configs/paper.py`` has the paper's recipe.
"""
import ml_collections


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

  c.model = ml_collections.ConfigDict()
  c.model.mechanism = "mlp"       # linear | mlp
  c.model.hidden = (16,)
  c.model.linear_skip = True      # mlp mechanisms: linear part + MLP residual
  c.model.encoder_hidden = (64, 64)
  c.model.scale = "learned"       # learned | unit
  c.model.max_parents = 0         # 0: the largest in-degree of the sampled graphs

  c.train = ml_collections.ConfigDict()
  c.train.estimator = "exact"     # exact | gumbel | straight_through
  c.train.posterior = "exact"     # exact | encoder
  c.train.prior = "learned"       # learned | uniform
  c.train.init = "surprise"       # surprise | random
  c.train.init_scale_factor = 3.0
  c.train.init_obs_prior = 0.5
  c.train.pooled_steps = 100
  c.train.num_steps = 400
  c.train.batch_size = 1000
  c.train.learning_rate = 1e-2
  c.train.temperature = 1.0
  c.train.kl_schedule = "constant"  # constant | warmup | cyclical
  c.train.kl_warmup_steps = 0
  c.train.kl_cycles = 4
  c.train.restarts = 2
  c.train.log_every = 100
  c.train.checkpoint_every = 100   # steps per compiled chunk and checkpoint; 0: one chunk
  c.plots = True

  # Devices: runs spread over `runs`, one dataset's samples split over `data`.
  c.mesh = ml_collections.ConfigDict()
  c.mesh.runs = 1
  c.mesh.data = 1
  return c
