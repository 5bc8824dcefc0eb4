"""Shared test setup: repository root on sys.path, CPU backend, hypothesis profile."""
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
  sys.path.insert(0, ROOT)
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import hypothesis  # noqa: E402

hypothesis.settings.register_profile("vcm", deadline=None, derandomize=True,
                                     print_blob=True)
hypothesis.settings.load_profile("vcm")
