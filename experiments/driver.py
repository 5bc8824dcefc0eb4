"""Runs a synthetic experiment config and writes its results to the workdir."""
from __future__ import annotations

import json
import os
import tempfile
import time

import jax
import numpy as np
from absl import logging

from experiments import synthetic


class UserError(ValueError):
  """A problem with the user's input or config: reported in one line, no traceback."""


_CHOICES = {
    ("scm", "intervention"): ("mean", "variance", "both"),
    ("scm", "noise"): ("gauss", "laplace"),
    ("model", "mechanism"): ("linear", "mlp"),
    ("model", "scale"): ("learned", "unit"),
    ("train", "estimator"): ("exact", "gumbel", "straight_through"),
    ("train", "posterior"): ("exact", "encoder"),
    ("train", "prior"): ("learned", "uniform"),
    ("train", "init"): ("surprise", "random"),
    ("train", "kl_schedule"): ("constant", "warmup", "cyclical"),
}


def validate_config(config) -> None:
  """Reject impossible values before anything is compiled."""
  def need(ok, msg):
    if not ok:
      raise UserError(f"config: {msg}")

  for (group, key), allowed in _CHOICES.items():
    value = config[group][key]
    need(value in allowed, f"{group}.{key}={value!r} is not one of {', '.join(allowed)}")
  s, t = config.scm, config.train
  need(config.num_runs >= 1, f"num_runs={config.num_runs} must be >= 1")
  need(s.n_nodes >= 1, f"scm.n_nodes={s.n_nodes} must be >= 1 (K = N + 1 >= 2)")
  need(0.0 <= s.edge_prob <= 1.0, f"scm.edge_prob={s.edge_prob} must be in [0, 1]")
  need(0.0 <= s.obs_fraction <= 1.0, f"scm.obs_fraction={s.obs_fraction} must be in [0, 1]")
  need(0 < s.noise_low <= s.noise_high,
       f"noise scales need 0 < scm.noise_low <= scm.noise_high, got {s.noise_low}, {s.noise_high}")
  need(s.n_train >= 2 and s.n_test >= 1, "scm.n_train must be >= 2 and scm.n_test >= 1")
  need(t.num_steps >= 1 and t.pooled_steps >= 0, "train.num_steps must be >= 1, pooled_steps >= 0")
  need(1 <= t.batch_size <= s.n_train,
       f"train.batch_size={t.batch_size} must be in [1, scm.n_train={s.n_train}]")
  need(t.restarts >= 1, f"train.restarts={t.restarts} must be >= 1")
  need(t.learning_rate > 0, f"train.learning_rate={t.learning_rate} must be > 0")
  need(t.temperature > 0, f"train.temperature={t.temperature} must be > 0")
  need(t.init_scale_factor > 1, f"train.init_scale_factor={t.init_scale_factor} must be > 1")
  need(0 < t.init_obs_prior < 1, f"train.init_obs_prior={t.init_obs_prior} must be in (0, 1)")


def write_json_atomic(path: str, payload) -> None:
  """Write JSON through a temporary file and rename, so a crash never leaves half a file."""
  directory = os.path.dirname(path) or "."
  fd, tmp = tempfile.mkstemp(dir=directory, suffix=".tmp")
  with os.fdopen(fd, "w") as f:
    json.dump(payload, f, indent=2)
  os.replace(tmp, path)


def _summary(runs: list[dict]) -> dict:
  out = {}
  for key, value in runs[0].items():
    if isinstance(value, (int, float)) and key != "seed":
      col = np.array([r[key] for r in runs], float)
      out[key] = {"mean": float(col.mean()), "std": float(col.std()),
                  "min": float(col.min()), "max": float(col.max())}
  out["ari_over_bayes_ari"] = float(np.mean([r["ari"] for r in runs])
                                    / max(np.mean([r["bayes_ari"] for r in runs]), 1e-12))
  out["observational_identified"] = int(sum(r["observational_identified"] for r in runs))
  return out


def run(config, workdir: str) -> dict:
  """Simulate, fit and evaluate every run of ``config``; write ``workdir/metrics.json``."""
  validate_config(config)
  os.makedirs(workdir, exist_ok=True)
  logging.info("backend %s, %d device(s); %d runs of N=%d, %d training samples",
               jax.default_backend(), jax.device_count(), config.num_runs,
               config.scm.n_nodes, config.scm.n_train)
  start = time.time()
  adjs, out, history = synthetic.simulate(jax.random.key(config.seed), config)
  wall = time.time() - start

  every = max(int(config.train.log_every), 1)
  mean_hist = {k: v.mean(axis=0) for k, v in history.items()}
  for step in range(0, config.train.num_steps, every):
    logging.info("step %5d  loss %.4f  elbo %.4f  log p(x) %.4f  kl %.4f", step,
                 mean_hist["loss"][step], mean_hist["elbo"][step], mean_hist["log_px"][step],
                 mean_hist["kl"][step])
  runs = []
  for r in range(config.num_runs):
    row = {"seed": r}
    for key, value in out.items():
      v = value[r]
      row[key] = bool(v) if v.dtype == bool else (int(v) if key == "n_edges" else float(v))
    runs.append(row)
    logging.info("run %d: ARI %.4f (Bayes ceiling %.4f), target accuracy %.4f, observational %s",
                 r, row["ari"], row["bayes_ari"], row["target_accuracy"],
                 row["observational_identified"])
  summary = _summary(runs)
  logging.info("mean ARI %.4f vs ceiling %.4f (ratio %.4f); observational identified %d/%d; %.1f s",
               summary["ari"]["mean"], summary["bayes_ari"]["mean"],
               summary["ari_over_bayes_ari"], summary["observational_identified"],
               config.num_runs, wall)
  payload = {"runs": runs, "summary": summary, "wall_seconds": wall,
             "config": config.to_dict(), "backend": jax.default_backend()}
  write_json_atomic(os.path.join(workdir, "metrics.json"), payload)
  return payload
