"""The fit's hyperparameters: defined once, validated here, read by every entry point.

``FitConfig`` is the single source of truth. Each field carries the config group
it lives in on the command line (``model`` or ``train``: ``--config.train.num_steps``)
and, where the value is a choice, the allowed values; ``configs/`` builds its
groups from it (``config_groups``), and ``from_groups`` reads them back, refusing
keys it does not know. An impossible value is a ``ValueError`` that names the
field and lists what is allowed, raised before anything is compiled.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import numpy as np


def _field(default, group: str, choices: tuple = (), doc: str = ""):
  return dataclasses.field(default=default,
                           metadata={"group": group, "choices": choices, "doc": doc})


@dataclasses.dataclass(frozen=True)
class FitConfig:
  """Static hyperparameters of one fit (hashable: safe to close over in ``jit``).

  The defaults are the project's recipe (README, "The recipe"); ``configs/recipes.py``
  holds the paper's, the reference code's and the ablations as overrides of these.
  """
  # model: what is fitted
  decoder: str = _field("structured", "model", ("structured", "free", "sparse"),
                        "structured: K = N + 1, regime k changes node k-1; free: K regimes, "
                        "every mechanism per regime; sparse: K regimes, each changing a set "
                        "of mechanisms found from the data, with a preference for few")
  n_regimes: int = _field(0, "model", doc="free/sparse decoder: K; 0 chooses K by held-out "
                          "log p(x)")
  gate_init: float = _field(0.0, "model", doc="sparse: every gate's initial logit (0: half "
                            "open; negative: regimes start sharing the mechanisms)")
  change_penalty: float = _field(1.0, "model", doc="sparse: the cost of a changed mechanism, "
                                 "in units of BIC's 0.5 log(S) per parameter of its linear part")
  k_candidates: tuple = _field((), "model", doc="free decoder: K tried when n_regimes = 0 "
                               "(by held-out log p(x)); () = select.default_k: 2, 3, 4, 6, 8, "
                               "12 up to N + 1")
  mechanism: str = _field("mlp", "model", ("linear", "mlp"))
  hidden: tuple = _field((16,), "model", doc="decoder MLP widths")
  linear_skip: bool = _field(True, "model", doc="mlp mechanisms also get a linear part")
  teacher_forcing: bool = _field(True, "model", doc="off: mechanisms read predicted parents")
  propagation_passes: int = _field(0, "model", doc="no teacher forcing: passes (0: N)")
  encoder_hidden: tuple = _field((64, 64), "model", doc="encoder MLP widths (posterior=encoder)")
  scale: str = _field("learned", "model", ("learned", "unit", "mse"),
                      doc="learned noise scales; unit: sigma = 1; mse: sigma^2 = N / 2 (a squared "
                      "error averaged over nodes, the public code's loss)")
  activation: str = _field("tanh", "model", ("tanh", "relu"), doc="decoder MLP activation")
  noise: str = _field("gauss", "model", ("gauss", "laplace", "student_t"),
                      doc="the mechanisms' noise family (scale = its standard deviation)")
  noise_dof: float = _field(4.0, "model", doc="student_t: degrees of freedom (> 2)")
  scale_model: str = _field("constant", "model", ("constant", "parents"),
                            doc="the noise scale of a mechanism: constant per regime, or "
                            "depending on its parents (log sigma also reads the mechanism "
                            "MLP's last hidden layer; mlp mechanisms with learned scales)")
  outlier_fraction: float = _field(0.0, "model", doc="share of cells from a broad Cauchy "
                                   "instead of their mechanism (gross errors); 0: none")
  noise_floor: float = _field(-1.0, "model", doc="learned noise scales: a floor in the data's "
                              "own units for every column (sigma becomes sigma + floor, so a "
                              "regime cannot collapse onto tied values and the likelihood stays "
                              "bounded); < 0: per column, the larger of 1e-3 x its standard "
                              "deviation and its resolution / sqrt(12) (the spread of rounding "
                              "to the smallest gap between two distinct values); 0: none")
  censor_share: float = _field(0.01, "model", doc="a column's smallest (largest) value is "
                               "a floor (ceiling) the readings are censored at where at least "
                               "this share of the rows (and 10) hold it exactly: a cell there "
                               "has the probability of the tail beyond it, not a density, so "
                               "no regime can collapse onto it; 0: no censoring")
  two_point: bool = _field(True, "model", doc="a column whose every reading is at one of "
                           "its two censoring bounds (an on/off switch, a 0/1 indicator) reads "
                           "as a Bernoulli: the censored law conditioned on the two values")
  z_init: str = _field("zeros", "model", ("zeros", "random"),
                       doc="the regime's input weights at init (random: PyTorch's default)")
  max_parents: int = _field(0, "model", doc="parent-table width; 0: the graph's largest "
                            "in-degree")
  # train: how it is fitted
  estimator: str = _field("exact", "train", ("exact", "gumbel", "straight_through"))
  posterior: str = _field("exact", "train", ("exact", "encoder"),
                          "the q of the ELBO and of the assignments; exact trains no encoder")
  prior: str = _field("learned", "train", ("learned", "uniform", "fixed"),
                      doc="fixed: init_obs_prior on the observational regime, the rest "
                      "uniform, never learned")
  init: str = _field("surprise", "train", ("surprise", "random"))
  init_scale_factor: float = _field(3.0, "train", doc="intervened / pooled scale at init")
  spike_ratio: float = _field(0.01, "train", doc="a column holds a spike inside its bulk "
                              "(units.interior_spikes: a hard intervention do(X = v)) where "
                              "its narrowest window of spike_share of the rows, away from its "
                              "smallest and largest values and wider than a tie, is below this "
                              "share of the width a Gaussian of the column's spread needs; "
                              "0: never")
  spike_share: float = _field(0.02, "train", doc="the share of rows in a spike's window")
  spike_floor: float = _field(3.0, "train", doc="a spike's column: while training, its "
                              "noise floor (fit units) is at least this times the current "
                              "learning rate (each Adam step moves a mean by about the rate, "
                              "so a narrower regime is shaken off its spike); a restart ends "
                              "at the data's floor or its last rate's, whichever gives the "
                              "higher log p(x); 0: off")
  init_obs_prior: float = _field(0.5, "train", doc="initial prior of the observational regime")
  pooled_steps: int = _field(100, "train")
  num_steps: int = _field(400, "train")
  batch_size: int = _field(1000, "train")
  # 3e-2: the linear mechanisms' shift parameters must travel several standard
  # deviations in 400 Adam steps (at 1e-2 they fell short on shift-6 data).
  learning_rate: float = _field(3e-2, "train")
  lr_schedule: str = _field("cosine", "train", ("cosine", "constant", "plateau"),
                            doc="cosine: decay to 5% over num_steps; plateau: constant, cut by "
                            "plateau_factor each time the stopping rule finds a plateau, "
                            "stopping at the plateau after plateau_decays cuts")
  standardize: bool = _field(True, "train", doc="fit standardised data (off: the data's own "
                             "units, where a fixed sigma means what it says)")
  robust_units: bool = _field(False, "train", doc="standardise by the median and the "
                              "interquartile range (units.standardize; on whenever "
                              "outlier_fraction > 0): units a few gross errors cannot move")
  stop_tolerance: float = _field(0.0, "train", doc="stop a restart when its mean training "
                                "log p(x) over a window of steps improves by less than this "
                                "(nats per sample) on the previous window; 0: run num_steps")
  stop_window: int = _field(100, "train", doc="steps per window of the stopping rule")
  plateau_factor: float = _field(0.3, "train", doc="lr_schedule=plateau: the cut at a plateau")
  plateau_decays: int = _field(2, "train", doc="lr_schedule=plateau: cuts before the stop")
  temperature: float = _field(1.0, "train", doc="Gumbel-Softmax temperature")
  kl_schedule: str = _field("constant", "train", ("constant", "warmup", "cyclical", "reference"))
  kl_warmup_steps: int = _field(0, "train")
  kl_cycles: int = _field(4, "train")
  restarts: int = _field(2, "train", doc="independent starts; the best log p(x) is kept")

  def __post_init__(self):
    for f in dataclasses.fields(self):  # lists from a ConfigDict arrive as lists: hashable tuples
      if isinstance(getattr(self, f.name), list):
        object.__setattr__(self, f.name, tuple(getattr(self, f.name)))
    validate(self)

  @property
  def needs_encoder(self) -> bool:
    """Whether the recipe trains an encoder: only when its q is used (with the exact
    posterior the encoder would never be read, and cost 70% of a step)."""
    return self.posterior == "encoder"

  def replace(self, **changes) -> "FitConfig":
    return dataclasses.replace(self, **changes)


def data_default() -> FitConfig:
  """The fit ``vcm_jax.fit`` and the own-data command start from (``configs/csv.py``
  reads it): train until the likelihood stops improving (many regimes need more than
  400 steps), at most 3000 steps, cutting the rate (x0.3) at each plateau and stopping
  at the third (a rate still high at a plateau stopped 100 x 101 regimes short of the
  ceiling: 0.964x); robust units (median and IQR). A cell is a gross error with
  probability 1e-3 (a Cauchy), so one cell 25 sd out no longer picks its row's regime:
  in the default (``choose.fit_default``) this term is the last stage, a continuation
  of the chosen plain fit kept where BIC prefers it, never a model fitted from
  scratch. 500 rows a step: a step's cost is in proportion to its rows (the MLPs'
  activations and the noise terms, every cell of every regime copy), and where the
  check fails the sparse candidates' steps are most of the run (Sachs seed 1, warm
  cache: 177 s against 256 s at 1000 rows, the same K = 3 and AMI). Set on development
  seeds 0-1 of the multi-target family (``experiments.multitarget_check``; ARI 0.941 /
  0.847 against 0.942 / 0.841, ceilings 0.940 / 0.848) and of the held-out families
  (within 0.002 of 1000 rows a step). ``FitConfig()`` itself is the synthetic
  experiments' recipe (400 steps, cosine, 1000 rows a step)."""
  return FitConfig(num_steps=3000, stop_tolerance=1e-3, lr_schedule="plateau",
                   outlier_fraction=1e-3, robust_units=True, batch_size=500)


