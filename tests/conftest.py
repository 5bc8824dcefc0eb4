"""Shared test setup: repository root on sys.path, CPU backend, compile flags, a persistent
compilation cache, hypothesis profile, the ``fast`` tier."""
import atexit
import concurrent.futures
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
  sys.path.insert(0, ROOT)
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# The suite is dominated by XLA compilation of many small programs on a 2-core CPU:
# LLVM's backend optimisations and the CPU fusion emitters cost several times more
# than the programs' run time (measured: a small fit compiles in 2.1 s instead of
# 7-9 s; configs/test.py end to end in 13 s instead of 65 s). Eigen's thread pool off:
# this process and the background's share the two cores, each on one (suite 290 -> 284 s
# on this machine). LLVM code generation in one piece, not split into modules compiled
# by a thread pool, for the same reason (a small default fit 16.8 -> 15.6 s, 13 s of it
# compilation). Set before jax is imported; the CLI subprocesses inherit them.
# XLA_FLAGS already set win.
for _flag in ("--xla_backend_optimization_level=0", "--xla_cpu_use_fusion_emitters=false",
              "--xla_cpu_multi_thread_eigen=false", "--xla_cpu_parallel_codegen_split_count=1"):
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
# (A pytest process that this session starts, below, shares the session's folder.)
_OWN_CACHE = (not os.environ.get("JAX_COMPILATION_CACHE_DIR")
              or os.environ.get("VCM_TEST_SESSION_CACHE") == "1")
if not os.environ.get("JAX_COMPILATION_CACHE_DIR"):
  _CACHE_DIR = tempfile.mkdtemp(prefix="vcm-jax-test-cache-")
  os.environ["JAX_COMPILATION_CACHE_DIR"] = _CACHE_DIR
  os.environ["VCM_TEST_SESSION_CACHE"] = "1"
  atexit.register(shutil.rmtree, _CACHE_DIR, ignore_errors=True)
os.environ["VCM_JAX_CACHE_DIR"] = os.environ["JAX_COMPILATION_CACHE_DIR"]
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
# The default's candidates one after the other (``vcm_jax.concurrency``): the suite's two
# processes keep both cores busy already, and its small fits gain nothing side by side
# (test_fit_default and test_own_data: 86.7 s with two threads, 81.8 s with one). The
# side-by-side path is tested on its own (tests/test_choose.py).
os.environ.setdefault("VCM_JAX_THREADS", "1")
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
# This process runs the in-process tests, mostly one core's work (tracing and XLA
# compiles, single-threaded); the rest goes to the machine's other core, as background
# jobs that start when collection ends, one at a time in one thread, in test order:
#
# * A test whose cost is subprocesses (the CLI, the examples) names a job with
#   ``@pytest.mark.early(job=fn)``; ``fn(folder, popen) -> result`` starts its processes
#   with ``popen`` (``subprocess.Popen``'s arguments; the session kills what is left at
#   its end) and writes under ``folder``; the test reads the result with the ``early``
#   fixture (the job's exception is raised there). A job shared by tests runs once.
# * A module marked ``pytestmark = pytest.mark.offload`` has its selected tests, but the
#   ``fast`` ones, run by a second pytest process (one for all such modules, a job like
#   the others: one interpreter start-up, and the jit caches shared between modules);
#   each test here reports that run's outcome under its own name, with its failure's
#   text, as soon as that run has finished it. Only for modules that share nothing with
#   the others but the data they make themselves. Those outcomes are reported last, and
#   the second process is the last job: the subprocess jobs that this process's tests
#   wait for run first, so that neither process waits for the other until the end (on
#   this machine this process had waited some 50 s for the CLI jobs queued behind it).
#
# The background's wall time is hidden behind this process's; a test reports as its
# duration only what it waited for. ``VCM_TEST_BACKGROUND=0`` runs everything here, in
# order (jobs when their test needs them), as a plain pytest run would.
_CHILD_RESULTS = os.environ.get("VCM_TEST_CHILD_RESULTS")  # set in an offloaded run
_BACKGROUND = os.environ.get("VCM_TEST_BACKGROUND", "1") != "0" and not _CHILD_RESULTS
_JOBS: dict = {}         # job -> Future
_POOL = None
_PROCESSES: list = []
_JOBS_ROOT = None
_CLOSED = False


def pytest_configure(config):  # (``fast`` is registered in pyproject.toml)
  config.addinivalue_line("markers", "early(job=fn): the test reads fn(folder, popen), run in "
                          "the background from the session's start, with the 'early' fixture")
  config.addinivalue_line("markers", "offload: the module's tests (but the fast ones) run in a "
                          "second pytest process in the background")


