"""A tiny config that runs end to end in seconds (tests, smoke checks)."""
from configs import er


def get_config():
  c = er.get_config()
  c.num_runs = 2
  c.scm.n_nodes = 4
  c.scm.edge_prob = 0.5
  c.scm.n_train = 2000
  c.scm.n_test = 500
  c.model.hidden = (8,)
  c.model.encoder_hidden = (16, 16)
  c.train.pooled_steps = 50
  c.train.num_steps = 300
  c.train.batch_size = 500
  c.train.restarts = 2
  c.train.log_every = 50
  return c
