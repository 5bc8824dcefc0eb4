"""The comparison grid (``experiments.compare``): simulate each setting once, run every
method on it vmapped over seeds, keep finished pairs, write results and the report."""
from __future__ import annotations

import json
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from configs import er
from experiments import driver, loop, methods, real_data, report, synthetic
from vcm_jax import evaluate, graphs, io


COLUMNS = ("setting", "method", "seed", "ari", "bayes_ari", "target_accuracy", "seconds")


UserError = loop.UserError


def setting_scm(overrides) -> "ml_collections.ConfigDict":
  c = er.get_config().scm
  for key, value in overrides.items():
    if key not in c:
      raise UserError(f"config: settings key {key!r} is not an scm key ({', '.join(c)})")
    c[key] = value
  return c


def simulate_setting(config, name, c):
  """Graphs, SCMs and data of every seed of one setting (one vmapped call), and the ceiling
  (``c`` at the grid's sizes: ``run`` sets them before its checks)."""
  key = jax.random.fold_in(jax.random.key(config.seed), _stable_hash(name))
  k_graph, k_data = jax.random.split(key)
  adjs = jax.vmap(lambda k: graphs.sample_er_dag(k, n_nodes=c.n_nodes, edge_prob=c.edge_prob))(
      jax.random.split(k_graph, config.num_seeds))
  # Equal shapes across settings of one N: max_parents is the graph's N - 1 bound
  # capped at 8 (ER graphs here stay far below it), so compiled programs are shared.
  max_parents = min(c.n_nodes - 1, 8) if c.n_nodes > 1 else 1
  if graphs.max_in_degree(adjs) > max_parents:
    max_parents = graphs.max_in_degree(adjs)
  data = jax.jit(jax.vmap(lambda k, a: synthetic.simulate(k, a, c, max_parents=max_parents)))(
      jax.random.split(k_data, config.num_seeds), adjs)
  bayes_ari = jax.jit(jax.vmap(lambda d: evaluate.bayes_ceiling(
      d.true, d.x_test, d.r_test, noise=c.noise)["bayes_ari"]))(data)
  passes = int(np.asarray(jax.vmap(graphs.node_depths)(adjs)).max()) + 1
  return data, np.asarray(bayes_ari), max_parents, passes


def _stable_hash(name: str) -> int:
  return sum((i + 1) * ord(ch) for i, ch in enumerate(name)) % (2 ** 31)


def score(posterior, targets, r_test, n_nodes):
  """ARI and target accuracy of the argmax assignment (one seed)."""
  scores, _, _ = evaluate.score_assignment(posterior, targets, r_test, n_nodes + 1)
  return scores["ari"], scores["target_accuracy"]


