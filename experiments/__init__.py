"""Experiment entry points (absl): run, compare, bench, make_data; the loop, reports, plots."""
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
