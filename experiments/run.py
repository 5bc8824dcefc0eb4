"""Main job: ``python -m experiments.run --config=configs/er.py --workdir=DIR``."""
import logging as std_logging

from absl import app, flags, logging
from ml_collections import config_flags

from experiments import driver

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file.",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for the run's outputs.")
flags.mark_flags_as_required(["config", "workdir"])


class _QuietLibraries:
  """Keep the console readable: drop orbax's per-save INFO chatter."""

  def filter(self, record):
    return record.levelno > logging.INFO or "orbax" not in record.pathname


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  std_logging.getLogger("absl").addFilter(_QuietLibraries())
  std_logging.getLogger("orbax").setLevel(std_logging.WARNING)
  try:
    driver.run(_CONFIG.value, _WORKDIR.value)
  except driver.UserError as err:  # bad input: one line, no traceback, non-zero exit
    logging.error("%s", err)
    raise SystemExit(f"error: {err}") from None


if __name__ == "__main__":
  app.run(main)
