"""The paper's exact recipe on its own setting.

Gumbel-Softmax estimator (relaxed z fed to the mechanisms), the encoder's q in
the ELBO, a uniform prior, unit variance, random initialisation, one restart;
decoder mechanisms are 3-layer MLPs of the parents and z_j (the paper's Fig. 4).
"""
from configs import er


def get_config():
  c = er.get_config()
  c.model.mechanism = "mlp"
  c.model.hidden = (32, 32)
  c.model.linear_skip = False
  c.model.scale = "unit"
  c.train.estimator = "gumbel"
  c.train.posterior = "encoder"
  c.train.prior = "uniform"
  c.train.init = "random"
  c.train.pooled_steps = 0
  c.train.restarts = 1
  c.train.batch_size = 32        # the paper's public code: steps of 32 samples
  c.train.num_steps = 6000       # about 19 epochs of 10000 samples
  c.train.learning_rate = 1e-3
  c.train.temperature = 1.0
  return c