def choices() -> dict[str, tuple]:
  """Allowed values of every choice field: ``{name: (values...)}``."""
  return {f.name: f.metadata["choices"] for f in dataclasses.fields(FitConfig)
          if f.metadata["choices"]}


def group_of() -> dict[str, str]:
  """The config group (``model`` or ``train``) of every field."""
  return {f.name: f.metadata["group"] for f in dataclasses.fields(FitConfig)}


def scale_can_read_parents(cfg: FitConfig) -> bool:
  """Whether ``scale_model='parents'`` applies: its head reads the mechanism MLP's last
  hidden layer, and only a learned scale has one."""
  return cfg.mechanism == "mlp" and cfg.scale == "learned"


def validate(cfg: FitConfig) -> None:
  """Raise ``ValueError`` naming the first impossible value (and the allowed ones)."""
  def need(ok, msg):
    if not ok:
      raise ValueError(msg)

  groups = group_of()
  for f in dataclasses.fields(cfg):  # each value of its field's type, first
    need(_of_type(getattr(cfg, f.name), f.default),
         f"{groups[f.name]}.{f.name}={getattr(cfg, f.name)!r} must be {_type_name(f.default)}")
  for name, allowed in choices().items():
    value = getattr(cfg, name)
    need(value in allowed, f"{groups[name]}.{name}={value!r} is not one of {', '.join(allowed)}")
  need(cfg.num_steps >= 1, f"train.num_steps={cfg.num_steps} must be >= 1")
  need(cfg.pooled_steps >= 0, f"train.pooled_steps={cfg.pooled_steps} must be >= 0")
  need(cfg.batch_size >= 1, f"train.batch_size={cfg.batch_size} must be >= 1")
  need(cfg.restarts >= 1, f"train.restarts={cfg.restarts} must be >= 1")
  need(cfg.learning_rate > 0, f"train.learning_rate={cfg.learning_rate} must be > 0")
  need(cfg.temperature > 0, f"train.temperature={cfg.temperature} must be > 0")
  need(cfg.init_scale_factor > 1, f"train.init_scale_factor={cfg.init_scale_factor} must be > 1")
  need(cfg.spike_ratio >= 0, f"train.spike_ratio={cfg.spike_ratio} must be >= 0")
  need(0 < cfg.spike_share < 0.5, f"train.spike_share={cfg.spike_share} must be in (0, 0.5)")
  need(cfg.spike_floor >= 0, f"train.spike_floor={cfg.spike_floor} must be >= 0")
  need(0 < cfg.init_obs_prior < 1, f"train.init_obs_prior={cfg.init_obs_prior} must be in (0, 1)")
  need(cfg.n_regimes == 0 or cfg.n_regimes >= 2,
       f"model.n_regimes={cfg.n_regimes} must be >= 2 (K < 2 has nothing to separate), or 0")
  need(all(k >= 2 for k in cfg.k_candidates), f"model.k_candidates={cfg.k_candidates} must be >= 2")
  need(all(w >= 1 for w in cfg.hidden) and all(w >= 1 for w in cfg.encoder_hidden),
       "model.hidden and model.encoder_hidden widths must be >= 1")
  need(cfg.max_parents >= 0, f"model.max_parents={cfg.max_parents} must be >= 0")
  need(cfg.stop_tolerance >= 0, f"train.stop_tolerance={cfg.stop_tolerance} must be >= 0")
  need(cfg.stop_window >= 1, f"train.stop_window={cfg.stop_window} must be >= 1")
  need(cfg.stop_tolerance == 0 or cfg.num_steps % cfg.stop_window == 0,
       f"train.num_steps={cfg.num_steps} must be a multiple of train.stop_window="
       f"{cfg.stop_window} when the stopping rule is on (stop_tolerance > 0)")
  need(cfg.scale_model == "constant" or scale_can_read_parents(cfg),
       "model.scale_model='parents' needs model.mechanism='mlp' and model.scale='learned'")
  need(cfg.noise_dof > 2, f"model.noise_dof={cfg.noise_dof} must be > 2 (a finite variance)")
  need(0 <= cfg.censor_share < 1, f"model.censor_share={cfg.censor_share} must be in [0, 1)")
  need(0 <= cfg.outlier_fraction < 1,
       f"model.outlier_fraction={cfg.outlier_fraction} must be in [0, 1)")
  need(cfg.change_penalty >= 0, f"model.change_penalty={cfg.change_penalty} must be >= 0")
  need(cfg.decoder != "sparse" or (cfg.estimator == "exact" and cfg.teacher_forcing),
       "model.decoder='sparse' needs train.estimator='exact' and model.teacher_forcing=True")
  need(cfg.lr_schedule != "plateau" or cfg.stop_tolerance > 0,
       "train.lr_schedule='plateau' cuts the rate where the stopping rule finds a plateau: "
       "it needs train.stop_tolerance > 0")
  need(0 < cfg.plateau_factor < 1, f"train.plateau_factor={cfg.plateau_factor} must be in (0, 1)")
  need(cfg.plateau_decays >= 0, f"train.plateau_decays={cfg.plateau_decays} must be >= 0")
  need(cfg.estimator == "exact" or cfg.posterior == "encoder",
       f"train.estimator={cfg.estimator!r} samples z from the encoder: it needs "
       f"train.posterior='encoder'")


