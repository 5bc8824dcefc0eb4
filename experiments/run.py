"""Main job: ``python -m experiments.run --config=configs/er.py --workdir=DIR``."""
import logging as std_logging  # absl.logging.INFO is absl's level 0, not 20

from absl import app, flags, logging
from ml_collections import config_flags

import experiments
import vcm_jax
from experiments import compilation, driver

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file.",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for the run's outputs.")
_DISTRIBUTED = flags.DEFINE_bool(
    "distributed", False,
    "Call jax.distributed.initialize() first (multi-host: TPU pods, GPU clusters); the "
    "coordinator, process count and id come from the environment, as JAX documents.")
_COORDINATOR = flags.DEFINE_string(
    "coordinator_address", None,
    "With --distributed on a cluster JAX does not detect: host:port of process 0.")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None,
                                      "With --coordinator_address: how many processes.")
_PROCESS_ID = flags.DEFINE_integer("process_id", None,
                                   "With --coordinator_address: this process's id (0 writes).")
_CACHE = flags.DEFINE_string(
    "compilation_cache_dir", compilation.default_cache_dir(),
    "JAX's persistent compilation cache, outside the workdir (default $VCM_JAX_CACHE_DIR or "
    "~/.cache/vcm_jax/xla): a rerun, into any workdir, compiles nothing. '' turns it off.")
flags.mark_flags_as_required(["config", "workdir"])


class _QuietLibraries:
  """Keep the console readable: drop orbax's per-save INFO chatter."""

  def filter(self, record):
    return record.levelno > std_logging.INFO or "orbax" not in record.pathname


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if _DISTRIBUTED.value:
    import jax
    # CPU processes (tests, debugging) exchange arrays over gloo; GPUs and TPUs ignore this.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
  elif _COORDINATOR.value or _NUM_PROCESSES.value or _PROCESS_ID.value is not None:
    raise SystemExit("error: --coordinator_address, --num_processes and --process_id need "
                     "--distributed")
  experiments.configure_jax()
  compilation.enable_cache(_CACHE.value)
  # ABSLHandler delegates to its python_handler without applying its own filters.
  logging.get_absl_handler().python_handler.addFilter(_QuietLibraries())
  try:
    driver.run(_CONFIG.value, _WORKDIR.value)
  except driver.UserError as err:  # bad input: one line, no traceback, non-zero exit
    raise SystemExit(f"error: {err}") from None
  except vcm_jax.FitError as err:  # a failed fit is an error, never a result
    raise SystemExit(f"error: {err}") from None
  except OSError as err:  # a config file that did not load; a workdir that cannot be written
    raise SystemExit(f"error: {experiments.os_error_line(err)}") from None


if __name__ == "__main__":
  app.run(main, flags_parser=experiments.parse_flags)