def run(config, workdir: str):
  names = [m for m in config.methods.split(",") if m]
  if not names:
    raise UserError(f"config: methods is empty; known: {', '.join(methods.METHODS)}")
  unknown = [m for m in names if m not in methods.METHODS]
  if unknown:
    raise UserError(f"config: unknown method(s) {', '.join(unknown)}; known: "
                    f"{', '.join(methods.METHODS)}")
  for key in ("num_seeds", "n_train", "n_test"):  # (checked before anything is written)
    if key in config and not (isinstance(config[key], int) and config[key] >= 1):
      raise UserError(f"config: {key}={config[key]!r} must be a positive integer")
  if "max_steps" in config and not (isinstance(config.max_steps, int) and config.max_steps >= 0):
    raise UserError(f"config: max_steps={config.max_steps!r} must be an integer >= 0 (0: each "
                    "recipe's own steps)")
  loop.check_seed(config)
  settings = {name: setting_scm(over) for name, over in config.settings.items()}
  for name, c in settings.items():  # the run command's own scm checks, before any work
    c.n_train, c.n_test = config.n_train, config.n_test  # (the sizes every setting runs at)
    try:
      driver.validate_scm(c)
    except loop.UserError as err:
      raise UserError(f"{err} (setting {name})") from None
  unknown_data = [d for d in config.get("real_data", "").split(",") if d and d != "sachs"]
  if unknown_data:
    raise UserError(f"config: real_data names {unknown_data}; known: sachs (or empty)")
  bad = [s for s in config.ablation_settings.split(",") if s and s not in settings]
  if bad and any(m in methods.ABLATIONS for m in names):  # (they run only there)
    raise UserError(f"config: ablation_settings names {bad}, not among the settings "
                    f"{sorted(settings)}")
  os.makedirs(workdir, exist_ok=True)
  config_path = os.path.join(workdir, "config.json")
  if os.path.exists(config_path):
    with open(config_path) as f:
      if json.load(f) != json.loads(config.to_json()):
        raise UserError(f"workdir {workdir} holds a comparison of a different config; "
                        f"choose another --workdir")
  io.write_json_atomic(config_path, json.loads(config.to_json()))
  partial_path = os.path.join(workdir, "partial.jsonl")
  done = {}
  if os.path.exists(partial_path):
    with open(partial_path) as f:
      for line in f:
        row = json.loads(line)
        done[(row["setting"], row["method"])] = row
  compiled, compile_seconds = {}, {}
  start = time.time()
  ablation_settings = config.ablation_settings.split(",")
  if done:  # (a rerun says what it found, and fits only what is missing)
    logging.info("%d (setting, method) pairs already in %s: not fitted again", len(done),
                 partial_path)
  for s_name, c in settings.items():
    todo = [m for m in names if (s_name, m) not in done
            and (m not in methods.ABLATIONS or s_name in ablation_settings)]
    if not todo:
      continue
    data, bayes_ari, max_parents, passes = simulate_setting(config, s_name, c)
    keys = jax.random.split(jax.random.fold_in(jax.random.key(config.seed), 1), config.num_seeds)
    for m_name in todo:
      sig = (m_name, c.n_nodes, max_parents, jax.tree.structure(data),
             passes if methods.uses_passes(m_name) else 0)
      t0 = time.time()
      if sig not in compiled:
        method = methods.make_method(m_name, n_nodes=c.n_nodes, max_parents=max_parents,
                                     max_steps=config.max_steps, passes=passes)
        fn = jax.jit(jax.vmap(lambda k, d, method=method: score(
            *method(k, d), d.r_test, c.n_nodes)))
        compiled[sig] = fn.lower(keys, data).compile()
        compile_seconds[f"{m_name}/N={c.n_nodes}/{c.mechanism}"] = time.time() - t0
      t1 = time.time()
      ari, acc = jax.block_until_ready(compiled[sig](keys, data))
      seconds = (time.time() - t1) / config.num_seeds
      row = {"setting": s_name, "method": m_name, "ari": np.asarray(ari).tolist(),
             "target_accuracy": np.asarray(acc).tolist(), "bayes_ari": bayes_ari.tolist(),
             "seconds": seconds}
      with open(partial_path, "a") as f:
        f.write(json.dumps(row) + "\n")
      done[(s_name, m_name)] = row
      logging.info("%-14s %-22s ARI %.4f (ceiling %.4f)  %.2f s/seed  [%.0f s elapsed]", s_name,
                   m_name, np.mean(ari), bayes_ari.mean(), seconds, time.time() - start)
  rows = []
  for (s_name, m_name), row in done.items():
    if s_name not in settings or m_name not in names:
      continue
    for seed in range(config.num_seeds):
      rows.append({"setting": s_name, "method": m_name, "seed": seed, "ari": row["ari"][seed],
                   "bayes_ari": row["bayes_ari"][seed],
                   "target_accuracy": row["target_accuracy"][seed], "seconds": row["seconds"]})
  lines = [",".join(COLUMNS)] + [",".join(_fmt(r[c]) for c in COLUMNS) for r in rows]
  io.write_text_atomic(os.path.join(workdir, "results.csv"), "\n".join(lines) + "\n")
  # A resumed comparison adds to what earlier invocations compiled and spent.
  timing_path = os.path.join(workdir, "timing.json")
  timing = {"compile_seconds": {}, "invocation_seconds": []}
  if os.path.exists(timing_path):
    with open(timing_path) as f:
      timing = json.load(f)
  timing["compile_seconds"].update(compile_seconds)
  timing["invocation_seconds"].append(time.time() - start)
  io.write_json_atomic(timing_path, timing)
  report.write(workdir, rows, {k: dict(v) for k, v in config.settings.items()},
               wall=sum(timing["invocation_seconds"]), seed=config.seed, plots=config.plots)
  if "sachs" in config.get("real_data", "").split(","):
    with open(os.path.join(workdir, "report.md"), "a") as f:
      f.write("\n".join(real_data.run_sachs(config, workdir, names)) + "\n")
  return rows


def _fmt(v):
  if isinstance(v, float):
    return "" if np.isnan(v) else f"{v:.6g}"
  return str(v)