def _is_int(v) -> bool:
  return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def _of_type(value, default) -> bool:
  """Whether ``value`` has the type of the field whose default is ``default`` (an int
  where a float goes; a tuple of ints where a tuple goes)."""
  if isinstance(default, bool):
    return isinstance(value, (bool, np.bool_))
  if isinstance(default, int):
    return _is_int(value)
  if isinstance(default, float):
    return _is_int(value) or isinstance(value, (float, np.floating))
  if isinstance(default, str):
    return isinstance(value, str)
  if isinstance(default, tuple):
    return isinstance(value, tuple) and all(_is_int(v) for v in value)
  return True


def _type_name(default) -> str:
  return {bool: "True or False", int: "an integer", float: "a number", str: "a string",
          tuple: "a list of integers"}.get(type(default), type(default).__name__)


def from_groups(*groups: Mapping[str, Any], ignore: tuple = ()) -> FitConfig:
  """A FitConfig from config groups (``config.model``, ``config.train``).

  A key that is neither a field nor in ``ignore`` (the entry point's own keys,
  such as ``log_every``) is an error: a misspelt key never silently falls back
  to a default.
  """
  fields = group_of()
  values = {}
  for group in groups:
    for key, value in group.items():
      if key in ignore:
        continue
      if key not in fields:
        raise ValueError(f"unknown fit config key {key!r}; known: {', '.join(sorted(fields))}")
      values[key] = tuple(value) if isinstance(value, (list, tuple)) else value
  return FitConfig(**values)


def coerce(config) -> FitConfig:
  """``None`` (the default recipe), a FitConfig, a dict of fields, or an experiment
  config with ``model`` and ``train`` groups."""
  if config is None:
    return FitConfig()
  if isinstance(config, FitConfig):
    return config
  if "model" in config and "train" in config:
    return from_groups(config["model"], config["train"], ignore=ENTRY_POINT_KEYS)
  return from_groups(config)


# Keys of the `train` group that belong to the entry points' loop, not to the fit.
ENTRY_POINT_KEYS = ("log_every", "checkpoint_every")


def config_groups(cfg: FitConfig | None = None) -> dict[str, dict]:
  """``{'model': {...}, 'train': {...}}``: the fields as an experiment config's groups."""
  cfg = cfg or FitConfig()
  out = {"model": {}, "train": {}}
  for name, group in group_of().items():
    out[group][name] = getattr(cfg, name)
  return out
