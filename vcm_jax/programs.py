"""The compiled programs a process holds, released before they exhaust its memory maps.

Each XLA CPU executable holds about nine memory maps (code and data sections), and
``jax.jit`` keeps every executable for the life of the process. Linux allows a process
``vm.max_map_count`` maps (65530 by default); past that, LLVM cannot allocate the next
program and the process dies with a segmentation fault. One ``vcm_jax.fit(x)`` that
learns the graph (heteroscedastic development seed 2, 12 nodes) leaves 22244 maps; the
fourth fit of a loop in one process died there. ``jax.clear_caches()`` gives them back
(1095 after it).

``release_if_crowded`` clears JAX's caches where the process holds more than a third of
its limit, so a fit twice the size of the one measured still has room. It runs where
``vcm_jax.fit`` and ``learn.learn_graph`` start and between the graph search and the
regime fits. The cost is a compile of the next program met again (read back from the
persistent compilation cache where one is on). Where the count cannot be read (no
``/proc``), nothing is done.

``enable_cache`` turns on JAX's persistent compilation cache in a user cache directory
(the own-data command's, by default): a first ``vcm_jax.fit`` compiles some 100-250
small programs (one to three minutes on a 2-core CPU); a later process with the cache
on reads them back.
"""
from __future__ import annotations

import logging
import os

import jax

_LOG = logging.getLogger(__name__)
SHARE = 1 / 3  # of vm.max_map_count held before the caches are cleared
CACHE_ENV = "VCM_JAX_CACHE_DIR"


def default_cache_dir() -> str:
  """``$VCM_JAX_CACHE_DIR``, else ``$XDG_CACHE_HOME/vcm_jax/xla`` (``~/.cache/...``)."""
  if CACHE_ENV in os.environ:
    return os.environ[CACHE_ENV]
  base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
  return os.path.join(base, "vcm_jax", "xla")


def enable_cache(path: str | None = None) -> str:
  """Cache every compiled program under ``path`` (None: ``default_cache_dir()``; '' leaves
  the cache off); returns the folder used. Every program, however small or quick to
  compile, is cached (the fits' programs are many and small). A process-wide JAX
  setting: call it once, before fitting."""
  path = default_cache_dir() if path is None else path
  if not path:
    return path
  os.makedirs(path, exist_ok=True)
  jax.config.update("jax_compilation_cache_dir", path)
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
  jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)
  return path


def map_count() -> int | None:
  """The memory maps this process holds (``/proc/self/maps``), or None."""
  try:
    with open("/proc/self/maps", "rb") as f:
      return sum(1 for _ in f)
  except OSError:
    return None


def map_limit() -> int | None:
  """The kernel's limit on a process's memory maps (``vm.max_map_count``), or None."""
  try:
    with open("/proc/sys/vm/max_map_count") as f:
      return int(f.read())
  except (OSError, ValueError):
    return None


def release_if_crowded(share: float = SHARE) -> bool:
  """Clear JAX's compiled programs where this process holds more than ``share`` of the
  memory maps it may (``map_limit``). Returns whether it cleared."""
  count, limit = map_count(), map_limit()
  if count is None or limit is None or count <= share * limit:
    return False
  _LOG.info("%d of %d memory maps held by compiled programs: JAX's caches cleared", count,
            limit)
  jax.clear_caches()
  return True
