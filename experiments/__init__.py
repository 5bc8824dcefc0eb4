"""Experiment entry points (absl): run, compare, bench, make_data; the loop, reports, plots."""
import json
import os


def configure_jax() -> None:
  """Settings for the entry points, applied in ``main`` before JAX computes anything.

  Compilation dominates a short run on CPU, so the entry points trade nothing
  measurable at run time for much faster compiles (measured on the 2-core CPU box:
  the setup program compiled 3x faster, training steps ran at the same speed):
  XLA's backend optimisation level 1 instead of 2. The PRNG is JAX's own default (the
  partitionable threefry), as in the library: a seed draws the same numbers through
  ``vcm_jax.fit`` and through the command, so both doors give one fit (until
  2026-12-02 the command used the non-partitionable threefry and its fits differed
  from the library's on the same seed). An optimisation level already in XLA_FLAGS
  is kept. Library users are unaffected: importing ``experiments`` changes nothing.
  """
  if "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                               + " --xla_backend_optimization_level=1").strip()


class BadFlag(ValueError):
  """A flag value an entry point cannot take (an unknown name, a negative seed): the
  run ends with one ``error:`` line and a non-zero exit, before anything is written."""


def parse_flags(argv):
  """absl flag parsing, with its mistakes (a missing required flag, a config key that
  does not exist) reported in one ``error:`` line instead of a traceback or the usage."""
  from absl import flags
  try:
    return flags.FLAGS(argv)
  except flags.Error as err:
    raise SystemExit(f"error: {err}") from None
  except (AttributeError, KeyError) as err:  # ml_collections: an override names no key
    from experiments import driver
    raise SystemExit(f"error: {driver.unknown_key(err, argv)}") from None
  except OSError as err:  # ml_collections: a config file that does not load
    raise SystemExit(f"error: {os_error_line(err)}") from None


def define_config(name: str, default: str, help_text: str, **kwargs):
  """``config_flags.DEFINE_config_file`` for an entry point whose flag has a default
  file: that file is read, overrides included, as the flag is defined, so a misspelt
  key is reported here, in one ``error:`` line (``parse_flags`` sees the others)."""
  import sys

  from ml_collections import config_flags
  try:
    return config_flags.DEFINE_config_file(name, default, help_text, **kwargs)
  except (AttributeError, KeyError) as err:  # an override names no key
    from experiments import driver
    raise SystemExit(f"error: {driver.unknown_key(err, sys.argv, default)}") from None


def run_main(main) -> None:
  """``absl.app.run(main)`` for an entry point: flags parsed by ``parse_flags``, a
  ``BadFlag`` from ``main`` one ``error:`` line."""
  from absl import app

  def checked(argv):
    if len(argv) > 1:
      raise SystemExit(f"error: unexpected arguments {argv[1:]} (every input is a --flag)")
    try:
      return main(argv)
    except BadFlag as err:
      raise SystemExit(f"error: {err}") from None
    except OSError as err:  # a workdir that cannot be written (read-only, full, missing)
      raise SystemExit(f"error: {os_error_line(err)}") from None

  app.run(checked, flags_parser=parse_flags)


def os_error_line(err: OSError) -> str:
  """An ``OSError`` in one line: what failed, on which path (a config file that did not
  load: ml_collections' reason, its last line)."""
  text = str(err)
  if "Failed loading config file" in text:
    return "cannot load the config file: " + [ln.strip() for ln in text.splitlines()
                                              if ln.strip()][-1]
  if err.strerror:
    return err.strerror + (f": {err.filename}" if err.filename else "")
  return " ".join(text.split())


def earlier_output(path: str, looks_ours, default):
  """What an earlier run of a command wrote to ``path`` (a JSON file), ``default`` where
  there is none, or ``BadFlag`` where the file is not that command's (``looks_ours(data)``
  false): a rerun into a workdir adds to its table."""
  if not os.path.exists(path):
    return default
  try:
    with open(path) as f:
      data = json.load(f)
    ours = looks_ours(data)
  except (ValueError, KeyError, TypeError, AttributeError):  # (damaged or edited by hand)
    ours = False
  if not ours:
    raise BadFlag(f"{path} is not a {os.path.basename(path)} of this command: give another "
                  "--workdir")
  return data


def seeds_of(values, flag: str = "seeds") -> list[int]:
  """The ``--seeds`` list as distinct non-negative integers, at least one, or ``BadFlag``
  naming the bad one."""
  if not values:
    raise BadFlag(f"--{flag} is empty: give at least one seed")
  out = []
  for v in values:
    try:
      seed = int(v)
    except ValueError:
      raise BadFlag(f"--{flag}: {v!r} is not an integer") from None
    if seed < 0:
      raise BadFlag(f"--{flag}: {seed} is negative (seeds are non-negative integers)")
    if seed in out:
      raise BadFlag(f"--{flag}: {seed} is given twice")
    out.append(seed)
  return out


def names_known(given, known, what: str) -> None:
  """``BadFlag`` where ``given`` is empty, names something not in ``known`` or names
  something twice (as ``seeds_of``: a method given twice had run twice)."""
  if not given:
    raise BadFlag(f"no {what} given; known: {sorted(known)}")
  unknown = [g for g in given if g not in known]
  if unknown:
    raise BadFlag(f"unknown {what} {unknown}; known: {sorted(known)}")
  twice = sorted({g for g in given if list(given).count(g) > 1})
  if twice:
    raise BadFlag(f"{what} {twice} given twice")
