"""The paper's exact recipe on its own setting.

Gumbel-Softmax estimator (relaxed z fed to the mechanisms), the encoder's q in
the ELBO, a uniform prior, unit variance, random initialisation, one restart;
decoder mechanisms are 3-layer MLPs of the parents and z_j (the paper's Fig. 4).
"""
from configs import er

# (group, key) -> value: the recipe, also used by experiments.compare's `paper` method.
RECIPE = {
    ("model", "mechanism"): "mlp",
    ("model", "hidden"): (32, 32),
    ("model", "linear_skip"): False,
    ("model", "scale"): "unit",
    ("train", "estimator"): "gumbel",
    ("train", "posterior"): "encoder",
    ("train", "prior"): "uniform",
    ("train", "init"): "random",
    ("train", "pooled_steps"): 0,
    ("train", "restarts"): 1,
    ("train", "batch_size"): 32,      # the paper's public code: steps of 32 samples
    ("train", "num_steps"): 6000,     # about 19 epochs of 10000 samples
    ("train", "learning_rate"): 1e-3,
    ("train", "temperature"): 1.0,
}


def get_config():
  c = er.get_config()
  for (group, key), value in RECIPE.items():
    c[group][key] = value
  return c
