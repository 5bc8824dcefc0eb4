"""Shared test setup: repository root on sys.path, CPU backend, compile flags, a persistent
compilation cache, hypothesis profile, the ``fast`` tier."""
import atexit
import concurrent.futures
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile

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

# One persistent compilation cache for the session, shared by the subprocesses the tests
# start (they inherit these variables): a program one of them compiled is read back from
# disk by every later one that compiles it again (the resume test's three runs of one
# config, the examples' fits). Every program is cached, however quick its compile or
# small its executable. A fresh folder per session, removed at its end. The CLI's own
# cache (experiments/compilation.py: $VCM_JAX_CACHE_DIR, else ~/.cache/vcm_jax/xla) is
# pointed at the same folder, so that test runs neither read nor fill the user's cache.
# This process leaves its own compiles out: its programs are all different (what one
# test compiles twice, jit's in-memory cache keeps) and writing each one costs more than
# it saves (measured: the eager-heavy modules took 10-15% longer with the cache on).
# A JAX_COMPILATION_CACHE_DIR already set is used instead, by this process too, and kept:
# point it at a folder of your own to reuse every compile across sessions.
_OWN_CACHE = not os.environ.get("JAX_COMPILATION_CACHE_DIR")
if _OWN_CACHE:
  _CACHE_DIR = tempfile.mkdtemp(prefix="vcm-jax-test-cache-")
  os.environ["JAX_COMPILATION_CACHE_DIR"] = _CACHE_DIR
  atexit.register(shutil.rmtree, _CACHE_DIR, ignore_errors=True)
os.environ["VCM_JAX_CACHE_DIR"] = os.environ["JAX_COMPILATION_CACHE_DIR"]
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "-1")

import jax  # noqa: E402  (after the variables above: its config reads them at import)

if _OWN_CACHE:
  jax.config.update("jax_enable_compilation_cache", False)  # (this process only)

import hypothesis  # noqa: E402
import pytest  # noqa: E402

hypothesis.settings.register_profile("vcm", deadline=None, derandomize=True,
                                     print_blob=True)
hypothesis.settings.load_profile("vcm")


# --- the fast tier and background work --------------------------------------------------
#
# ``pytest -m fast tests``: the tests marked ``fast`` (each well under 2 s, compiles
# included), a tier that runs in under a minute.
#
# Background work: a test whose cost is subprocesses (the CLI, the examples) names a job
# with ``@pytest.mark.early(job=job)``; ``job(folder, popen) -> result`` starts its processes
# with ``popen`` (``subprocess.Popen``'s arguments; the session kills what is left at its
# end) and writes under ``folder``. The jobs of the selected tests start when collection
# ends, one at a time in one thread, in test order, and the test reads its job's result
# with the ``early`` fixture (a job's exception is raised there). This process runs the
# in-process tests meanwhile, mostly one core's work (tracing, XLA compiles), so the
# subprocesses run on the other core: their wall time is mostly hidden, and such a
# test's reported duration is only what was left of its job when it ran. A job shared by
# several tests (the same function) runs once.
_EARLY: dict = {}        # job -> Future
_EARLY_POOL = None
_EARLY_PROCESSES: list = []
_EARLY_ROOT = None


_EARLY_CLOSED = False


def pytest_configure(config):  # (``fast`` is registered in pyproject.toml)
  config.addinivalue_line("markers", "early(job=fn): start fn(folder, popen) in the background "
                          "when the session starts; the test reads its result with the "
                          "'early' fixture")


def _early_popen(*args, **kwargs):
  if _EARLY_CLOSED:
    raise RuntimeError("the test session has ended")
  proc = subprocess.Popen(*args, **kwargs)
  _EARLY_PROCESSES.append(proc)
  return proc


def _early_job(item):
  marker = item.get_closest_marker("early")
  return marker.kwargs["job"] if marker else None


def _submit(job):
  global _EARLY_POOL, _EARLY_ROOT
  if job not in _EARLY:
    if _EARLY_POOL is None:
      _EARLY_POOL = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="early")
      _EARLY_ROOT = tempfile.mkdtemp(prefix="vcm-jax-test-early-")
      atexit.register(shutil.rmtree, _EARLY_ROOT, ignore_errors=True)
    folder = pathlib.Path(tempfile.mkdtemp(prefix=job.__name__ + "-", dir=_EARLY_ROOT))
    _EARLY[job] = _EARLY_POOL.submit(job, folder, _early_popen)
  return _EARLY[job]


def pytest_collection_finish(session):
  if session.config.option.collectonly:
    return
  for item in session.items:
    job = _early_job(item)
    if job is not None:
      _submit(job)


def pytest_sessionfinish(session):
  global _EARLY_CLOSED
  _EARLY_CLOSED = True
  if _EARLY_POOL is not None:
    _EARLY_POOL.shutdown(wait=False, cancel_futures=True)
  for proc in _EARLY_PROCESSES:  # a job's processes still running (-x, Ctrl-C)
    if proc.poll() is None:
      proc.kill()
      proc.wait()


@pytest.fixture
def early(request):
  """The result of the job in this test's ``early`` mark (submitted now if collection
  did not)."""
  job = _early_job(request.node)
  if job is None:
    raise TypeError(f"{request.node.nodeid} uses the 'early' fixture without an early(job=) mark")
  return _submit(job).result()
