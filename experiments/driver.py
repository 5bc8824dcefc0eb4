"""Runs a synthetic experiment config and writes its results to the workdir."""
from __future__ import annotations

import json
import os
import tempfile
import time

import jax
import numpy as np
from absl import logging

from experiments import checkpoints, plots, synthetic, writers
from vcm_jax import graphs, sharding, train


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


class TrainingDiverged(UserError):
  """A non-finite loss: the run stops, the last good checkpoint stays."""


def _check_resumable(workdir: str, config) -> None:
  """Refuse to resume (or overwrite) a workdir that holds another config's run."""
  path = os.path.join(workdir, "config.json")
  if not os.path.exists(path):
    return
  with open(path) as f:
    saved = json.load(f)
  if saved != json.loads(config.to_json()):
    changed = sorted(k for k in set(saved) | set(config.to_dict())
                     if saved.get(k) != json.loads(config.to_json()).get(k))
    raise UserError(f"workdir {workdir} holds a run of a different config (differs in: "
                    f"{', '.join(changed)}); choose another --workdir")


def run(config, workdir: str) -> dict:
  """Simulate, fit and evaluate every run of ``config``, checkpointing as it goes.

  Rerunning the same command on the same workdir resumes from the last
  checkpoint and ends with exactly the metrics of an uninterrupted run.
  """
  validate_config(config)
  os.makedirs(workdir, exist_ok=True)
  _check_resumable(workdir, config)
  write_json_atomic(os.path.join(workdir, "config.json"), json.loads(config.to_json()))
  logging.info("backend %s, %d device(s); %d runs of N=%d, %d training samples",
               jax.default_backend(), jax.device_count(), config.num_runs,
               config.scm.n_nodes, config.scm.n_train)
  start = time.time()
  k_graph, k_runs = jax.random.split(jax.random.key(config.seed))
  adjs = synthetic.sample_graphs(k_graph, config)
  needed = graphs.max_in_degree(adjs)
  if 0 < config.model.max_parents < needed:
    raise UserError(f"config: model.max_parents={config.model.max_parents} is below the largest "
                    f"in-degree of the sampled graphs ({needed}); use 0 for automatic")
  exp = synthetic.make_experiment(config, max_parents=synthetic.max_parents_of(config, adjs))
  keys = jax.random.split(k_runs, config.num_runs)
  try:
    mesh = sharding.make_mesh(runs=config.mesh.runs, data=config.mesh.data,
                              num_runs=config.num_runs, num_samples=config.scm.n_train)
  except ValueError as err:
    raise UserError(f"config: {err}") from None
  keys, adjs = sharding.shard_runs((keys, adjs), mesh)
  data, state = jax.jit(jax.vmap(exp.setup))(keys, adjs)
  data, state = sharding.shard_runs((data, state), mesh)
  xs = sharding.shard_runs_and_samples(jax.vmap(train.standardized)(state, data.x), mesh)

  ckpt = checkpoints.Checkpointer(os.path.join(workdir, "checkpoints"))
  state = ckpt.restore_latest(state)
  step = int(state.step[0])  # every run advances together; one host read per chunk
  if step > 0:
    logging.info("resumed from the checkpoint at step %d", step)
  run_steps = jax.jit(jax.vmap(exp.trainer.run_steps, in_axes=(0, 0, 0, 0, None)),
                      static_argnums=4, donate_argnums=0)
  total = config.train.num_steps
  chunk = config.train.checkpoint_every if config.train.checkpoint_every > 0 else total
  log = writers.MetricWriter(workdir, resume_step=step)
  progress = writers.Progress(total, step)
  while step < total:
    n = min(chunk, total - step)
    new_state, history = run_steps(state, xs, data.parent_idx, data.parent_mask, n)
    history = jax.tree.map(lambda h: np.asarray(h).mean(axis=(0, 1)), history)  # mean over runs, restarts
    bad = np.flatnonzero(~np.isfinite(history["loss"]))
    if bad.size:
      last = ckpt.latest_step()
      kept = (f"the last good checkpoint (step {last}) is kept in {workdir}/checkpoints"
              if last is not None else "no checkpoint had been saved yet")
      raise TrainingDiverged(f"non-finite loss at step {step + int(bad[0])}; stopped, {kept}")
    log.write_history(step, history, config.train.log_every, last_step=total - 1)
    state, step = new_state, step + n
    ckpt.save(step, state)
    progress.update(step, history)
  ckpt.wait()
  log.close()

  scalars, details = jax.jit(jax.vmap(exp.evaluate))(state, data)
  scalars, details = jax.tree.map(np.asarray, (scalars, details))
  wall = time.time() - start
  runs = []
  for r in range(config.num_runs):
    row = {"seed": r}
    for key, value in scalars.items():
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
  if config.plots:
    plots.write_all(workdir, log.rows(), details)
  return payload
