"""Every fitting recipe in one place: overrides of ``vcm_jax.FitConfig``'s defaults.

The defaults are ``vcm`` (the project's recipe). Keys are FitConfig field names.
"""

# The paper's recipe (section 3 and Fig. 4): Gumbel-Softmax estimator (relaxed z fed
# to the mechanisms), the encoder's q in the ELBO, a uniform prior, unit variance,
# random initialisation, one restart; mechanisms are 3-layer MLPs of the parents and z_j.
PAPER = {
    "mechanism": "mlp",
    "hidden": (32, 32),
    "linear_skip": False,
    "scale": "unit",
    "estimator": "gumbel",
    "posterior": "encoder",
    "prior": "uniform",
    "init": "random",
    "pooled_steps": 0,
    "restarts": 1,
    "batch_size": 32,      # the paper's public code: steps of 32 samples
    "num_steps": 6000,     # about 19 epochs of 10000 samples
    "learning_rate": 1e-3,
    "temperature": 1.0,
}

# The public reference code's choices (DESIGN section 2): straight-through z, every
# mechanism fed the whole one-hot z (the free decoder with K = N + 1), a fixed
# uniform prior, cyclical KL annealing, unit variance, random initialisation,
# its optimiser and batch, and a decoder that reads its own predicted means of
# the parents instead of their observed values (no teacher forcing).
REFERENCE = dict(PAPER, decoder="free", teacher_forcing=False, estimator="straight_through",
                 kl_schedule="cyclical", kl_cycles=4)

# One choice of `vcm` flipped at a time (the paper's promised ablation).
ABLATIONS = {
    "vcm_gumbel": {"estimator": "gumbel", "posterior": "encoder"},
    "vcm_straight_through": {"estimator": "straight_through", "posterior": "encoder"},
    "vcm_encoder_q": {"posterior": "encoder"},
    "vcm_uniform_prior": {"prior": "uniform"},
    "vcm_unit_variance": {"scale": "unit"},
    "vcm_free_decoder": {"decoder": "free"},
    "vcm_no_teacher_forcing": {"teacher_forcing": False},
    "vcm_random_init": {"init": "random", "pooled_steps": 0},
    "vcm_one_restart": {"restarts": 1},
}

RECIPES = {"vcm": {}, "paper": PAPER, "reference": REFERENCE, **ABLATIONS}
BASELINES = ("em", "gmm", "pooled", "oracle")
METHODS = tuple(RECIPES) + BASELINES
