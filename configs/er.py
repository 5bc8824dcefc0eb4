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
  c.scm.mechanism = "linear"      # linear | mlp (random tanh MLPs of the parents)
  c.scm.mlp_hidden = 4            # hidden units of each true MLP mechanism

  c.model = model_config()
  c.train = train_config()
  c.plots = True

  c.mesh = mesh_config()
  return c


def model_config():
  """The fitted model (shared by every config)."""
  m = ml_collections.ConfigDict()
  m.decoder = "structured"       # structured (K = N + 1) | free (K = n_regimes)
  m.n_regimes = 0                # free: K; 0 chooses K by held-out ELBO (own data)
  m.k_candidates = ()            # K tried when n_regimes = 0; () = 2, 3, 4, 6, ..., N + 1
  m.mechanism = "mlp"            # linear | mlp
  m.hidden = (16,)
  m.linear_skip = True           # mlp mechanisms: linear part + MLP residual
  m.teacher_forcing = True       # off: mechanisms read predicted, not observed, parents
  m.encoder_hidden = (64, 64)
  m.scale = "learned"            # learned | unit
  m.max_parents = 0              # 0: the largest in-degree of the sampled graphs
  return m


def train_config():
  """The fitting recipe (shared by every config)."""
  t = ml_collections.ConfigDict()
  t.estimator = "exact"          # exact | gumbel | straight_through
  t.posterior = "exact"          # exact | encoder
  t.prior = "learned"            # learned | uniform
  t.init = "surprise"            # surprise | random
  t.init_scale_factor = 3.0
  t.init_obs_prior = 0.5
  t.pooled_steps = 100
  t.num_steps = 400
  t.batch_size = 1000
  # 3e-2: the linear mechanisms' shift parameters must travel several standard
  # deviations in 400 Adam steps (at 1e-2 they fell short on shift-6 data).
  t.learning_rate = 3e-2
  t.temperature = 1.0
  t.kl_schedule = "constant"     # constant | warmup | cyclical
  t.kl_warmup_steps = 0
  t.kl_cycles = 4
  t.restarts = 2
  t.log_every = 100
  t.checkpoint_every = 100       # steps per compiled chunk and checkpoint; 0: one chunk
  return t


def mesh_config():
  """Devices: runs spread over ``runs``, one dataset's samples split over ``data``."""
  c = ml_collections.ConfigDict()
  c.runs = 1
  c.data = 1
  return c
