"""Every method against the Bayes ceiling on one grid of settings.

  python -m experiments.compare --config=configs/compare.py --workdir=DIR

For each setting: one vmapped call samples ``num_seeds`` graphs, SCMs and
datasets; each method is one ``jit(vmap(...))`` over the seeds (settings of
equal shapes reuse its compiled program). Writes ``DIR/results.csv``
(``setting,method,seed,ari,bayes_ari,target_accuracy,seconds``; seconds = the
method's run time for all seeds / seeds, compilation excluded and reported in
``DIR/timing.json``), ``DIR/report.md`` and plots. Finished
(setting, method) pairs are kept in ``DIR/partial.jsonl``: rerunning the same
command on the same workdir continues where it stopped.
"""
from absl import flags

import experiments
from experiments import grid

run, UserError = grid.run, grid.UserError


def main(argv):
  del argv  # (experiments.run_main refuses stray arguments)
  experiments.configure_jax()
  try:
    run(_CONFIG.value, _WORKDIR.value)
  except UserError as err:
    raise SystemExit(f"error: {err}") from None


if __name__ == "__main__":
  # Flags are defined only when run as a program: tests import this module beside
  # the other entry points, which define flags of the same names.
  _CONFIG = experiments.define_config("config", "configs/compare.py", "Comparison config.",
                                      lock_config=True)
  _WORKDIR = flags.DEFINE_string("workdir", None, "Directory for results.csv, report.md, plots.")
  flags.mark_flags_as_required(["workdir"])
  experiments.run_main(main)
