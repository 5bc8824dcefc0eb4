"""XLA compilations: a persistent cache for the entry points, and a count of them.

The cache lives outside any workdir (a user cache directory), so the same command
into a fresh workdir, or on other data of the same shape, compiles nothing: every
program, however small, is cached (minimum compile time 0). JAX reports each
compilation request and each cache hit as monitoring events; ``Counter`` counts
them (listeners are registered once per process; counters take differences).
"""
from __future__ import annotations

import threading

import jax

from vcm_jax import programs

# The cache's place and switch are the library's (a library user turns on the same one).
ENV, default_cache_dir, enable_cache = programs.CACHE_ENV, programs.default_cache_dir, \
    programs.enable_cache


_lock = threading.Lock()
_totals = {"requests": 0, "seconds": 0.0, "hits": 0}
_registered = False

_COMPILE = "/jax/core/compile/backend_compile_duration"  # a compile, or a cache read
_HIT = "/jax/compilation_cache/cache_hits"


def _on_duration(event: str, seconds: float, **_) -> None:
  if event == _COMPILE:
    with _lock:
      _totals["requests"] += 1
      _totals["seconds"] += seconds


def _on_event(event: str, **_) -> None:
  if event == _HIT:
    with _lock:
      _totals["hits"] += 1


def _register() -> None:
  global _registered
  if not _registered:
    jax.monitoring.register_event_duration_secs_listener(_on_duration)
    jax.monitoring.register_event_listener(_on_event)
    _registered = True


class Counter:
  """Programs compiled (not read from the cache) and seconds spent getting programs
  (compiling, or reading the cache) since it was made."""

  def __init__(self):
    _register()
    self._start = dict(_totals)

  def read(self) -> dict:
    now = dict(_totals)
    requests = now["requests"] - self._start["requests"]
    hits = now["hits"] - self._start["hits"]
    return {"programs_compiled": requests - hits, "cache_hits": hits,
            "compile_seconds": now["seconds"] - self._start["seconds"]}
