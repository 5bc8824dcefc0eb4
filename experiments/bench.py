"""Benchmarks: ``python -m experiments.bench --workdir=DIR [--cases=er,throughput]``.

Prints a table and appends one JSON object per case to ``DIR/bench.jsonl``.
Timings are wall-clock on whatever machine runs it; compare ratios within one run.

Cases:
  er: the whole configs/er.py job (10 vmapped runs: sampling, fitting, evaluation,
      checkpoints) as a user runs it, compilation included; compile_seconds is the
      XLA compile time within it.
  throughput: one run at N = 10, batch 32: training samples per second of the
      jitted scan (the paper's public code does about 3,300 samples/s here).
  vmap: 1, 16 and 64 vmapped runs at N = 10, same steps; prints the ratios, the
      arithmetic rates and the rate that 64 runs in 8x one run's time would need;
      the same for 1 and 64 runs that also train an encoder (posterior=encoder).
  profile: where one run's training step goes (N = 10, batch 256): the decoder's
      MLP (against linear mechanisms) and the rest, and what an encoder trained
      beside it adds; time and XLA's flop count of each part, beside the rate of
      one large matmul. Writes DIR/profile.json.
  scale: one run on sparse graphs of N = 30, 100, 300, 1000; N = 50 with 10^4, 10^5
      and 10^6 samples. Draws DIR/scaling.png (log-log) and prints the slopes.
  own_data: configs/csv.py on generated CSVs read back like a user's (10000 x 10 and
      30000 x 30, linear mechanisms, shift 4, noise in [0.5, 1.5]): the whole
      command's work (reading, checking, fitting, writing outputs), with the ARI
      against the Bayes ceiling of the same rows.
  own_data_cache: the same own-data command twice into two fresh workdirs, fresh
      processes sharing one fresh persistent compilation cache: programs compiled,
      seconds getting programs and wall time of each (the second compiles nothing).
  own_data_60k, own_data_1m, own_data_n300 (not in the default list): configs/csv.py with its
      defaults on generated CSVs of 60000 x 100, 10^6 x 100 and 10^5 x 300 (sparse ER DAG,
      about 2 parents per node, linear, shift 4, noise in [0.5, 1.5]), the command run in
      a fresh process: wall time, its peak RSS, ARI against the Bayes ceiling, and the
      time io.read_data takes on the CSV. The data (minutes to write at 10^6 rows) stay
      in DIR/data_ROWSxNODES and are reused; the run's outputs go to DIR/run_CASE.
  outliers (not in the default list): the gross-error case, 10 nodes, 10000 rows, 50
      cells moved by 25 sd: the default (gross errors from the plain fit) and a model
      with them from the start, on clean and corrupted rows: ARI on the clean rows and
      the share of corrupted / clean rows flagged.
  censored_t (not in the default list): one step of a censored sparse Student-t fit on
      Sachs (K = 8, batch 1000), its tails in closed form (dof 4) against betainc.
"""
from __future__ import annotations

import json
import os

import jax
from absl import flags

import experiments
from experiments import bench_cases as cases

_WORKDIR = flags.DEFINE_string("workdir", None, "Where bench.jsonl goes.", required=True)
_CASES = flags.DEFINE_list("cases", ["er", "throughput", "vmap", "profile", "scale", "own_data",
                                     "own_data_cache"],
                           "Cases to run.")

_BENCHES = {"er": cases.bench_er, "throughput": cases.bench_throughput,
            "vmap": cases.bench_vmap, "profile": lambda: cases.bench_profile(_WORKDIR.value),
            "scale": cases.bench_scale, "own_data": cases.bench_own_data,
            "outliers": cases.bench_outliers, "own_data_cache": cases.bench_own_data_cache,
            "censored_t": cases.bench_censored_t}
_BENCHES.update({name: (lambda name=name: cases.bench_own_data_at_scale(name, _WORKDIR.value))
                 for name in cases.OWN_DATA_AT_SCALE})


def main(argv):
  del argv
  experiments.configure_jax()
  experiments.names_known(_CASES.value, _BENCHES, "bench case(s)")
  os.makedirs(_WORKDIR.value, exist_ok=True)
  all_rows = []
  for case in _CASES.value:
    out = _BENCHES[case]()
    out = out if isinstance(out, list) else [out]
    all_rows += out
    for row in out:
      # ru_maxrss is the process's peak so far: cases run in order of growing size.
      # (own_data_60k and the like report their run's own peak, measured in its process.)
      row.setdefault("peak_rss_mb", cases.peak_rss_mb())
      row.update(devices=jax.device_count(), backend=jax.default_backend())
      with open(os.path.join(_WORKDIR.value, "bench.jsonl"), "a") as f:
        f.write(json.dumps(row) + "\n")
      print(f"{row['name']:28s} " + "  ".join(
          f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
          for k, v in row.items() if k != "name"), flush=True)
  cases.print_vmap_ratios(all_rows)
  cases.plot_scaling(all_rows, os.path.join(_WORKDIR.value, "scaling.png"))


if __name__ == "__main__":
  experiments.run_main(main)
