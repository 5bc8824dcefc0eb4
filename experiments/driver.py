"""Runs an experiment config: check it, then a synthetic run (an ``scm`` group) or
a fit of the user's own files (a ``data`` group)."""
from __future__ import annotations

import math
import os
import re

from experiments import loop, own_data, synthetic
from vcm_jax import choose, config as fit_config

UserError = loop.UserError

# Choices of the data-generating groups; the fit's own come from vcm_jax.config.
_SCM_CHOICES = {"intervention": ("mean", "variance", "both"), "noise": ("gauss", "laplace"),
                "mechanism": ("linear", "mlp", "fourier")}


def validate_config(config):
  """The fit's config (``vcm_jax.FitConfig``), after rejecting impossible values of
  every group before anything is compiled."""
  def need(ok, msg):
    if not ok:
      raise UserError(f"config: {msg}")

  try:
    cfg = fit_config.coerce(config)
  except ValueError as err:
    raise UserError(f"config: {err}") from None
  loop.check_seed(config)
  train = config.get("train", {})
  if "log_every" in train:  # (ZeroDivisionError at the end of the run)
    need(train.log_every >= 1, f"train.log_every={train.log_every} must be >= 1")
  if "checkpoint_every" in train:
    need(train.checkpoint_every >= 0,
         f"train.checkpoint_every={train.checkpoint_every} must be >= 0 (0: none)")
  if "scm" in config:
    s = config.scm
    validate_scm(s)
    need(cfg.decoder == "structured" or cfg.n_regimes >= 2,
         f"model.decoder={cfg.decoder!r} on synthetic data needs model.n_regimes >= 2")
    need(config.num_runs >= 1, f"num_runs={config.num_runs} must be >= 1")
    need(cfg.batch_size <= s.n_train,
         f"train.batch_size={cfg.batch_size} must be in [1, scm.n_train={s.n_train}]")
  if "data" in config:
    need(0.0 <= config.data.heldout_fraction <= 0.5,
         f"data.heldout_fraction={config.data.heldout_fraction} must be in [0, 0.5]")
    need(config.mesh.runs == 1, "mesh.runs must be 1 for own data (one run; use mesh.data)")
    sel = config.get("selection")
    if sel is not None and sel.decoders:
      try:  # the library's own checks of the choice's settings
        choose.Selection.from_config(sel)
      except ValueError as err:
        need(False, str(err))
      need(cfg.decoder == "structured" and cfg.n_regimes == 0 and cfg.noise == "gauss",
           f"model.decoder={cfg.decoder!r}, model.n_regimes={cfg.n_regimes} and model.noise="
           f"{cfg.noise!r} are chosen by the model selection: set --config.selection.decoders= "
           "(empty) to fit them as given")
  return cfg


def validate_scm(s) -> None:
  """``UserError`` for an impossible value of the data-generating group ``scm`` (the run
  command's synthetic data, ``experiments.make_data``)."""
  def need(ok, msg):
    if not ok:
      raise UserError(f"config: {msg}")

  for key, allowed in _SCM_CHOICES.items():
    need(s[key] in allowed, f"scm.{key}={s[key]!r} is not one of {', '.join(allowed)}")
  need(s.n_nodes >= 1, f"scm.n_nodes={s.n_nodes} must be >= 1 (K = N + 1 >= 2)")
  need(0.0 <= s.edge_prob <= 1.0, f"scm.edge_prob={s.edge_prob} must be in [0, 1]")
  need(0.0 <= s.obs_fraction <= 1.0, f"scm.obs_fraction={s.obs_fraction} must be in [0, 1]")
  need(0 < s.noise_low <= s.noise_high,
       f"noise scales need 0 < scm.noise_low <= scm.noise_high, got {s.noise_low}, "
       f"{s.noise_high}")
  need(s.mlp_hidden >= 1, f"scm.mlp_hidden={s.mlp_hidden} must be >= 1")
  need(s.n_train >= 2 and s.n_test >= 1, "scm.n_train must be >= 2 and scm.n_test >= 1")
  for key, value in s.items():  # (a NaN shift had run to the end and reported ARI 0)
    if isinstance(value, float):
      need(math.isfinite(value), f"scm.{key}={value} must be a finite number")


def run(config, workdir: str) -> dict:
  """Fit and evaluate ``config``, checkpointing as it goes; a rerun on the same
  workdir resumes and ends with exactly the metrics of an uninterrupted run."""
  validate_config(config)
  # Absolute: orbax refuses a relative checkpoint path (a relative workdir failed at the
  # first checkpoint, after its steps).
  workdir = os.path.abspath(workdir)
  if "data" in config:
    return own_data.run(config, workdir)
  return synthetic.run(config, workdir)


def unknown_key(err: Exception, argv, config_file: str | None = None) -> str:
  """One line for ml_collections' error on an override that names no key: the flag as
  given and its suggestion (the error: an ``AttributeError`` holding a ``KeyError``
  whose message is ``"'key'\\nDid you mean ..."``), and the keys the group above it has
  in the config file (``--config=FILE`` in ``argv``, else ``config_file``): a comparison
  setting takes only the keys its file gives it."""
  while err.args and isinstance(err.args[0], Exception):  # AttributeError(KeyError(...))
    err = err.args[0]
  message = err.args[0] if err.args and isinstance(err.args[0], str) else str(err)
  first, _, hint = message.partition("\n")
  quoted = re.search(r"[\"']([^\"']+)[\"']", first)  # "'key'" or 'Key "key" does not...'
  name = quoted.group(1) if quoted else first.strip()
  paths = [a.split("=")[0][2:] for a in argv if a.startswith("--config.")]
  bad = [p for p in paths if p.endswith("." + name)] or [p for p in paths
                                                         if f".{name}." in p]
  hint = hint.strip()
  hint = f" ({hint[0].lower()}{hint[1:]})" if hint else ""
  given = [p for p in paths if bad and bad[0].startswith(p + ".")]
  if given:  # (ml_collections applies a dotted override to the file's value, not to this one)
    hint += (f" (a dotted override changes the config file's {given[0]!r}, not the one given "
             f"on the command line: put the change in --{given[0]}=...)")
  keys = _keys_beside(bad[0], argv, config_file) if bad and not hint else None
  if keys:  # (where ml_collections had no suggestion: the keys there are)
    hint += f" ({bad[0].rsplit('.', 1)[0]} has only the keys {', '.join(keys)})"
  return f"unknown config key {bad[0] if bad else name!r}{hint}"


def _keys_beside(path: str, argv, config_file: str | None):
  """The keys of the group that holds the dotted ``path`` (``config.a.b.key``: those of
  ``a.b``) in the config file the flag reads, or None (no file, no such group, a file
  that does not load: the error line is still one line without them)."""
  import importlib.util
  flag, *parts = path.split(".")
  file = next((a.split("=", 1)[1] for a in argv if a.startswith(f"--{flag}=")), config_file)
  if not file or len(parts) < 2:
    return None
  try:
    spec = importlib.util.spec_from_file_location("_vcm_config_file", file.split(":")[0])
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    node = module.get_config()
    for part in parts[:-1]:
      node = node[part]
    return sorted(node.keys())
  except Exception:  # noqa: BLE001  (only a hint)
    return None