# The background jobs start their processes from a thread while this one runs tests.
# CPython forks with vfork where it can: the child shares this process's memory until
# it execs, and without an ``env`` it execs with the live ``environ`` array, which
# another thread's setenv (an import, a test) may reallocate meanwhile. A CI run lost a
# test to exactly that: execve failed with EFAULT ("Bad address") on the venv's
# python. So: a plain fork (the documented switch), and the environment copied first.
subprocess._USE_VFORK = False  # pylint: disable=protected-access


def _popen(*args, **kwargs):
  if _CLOSED:
    raise RuntimeError("the test session has ended")
  kwargs.setdefault("env", dict(os.environ))
  proc = subprocess.Popen(*args, **kwargs)
  _PROCESSES.append(proc)
  return proc


def _job_of(item):
  if isinstance(item, _Offloaded):
    return item.job
  marker = item.get_closest_marker("early")
  return marker.kwargs["job"] if marker else None


def _folder(job):
  """A fresh folder for ``job``, under one removed when the session ends."""
  global _JOBS_ROOT
  if _JOBS_ROOT is None:
    _JOBS_ROOT = tempfile.mkdtemp(prefix="vcm-jax-test-jobs-")
    atexit.register(shutil.rmtree, _JOBS_ROOT, ignore_errors=True)
  return pathlib.Path(tempfile.mkdtemp(prefix=job.__name__ + "-", dir=_JOBS_ROOT))


def _submit(job):
  """``job``'s Future: started in the background thread, or (``VCM_TEST_BACKGROUND=0``, an
  offloaded run) run now in this one."""
  global _POOL
  if job not in _JOBS:
    if not _BACKGROUND:
      _JOBS[job] = concurrent.futures.Future()
      try:
        _JOBS[job].set_result(job(_folder(job), _popen))
      except Exception as err:  # noqa: BLE001 (raised by .result() in the test)
        _JOBS[job].set_exception(err)
      return _JOBS[job]
    if _POOL is None:
      _POOL = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="background")
    _JOBS[job] = _POOL.submit(job, _folder(job), _popen)
  return _JOBS[job]


class _Offloaded(pytest.Item):
  """A test of an ``offload`` module, run by ``job``'s pytest process: its outcome."""

  def __init__(self, *, job, **kwargs):
    super().__init__(**kwargs)
    self.job = job

  def runtest(self):
    future = _submit(self.job)
    while True:  # this test's outcome, once the run has torn it down (or has ended)
      done = future.done()
      results, finished = _read_outcomes(self.job.results)
      if self.nodeid in finished or done:
        break
      time.sleep(0.1)
    report = results.get(self.nodeid) if self.nodeid in finished else None
    if report is None:
      status, log = future.result()
      raise _OffloadedFailure(f"no outcome for {self.nodeid} from the background pytest run "
                              f"(exit status {status}); its output ends:\n{log[-3000:]}")
    if report["outcome"] == "skipped":
      pytest.skip(report["text"])
    if report["outcome"] == "failed":
      raise _OffloadedFailure(f"failed in the background pytest run:\n{report['text']}")

  def repr_failure(self, excinfo):
    if isinstance(excinfo.value, _OffloadedFailure):
      return str(excinfo.value)
    return super().repr_failure(excinfo)

  def reportinfo(self):
    return self.path, None, self.name


class _OffloadedFailure(Exception):
  pass


def _read_outcomes(path):
  """``({nodeid: {"outcome", "text"}}, nodeids torn down)`` from an offloaded run's
  results file (each test phase a line, written as the run goes)."""
  outcomes, finished = {}, set()
  for line in path.read_text().splitlines():
    try:
      report = json.loads(line)
    except json.JSONDecodeError:  # (a line being written)
      continue
    seen = outcomes.setdefault(report["nodeid"], {"outcome": "passed", "text": ""})
    if report["outcome"] == "failed" and seen["outcome"] != "failed":
      seen.update(outcome="failed", text=report["text"])
    elif report["outcome"] == "skipped" and seen["outcome"] == "passed":
      seen.update(outcome="skipped", text=report["text"])
    if report["when"] == "teardown":
      finished.add(report["nodeid"])
  return outcomes, finished


def _offload_job(nodeids):
  """A job running ``nodeids`` in a second pytest process: ``(exit status, output)``;
  its outcomes go, test by test, to the file ``job.results``."""
  def run(folder, popen):
    with open(folder / "pytest.log", "w") as log:
      proc = popen([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *nodeids],
                   cwd=ROOT, env=dict(os.environ, VCM_TEST_CHILD_RESULTS=str(run.results)),
                   stdout=log, stderr=subprocess.STDOUT)
      proc.wait()
    return proc.returncode, (folder / "pytest.log").read_text()
  run.__name__ = "offload"
  run.results = _folder(run) / "results.jsonl"
  run.results.touch()
  return run


