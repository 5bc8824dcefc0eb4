"""Synthetic runs: sample graphs, SCMs and data, fit, score against the truth.

Every piece is pure and vmapped over runs: ``setup`` (graph -> SCM -> data ->
initial train state), the trainer's ``run_steps`` (a chunk of steps) and the
library's evaluation (``vcm_jax.evaluate.against_truth``). The host loops over
chunks only to log and checkpoint (``experiments.loop``).
"""
from __future__ import annotations

import json
import os
import time
from typing import NamedTuple

import jax
import numpy as np
from absl import logging

from experiments import loop, plots
from vcm_jax import api, config as fit_config, evaluate, graphs, io, scm, sharding, units
from vcm_jax import train


class RunData(NamedTuple):
  x: jax.Array          # [S, N] training samples
  r: jax.Array          # [S] their true regimes (for the oracle baseline only)
  x_test: jax.Array     # [S_test, N] held-out samples
  r_test: jax.Array     # [S_test] their true regimes
  parent_idx: jax.Array
  parent_mask: jax.Array
  true: scm.SCM


def sample_graphs(key, c, num_runs: int):
  """``[R, N, N]`` ER DAGs from the ``scm`` group ``c``, one per run (one jitted call)."""
  sample = lambda k: graphs.sample_er_dag(k, n_nodes=c.n_nodes, edge_prob=c.edge_prob)
  return jax.jit(jax.vmap(sample))(jax.random.split(key, num_runs))


def true_scm(key, adj, c) -> scm.SCM:
  """The SCM on ``adj`` that the ``scm`` config group ``c`` describes."""
  return scm.sample_scm(key, adj, mechanism=c.mechanism, hidden=c.mlp_hidden, shift=c.shift,
                        noise_low=c.noise_low, noise_high=c.noise_high,
                        obs_fraction=c.obs_fraction, intervention=c.intervention,
                        variance_factor=c.variance_factor)


def simulate(key, adj, c, *, max_parents: int) -> RunData:
  """One SCM on ``adj`` from the ``scm`` config group ``c``, its training and held-out data."""
  k_scm, k_train, k_test = jax.random.split(key, 3)
  true = true_scm(k_scm, adj, c)
  x, r = scm.sample_data(k_train, true, c.n_train, noise=c.noise)
  x_test, r_test = scm.sample_data(k_test, true, c.n_test, noise=c.noise)
  idx, mask = graphs.parent_table(adj, max_parents)
  return RunData(x, r, x_test, r_test, idx, mask, true)


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


def written_or_kept(path: str, payload: dict, *, write: bool = True) -> dict:
  """``payload`` written to ``path`` (metrics.json) and returned, or, where the file
  already holds the same runs' results and summary, that file's contents, left as they
  are: a rerun
  of a finished run (the same config: ``loop.prepare_workdir``) reads its last
  checkpoint and scores the same runs, and had rewritten the file with its own few
  seconds as the run's wall time."""
  try:
    with open(path) as f:
      earlier = json.load(f)
  except (OSError, ValueError):
    earlier = None
  if isinstance(earlier, dict) and all(earlier.get(k) == payload[k] for k in ("runs", "summary")):
    logging.info("the runs' results are those in %s: kept as written", path)
    return earlier
  if write:
    io.write_json_atomic(path, payload)
  return payload


def run(config, workdir: str) -> dict:
  """Simulate, fit and evaluate ``config.num_runs`` runs, checkpointing as it goes."""
  c = config.scm
  cfg = fit_config.coerce(config)
  loop.prepare_workdir(config, workdir)
  logging.info("backend %s, %d device(s); %d runs of N=%d, %d training samples",
               jax.default_backend(), jax.device_count(), config.num_runs, c.n_nodes, c.n_train)
  start = time.time()
  k_graph, k_runs = jax.random.split(jax.random.key(config.seed))
  adjs = sample_graphs(k_graph, c, config.num_runs)
  try:
    max_parents = graphs.resolve_max_parents(adjs, cfg.max_parents)
  except ValueError as err:
    raise loop.UserError(f"config: {err}") from None
  trainer = train.make_trainer(cfg, n_nodes=c.n_nodes, max_parents=max_parents)

  def setup(key, adj):
    k_data, k_fit = jax.random.split(key)
    data = simulate(k_data, adj, c, max_parents=max_parents)
    return data, trainer.init(k_fit, data.x, data.parent_idx, data.parent_mask)

  def score(state, data: RunData):
    xs = units.to_standard(data.x, state.loc, state.scale)
    result = trainer.finish(state, xs, data.parent_idx, data.parent_mask)
    fit = api.from_result(trainer.model, result, data.x, data.parent_idx, data.parent_mask,
                          graphs.topological_order(data.true.adj))
    return evaluate.against_truth(fit, data.x, data.x_test, data.r_test, data.true, noise=c.noise)

  try:
    mesh = sharding.make_mesh(runs=config.mesh.runs, data=config.mesh.data,
                              num_runs=config.num_runs, num_samples=c.n_train)
  except ValueError as err:
    raise loop.UserError(f"config: {err}") from None
  keys, adjs = sharding.shard_runs((jax.random.split(k_runs, config.num_runs), adjs), mesh)
  data, state = sharding.shard_runs(jax.jit(jax.vmap(setup))(keys, adjs), mesh)
  xs = sharding.shard_runs_and_samples(
      jax.vmap(units.to_standard)(data.x, state.loc, state.scale), mesh)
  state, log = loop.train_loop(loop.jit_run_steps(trainer), state, xs, data.parent_idx,
                               data.parent_mask, config, workdir)
  scalars, details = sharding.to_host(jax.jit(jax.vmap(score))(state, data))
  wall = time.time() - start
  runs = []
  for r in range(config.num_runs):
    row = {"seed": r}
    for key, value in scalars.items():
      v = value[r]
      row[key] = bool(v) if v.dtype == bool else (int(v) if key in ("n_edges", "steps_used")
                                                  else float(v))
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
  kept = written_or_kept(os.path.join(workdir, "metrics.json"), payload,
                         write=sharding.is_primary())  # (several hosts: one writer)
  if sharding.is_primary() and config.plots:  # (also where kept: plots lost or never made)
    plots.write_all(workdir, log.rows(), details)
  return kept
