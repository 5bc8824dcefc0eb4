"""Independent compiled programs run side by side, one host thread each.

JAX runs one program call at a time on the thread that makes it, and a small fit's
program keeps about one CPU core busy (a Sachs candidate: its steps are 500 rows of an
11-node decoder). Calls made from several host threads run at once: XLA releases
Python's lock while a program runs (two 2000-step scans, 0.196 s one after the other,
0.109 s from two threads on a 2-core CPU). The model choice's candidates that share no
data are such calls: the runs of K of ``choose.fit_candidates``, the further starts of
``choose._more_starts``, the sparse latent grown from the single-target fit beside the
other K, the first fit's noise-family and scale continuations. Each call computes what
it computes alone, so the results do not depend on the number of threads
(``tests/test_choose.py``).

Each thread holds its own program's working memory at once: ``workers = 1`` runs the
jobs one after the other, as before (the own-data config's ``selection.threads``).
"""
from __future__ import annotations

import concurrent.futures
import os
from typing import Callable, Sequence


ENV = "VCM_JAX_THREADS"


def default_threads() -> int:
  """The default number of side-by-side calls: ``$VCM_JAX_THREADS`` where set (a
  positive integer), else the CPU cores this process may use, at most 4 (a small fit's
  program keeps about one busy)."""
  given = os.environ.get(ENV, "").strip()
  if given:
    if not given.isdigit() or int(given) < 1:
      raise ValueError(f"${ENV}={given!r} is not a positive integer")
    return int(given)
  try:
    cores = len(os.sched_getaffinity(0))
  except AttributeError:  # (no affinity on this platform)
    cores = os.cpu_count() or 1
  return max(1, min(cores, 4))


def run_side_by_side(jobs: Sequence[Callable[[], object]], workers: int) -> list:
  """``[job() for job in jobs]``, with up to ``workers`` of them running at once (host
  threads); the results in the jobs' order. Where a job fails, the jobs not yet started
  are cancelled, the running ones end, and the first failure in the jobs' order is
  raised (one at a time, ``workers <= 1``: where it happened). A Ctrl-C cancels the jobs
  not yet started; the running programs end first."""
  jobs = list(jobs)
  if workers <= 1 or len(jobs) <= 1:
    return [job() for job in jobs]
  pool = concurrent.futures.ThreadPoolExecutor(min(workers, len(jobs)),
                                               thread_name_prefix="vcm_jax")
  try:
    futures = [pool.submit(job) for job in jobs]
    concurrent.futures.wait(futures, return_when=concurrent.futures.FIRST_EXCEPTION)
  except BaseException:
    pool.shutdown(wait=False, cancel_futures=True)
    raise
  pool.shutdown(wait=True, cancel_futures=True)  # (after a failure: the rest not started)
  return [f.result() for f in futures if not f.cancelled()]
