"""Shared test setup: repository root on sys.path, CPU backend, hypothesis profile."""
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
  sys.path.insert(0, ROOT)
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# The suite is dominated by XLA compilation of many small programs on a 2-core CPU:
# LLVM's backend optimisations and the CPU fusion emitters cost several times more
# than the programs' run time (measured: a small fit compiles in 2.1 s instead of
# 7-9 s; configs/test.py end to end in 13 s instead of 65 s). Set before jax is
# imported; the CLI subprocesses inherit them. XLA_FLAGS already set win.
for _flag in ("--xla_backend_optimization_level=0", "--xla_cpu_use_fusion_emitters=false"):
  if _flag.split("=")[0] not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + _flag).strip()

import hypothesis  # noqa: E402

hypothesis.settings.register_profile("vcm", deadline=None, derandomize=True,
                                     print_blob=True)
hypothesis.settings.load_profile("vcm")
