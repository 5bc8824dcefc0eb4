"""Runs an experiment config and writes its results to the workdir.

Two kinds of config share one training loop (chunks of compiled steps, orbax
checkpoints, metrics.jsonl, TensorBoard, progress): synthetic ones (a ``scm``
group: simulate, fit, score against the truth) and own-data ones (a ``data``
group: read the user's files, fit, write assignments and regimes).
"""
from __future__ import annotations

import hashlib
import json
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from experiments import checkpoints, own_data, plots, synthetic, writers
from vcm_jax import graphs, io, sharding, train

write_json_atomic = io.write_json_atomic


class UserError(ValueError):
  """A problem with the user's input or config: reported in one line, no traceback."""


_CHOICES = {
    ("scm", "intervention"): ("mean", "variance", "both"),
    ("scm", "noise"): ("gauss", "laplace"),
    ("scm", "mechanism"): ("linear", "mlp"),
    ("model", "decoder"): ("structured", "free"),
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
    if group in config:
      value = config[group][key]
      need(value in allowed, f"{group}.{key}={value!r} is not one of {', '.join(allowed)}")
  m, t = config.model, config.train
  need(t.num_steps >= 1 and t.pooled_steps >= 0, "train.num_steps must be >= 1, pooled_steps >= 0")
  need(t.batch_size >= 1, f"train.batch_size={t.batch_size} must be >= 1")
  need(t.restarts >= 1, f"train.restarts={t.restarts} must be >= 1")
  need(t.learning_rate > 0, f"train.learning_rate={t.learning_rate} must be > 0")
  need(t.temperature > 0, f"train.temperature={t.temperature} must be > 0")
  need(t.init_scale_factor > 1, f"train.init_scale_factor={t.init_scale_factor} must be > 1")
  need(0 < t.init_obs_prior < 1, f"train.init_obs_prior={t.init_obs_prior} must be in (0, 1)")
  need(m.n_regimes == 0 or m.n_regimes >= 2,
       f"model.n_regimes={m.n_regimes} must be >= 2 (K < 2 has nothing to separate), or 0")
  need(all(k >= 2 for k in m.k_candidates), f"model.k_candidates={m.k_candidates} must be >= 2")
  need(all(w >= 1 for w in m.hidden) and all(w >= 1 for w in m.encoder_hidden),
       "model.hidden and model.encoder_hidden widths must be >= 1")
  if "scm" in config:
    s = config.scm
    need(m.decoder == "structured" or m.n_regimes >= 2,
         "model.decoder='free' on synthetic data needs model.n_regimes >= 2")
    need(config.num_runs >= 1, f"num_runs={config.num_runs} must be >= 1")
    need(s.n_nodes >= 1, f"scm.n_nodes={s.n_nodes} must be >= 1 (K = N + 1 >= 2)")
    need(0.0 <= s.edge_prob <= 1.0, f"scm.edge_prob={s.edge_prob} must be in [0, 1]")
    need(0.0 <= s.obs_fraction <= 1.0, f"scm.obs_fraction={s.obs_fraction} must be in [0, 1]")
    need(0 < s.noise_low <= s.noise_high,
         f"noise scales need 0 < scm.noise_low <= scm.noise_high, got {s.noise_low}, "
         f"{s.noise_high}")
    need(s.mlp_hidden >= 1, f"scm.mlp_hidden={s.mlp_hidden} must be >= 1")
    need(s.n_train >= 2 and s.n_test >= 1, "scm.n_train must be >= 2 and scm.n_test >= 1")
    need(t.batch_size <= s.n_train,
         f"train.batch_size={t.batch_size} must be in [1, scm.n_train={s.n_train}]")
  if "data" in config:
    need(0.0 < config.data.heldout_fraction <= 0.5,
         f"data.heldout_fraction={config.data.heldout_fraction} must be in (0, 0.5]")
    need(config.mesh.runs == 1, "mesh.runs must be 1 for own data (one run; use mesh.data)")


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


def _check_resumable(workdir: str, config, inputs: dict | None = None) -> None:
  """Refuse to resume (or overwrite) a workdir that holds another config's run, or a
  run on other input files (``inputs``: name -> content hash)."""
  path = os.path.join(workdir, "config.json")
  if not os.path.exists(path):
    return
  with open(path) as f:
    saved = json.load(f)
  current = json.loads(config.to_json())
  if saved != current:
    changed = sorted(k for k in set(saved) | set(current) if saved.get(k) != current.get(k))
    raise UserError(f"workdir {workdir} holds a run of a different config (differs in: "
                    f"{', '.join(changed)}); choose another --workdir")
  inputs_path = os.path.join(workdir, "inputs.json")
  if inputs is not None and os.path.exists(inputs_path):
    with open(inputs_path) as f:
      saved_inputs = json.load(f)
    changed = sorted(k for k in inputs if saved_inputs.get(k) != inputs[k])
    if changed:
      raise UserError(f"workdir {workdir} holds a run on other contents of "
                      f"{', '.join(changed)}; choose another --workdir")


def _prepare_workdir(config, workdir: str, inputs: dict | None = None) -> None:
  os.makedirs(workdir, exist_ok=True)
  _check_resumable(workdir, config, inputs)
  if sharding.is_primary():
    io.write_json_atomic(os.path.join(workdir, "config.json"), json.loads(config.to_json()))
    if inputs is not None:
      io.write_json_atomic(os.path.join(workdir, "inputs.json"), inputs)


def train_loop(run_steps, state, xs, parent_idx, parent_mask, config, workdir: str):
  """Chunks of compiled steps from the last checkpoint to ``train.num_steps``.

  ``run_steps`` is the jitted, runs-vmapped ``Trainer.run_steps``; ``state`` has
  a leading runs axis. Returns the final state and the metric writer (its rows).
  """
  ckpt = checkpoints.Checkpointer(os.path.join(workdir, "checkpoints"))
  state = ckpt.restore_latest(state)
  step = int(sharding.to_host(state.step)[0])  # every run advances together
  if step > 0:
    logging.info("resumed from the checkpoint at step %d", step)
  total = config.train.num_steps
  chunk = config.train.checkpoint_every if config.train.checkpoint_every > 0 else total
  log = writers.MetricWriter(workdir, resume_step=step, write=sharding.is_primary())
  progress = writers.Progress(total, step)
  while step < total:
    n = min(chunk, total - step)
    new_state, history = run_steps(state, xs, parent_idx, parent_mask, n)
    # One host read per chunk: the mean over runs and restarts of each step's metrics.
    history = jax.tree.map(lambda h: h.mean(axis=(0, 1)), sharding.to_host(history))
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
  return state, log


def _jit_run_steps(trainer):
  return jax.jit(jax.vmap(trainer.run_steps, in_axes=(0, 0, 0, 0, None)),
                 static_argnums=4, donate_argnums=0)


def run(config, workdir: str) -> dict:
  """Fit and evaluate ``config`` (synthetic or own data), checkpointing as it goes.

  Rerunning the same command on the same workdir resumes from the last
  checkpoint and ends with exactly the metrics of an uninterrupted run.
  """
  validate_config(config)
  if "data" in config:
    return run_own_data(config, workdir)
  _prepare_workdir(config, workdir)
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
  state, log = train_loop(_jit_run_steps(exp.trainer), state, xs, data.parent_idx,
                          data.parent_mask, config, workdir)

  scalars, details = jax.jit(jax.vmap(exp.evaluate))(state, data)
  scalars, details = sharding.to_host((scalars, details))
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
  if sharding.is_primary():  # several hosts: one writer, all of them computed
    io.write_json_atomic(os.path.join(workdir, "metrics.json"), payload)
    if config.plots:
      plots.write_all(workdir, log.rows(), details)
  return payload


def _file_hash(path: str) -> str:
  h = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      h.update(block)
  return h.hexdigest()


def run_own_data(config, workdir: str) -> dict:
  """Fit a user's data and graph; write assignments.csv, regimes.json, metrics.json, plots.

  Everything about the input is checked before the workdir is touched: bad input
  leaves an earlier run's results there as they were.
  """
  start = time.time()
  if jax.process_count() > 1:
    raise UserError("own data is fitted in one process (one run; mesh.data splits its batch "
                    "over this host's devices); drop --distributed")
  try:
    data = own_data.load(config)
  except io.InputError as err:
    raise UserError(str(err)) from None
  n = len(data.names)
  inputs = {"data": _file_hash(config.data.path), "graph": _file_hash(config.data.graph)}
  _prepare_workdir(config, workdir, inputs)
  logging.info("backend %s, %d device(s); %d rows x %d variables (%d fitted, %d held out), "
               "%d edges", jax.default_backend(), jax.device_count(), len(data.x), n,
               len(data.train_rows), len(data.test_rows), int(data.adj.sum()))
  max_parents = max(graphs.max_in_degree(data.adj), 1)
  n_regimes, selection = None, None
  if config.model.decoder == "free":
    n_regimes = config.model.n_regimes
    if n_regimes == 0:
      selection_path = os.path.join(workdir, "k_selection.json")
      if os.path.exists(selection_path):  # resumed: the choice was made before
        with open(selection_path) as f:
          selection = json.load(f)
      else:
        selection = own_data.choose_n_regimes(config, data, max_parents)
        if sharding.is_primary():
          io.write_json_atomic(selection_path, selection)
      n_regimes = selection["n_regimes"]
      logging.info("chose K = %d by held-out ELBO: %s", n_regimes, selection["heldout_elbo"])
  exp = own_data.make_experiment(config, n_nodes=n, max_parents=max_parents, n_regimes=n_regimes)
  try:
    mesh = sharding.make_mesh(runs=1, data=config.mesh.data, num_runs=1,
                              num_samples=len(data.train_rows))
  except ValueError as err:
    raise UserError(f"config: {err}") from None
  idx, mask = graphs.parent_table(jnp.asarray(data.adj), max_parents)
  x_train = jnp.asarray(data.x[data.train_rows])
  state = jax.jit(jax.vmap(exp.setup, in_axes=(0, None, None, None)))(
      jax.random.key(config.seed)[None], x_train, idx, mask)
  state = sharding.shard_runs(state, mesh)
  xs = sharding.shard_runs_and_samples(jax.vmap(train.standardized, in_axes=(0, None))(
      state, x_train), mesh)
  batched = lambda a: jnp.broadcast_to(a, (1,) + a.shape)
  state, log = train_loop(_jit_run_steps(exp.trainer), state, xs, batched(idx), batched(mask),
                          config, workdir)

  one = jax.tree.map(lambda a: a[0], state)
  ev = jax.jit(exp.evaluate)(one, x_train, jnp.asarray(data.x),
                             jnp.asarray(data.x[data.test_rows]), idx, mask)
  ev = sharding.to_host(ev)
  report, extras = own_data.regime_report(config, data, ev, structured=exp.trainer.model.structured)
  wall = time.time() - start
  summary = {
      "n_rows": len(data.x), "n_variables": n, "n_fitted": len(data.train_rows),
      "n_heldout": len(data.test_rows), "n_regimes": report["n_regimes"],
      "n_empty_regimes": report["n_empty"],
      "elbo": float(ev["train_elbo"]), "train_log_px": float(ev["train_log_px"]),
      "heldout_loglik": float(ev["heldout_loglik"]), "heldout_elbo": float(ev["heldout_elbo"]),
      "mean_posterior_probability": float(extras["posterior"].max(1).mean()),
  }
  if selection is not None:
    summary["k_selection"] = selection
  if data.labels is not None:
    summary["labels"] = own_data.label_metrics(data, extras["assigned"], extras["target_idx"])
  payload = {"summary": summary, "wall_seconds": wall, "config": config.to_dict(),
             "backend": jax.default_backend()}
  if sharding.is_primary():
    own_data.write_outputs(workdir, data, report, extras)
    io.write_json_atomic(os.path.join(workdir, "metrics.json"), payload)
    if config.plots:
      plots.write_own_data(workdir, log.rows(), report, extras)
  labels = summary.get("labels")
  logging.info("%d regimes (%d empty); held-out log-likelihood %.4f%s; %.1f s",
               report["n_regimes"], report["n_empty"], summary["heldout_loglik"],
               "" if labels is None else f"; labels: ARI {labels['ari']:.4f}, target accuracy "
               f"{labels['target_accuracy']}", wall)
  return payload
