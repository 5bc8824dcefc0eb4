"""Benchmarks: ``python -m experiments.bench --workdir=DIR [--cases=er,throughput]``.

Prints a table and appends one JSON object per case to ``DIR/bench.jsonl``.
Timings are wall-clock on whatever machine runs it; compare ratios within one run.

Cases:
  er: the whole configs/er.py job (10 vmapped runs: sampling, fitting, evaluation,
      checkpoints) as a user runs it, compilation included; compile_seconds is the
      XLA compile time within it.
  throughput: one run at N = 10, batch 32: training samples per second of the
      jitted scan (the paper's public code does about 3,300 samples/s here).
"""
from __future__ import annotations

import json
import os
import resource
import tempfile
import time

import jax
import numpy as np
from absl import app, flags

import experiments
from configs import er
from experiments import driver
from vcm_jax import graphs, scm, train

_WORKDIR = flags.DEFINE_string("workdir", None, "Where bench.jsonl goes.", required=True)
_CASES = flags.DEFINE_list("cases", ["er", "throughput"], "Cases to run.")


def _peak_rss_mb():
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class _CompileTimer:
  """Sums XLA compile time through JAX's monitoring events."""

  def __init__(self):
    self.seconds = 0.0
    jax.monitoring.register_event_duration_secs_listener(self._listen)

  def _listen(self, event, duration, **_):
    if event == "/jax/core/compile/backend_compile_duration":
      self.seconds += duration


_COMPILE = _CompileTimer()


def bench_er():
  """The whole configs/er.py job as a user runs it (driver.run: checkpoints, metrics)."""
  config = er.get_config()
  config.plots = False
  compiled_before = _COMPILE.seconds
  with tempfile.TemporaryDirectory() as workdir:
    start = time.perf_counter()
    payload = driver.run(config, workdir)
    seconds = time.perf_counter() - start
  steps = config.train.num_steps + config.train.pooled_steps
  return {
      "name": "er_config", "n_nodes": config.scm.n_nodes, "n_runs": config.num_runs,
      "n_samples": config.scm.n_train, "batch_size": config.train.batch_size,
      "steps": steps, "restarts": config.train.restarts,
      "compile_seconds": _COMPILE.seconds - compiled_before, "seconds": seconds,
      "samples_per_second": config.num_runs * config.train.restarts * steps
      * config.train.batch_size / seconds,
      "mean_ari": payload["summary"]["ari"]["mean"],
      "mean_bayes_ari": payload["summary"]["bayes_ari"]["mean"],
  }


def bench_throughput(n_nodes=10, batch=32, steps=3000):
  key = jax.random.key(0)
  adj = graphs.sample_er_dag(key, n_nodes=n_nodes, edge_prob=0.1)
  true = scm.sample_linear_scm(key, adj)
  x, _ = scm.sample_data(key, true, 10000)
  d = graphs.max_in_degree(adj)
  idx, mask = graphs.parent_table(adj, d)
  cfg = train.FitConfig(batch_size=batch, num_steps=steps, pooled_steps=0, restarts=1)
  fit = jax.jit(train.make_fit(cfg, n_nodes=n_nodes, max_parents=d))
  start = time.perf_counter()
  jax.block_until_ready(fit(key, x, idx, mask))
  cold = time.perf_counter() - start
  start = time.perf_counter()
  jax.block_until_ready(fit(jax.random.key(1), x, idx, mask))
  warm = time.perf_counter() - start
  return {"name": "throughput_n10", "n_nodes": n_nodes, "n_runs": 1, "n_samples": 10000,
          "batch_size": batch, "steps": steps, "compile_seconds": cold - warm,
          "seconds": warm, "samples_per_second": steps * batch / warm,
          "ms_per_step": 1e3 * warm / steps}


_BENCHES = {"er": bench_er, "throughput": bench_throughput}


def main(argv):
  del argv
  experiments.configure_jax()
  os.makedirs(_WORKDIR.value, exist_ok=True)
  unknown = [c for c in _CASES.value if c not in _BENCHES]
  if unknown:
    raise SystemExit(f"error: unknown bench case(s) {unknown}; expected {sorted(_BENCHES)}")
  rows = []
  for case in _CASES.value:
    row = _BENCHES[case]()
    row.update(peak_rss_mb=_peak_rss_mb(), devices=jax.device_count(),
               backend=jax.default_backend())
    rows.append(row)
    with open(os.path.join(_WORKDIR.value, "bench.jsonl"), "a") as f:
      f.write(json.dumps(row) + "\n")
  for row in rows:
    print(f"{row['name']:16s} " + "  ".join(
        f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
        for k, v in row.items() if k != "name"))


if __name__ == "__main__":
  app.run(main)