@pytest.hookimpl(trylast=True)  # after -m and -k have deselected
def pytest_collection_modifyitems(session, config, items):
  if not _BACKGROUND:
    return
  indices = [i for i, item in enumerate(items)
             if (isinstance(item, pytest.Function) and item.get_closest_marker("offload")
                 and not item.get_closest_marker("fast"))]
  if indices:
    job = _offload_job([items[i].nodeid for i in indices])
    offloaded = [_Offloaded.from_parent(items[i].parent, name=items[i].name, job=job)
                 for i in indices]
    moved = set(indices)
    items[:] = [item for i, item in enumerate(items) if i not in moved] + offloaded


def pytest_collection_finish(session):
  if session.config.option.collectonly or not _BACKGROUND:
    return
  for item in session.items:
    job = _job_of(item)
    if job is not None:
      _submit(job)


def pytest_runtest_logreport(report):
  if _CHILD_RESULTS:  # an offloaded run: each phase's outcome, for the session that asked
    text = report.longreprtext
    if report.skipped and isinstance(report.longrepr, tuple):  # (path, line, "Skipped: why")
      text = report.longrepr[2].removeprefix("Skipped: ")
    with open(_CHILD_RESULTS, "a") as f:
      f.write(json.dumps({"nodeid": report.nodeid, "when": report.when,
                          "outcome": report.outcome, "text": text}) + "\n")


def pytest_sessionfinish(session):
  global _CLOSED
  _CLOSED = True
  if _POOL is not None:
    _POOL.shutdown(wait=False, cancel_futures=True)
  for proc in _PROCESSES:  # a job's processes still running (-x, Ctrl-C)
    if proc.poll() is None:
      proc.kill()
      proc.wait()


@pytest.fixture
def early(request):
  """The result of the job in this test's ``early`` mark."""
  job = _job_of(request.node)
  if job is None:
    raise TypeError(f"{request.node.nodeid} uses the 'early' fixture without an early(job=) mark")
  return _submit(job).result()


@pytest.fixture(autouse=True, scope="module")
def _compile_caches_emptied_after_each_module():
  """JAX's compilation caches emptied when a module ends. A process compiles each new
  program more slowly the more it has compiled and kept (measured: 500 small programs
  took 20.5 s to compile in a fresh process and 38.6 s after 2500 others; 23.6 s each time
  where the caches were emptied every 500); this process compiles some 3500 programs,
  which few modules share. A later module that needs one again compiles it again. (13
  in-process modules, two runs side by side, twice: 198 / 193 s against 211 / 206 s.)"""
  yield
  jax.clear_caches()


@pytest.fixture(scope="module")
def short_default():
  """``vcm_jax.config.data_default`` with at most 800 steps of its 500 rows (its
  stopping rule stops the tests' small fits about there; the rows a fit sees are those
  of 400 steps of 1000, the budget before the default took 500 rows a step): every
  default-path test in the module runs the default's own code path on a test's budget."""
  from vcm_jax import config
  data_default = config.data_default
  with pytest.MonkeyPatch.context() as patch:
    patch.setattr(config, "data_default", lambda: data_default().replace(num_steps=800))
    yield


@pytest.fixture
def floored_law():
  """``(fit, x)``: two independent standard normal columns, the first floored at 0 (half
  its rows pinned), and a stand-in fit that is this law exactly (a pinned cell scored by
  its tail probability, log 1/2; every other cell by its density), with the censoring
  bounds, units and graph (no edge, one regime) that the screen and the yardstick read."""
  from types import SimpleNamespace
  import jax.numpy as jnp
  import numpy as np
  from scipy import stats
  rng = np.random.default_rng(0)
  x = rng.normal(size=(3000, 2))
  x[:, 0] = np.maximum(x[:, 0], 0.0)

  def log_prob(rows):
    rows = np.asarray(rows, np.float64)
    first = np.where(rows[:, 0] <= 0.0, np.log(0.5), stats.norm.logpdf(rows[:, 0]))
    return jnp.asarray(first + stats.norm.logpdf(rows[:, 1]))

  params = {"censor_lower": jnp.asarray([0.0, -np.inf], jnp.float32),
            "censor_upper": jnp.asarray([np.inf, np.inf], jnp.float32)}
  fit = SimpleNamespace(
      result=SimpleNamespace(params=params, loc=jnp.zeros(2), scale=jnp.ones(2)),
      log_prob=log_prob, score=lambda rows: float(np.mean(log_prob(rows))),
      bic=lambda rows: float(np.sum(log_prob(rows)) - 0.5 * np.log(len(rows)) * 3),
      parent_idx=np.zeros((2, 1), int), parent_mask=np.zeros((2, 1), bool), n_regimes=1,
      weights=np.ones(1))
  return fit, x
