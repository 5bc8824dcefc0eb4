"""Spreading runs and data over devices with ``jax.sharding`` (DESIGN section 7).

A ``Mesh`` with a ``runs`` axis (independent runs on different devices) and a
``data`` axis (one dataset's samples split over devices, parameters replicated).
Arrays are placed by annotation; ``jit`` propagates the layout and XLA inserts
the reductions, so the training code itself is unchanged.

On several hosts (``jax.distributed.initialize()``) a process holds only its own
devices' shards: ``to_host`` gathers whole arrays to every process, and
``is_primary`` picks the one process that writes files.
"""
from __future__ import annotations

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P


def make_mesh(*, runs: int, data: int, num_runs: int, num_samples: int) -> Mesh:
  """A ``(runs, data)`` mesh over the first ``runs * data`` devices.

  Raises ``ValueError`` naming the sizes when they do not fit or divide.
  """
  if runs < 1 or data < 1:
    raise ValueError(f"mesh sizes must be >= 1, got mesh.runs={runs}, mesh.data={data}")
  available = jax.device_count()
  if runs * data > available:
    raise ValueError(f"mesh.runs * mesh.data = {runs} * {data} = {runs * data} devices, "
                     f"but only {available} are available")
  if num_runs % runs:
    raise ValueError(f"num_runs={num_runs} is not divisible by mesh.runs={runs}")
  if num_samples % data:
    raise ValueError(f"the {num_samples} training samples are not divisible by mesh.data={data}")
  devices = np.asarray(jax.devices()[: runs * data]).reshape(runs, data)
  return Mesh(devices, ("runs", "data"))


def _place(tree, sharding: NamedSharding):
  """``jax.device_put`` that also works when the mesh spans several processes.

  There a process may only put its own shards: each is cut from the whole value,
  which every process holds alike (it comes from the same seed and files).
  """
  if jax.process_count() == 1:
    return jax.device_put(tree, sharding)

  def put(a):
    if isinstance(a, jax.Array) and not a.is_fully_addressable:  # already global
      return jax.device_put(a, sharding)
    if jax.dtypes.issubdtype(a.dtype, jax.dtypes.prng_key):
      return jax.random.wrap_key_data(put(jax.random.key_data(a)), impl=jax.random.key_impl(a))
    whole = np.asarray(a)
    return jax.make_array_from_callback(whole.shape, sharding, lambda index: whole[index])

  return jax.tree.map(put, tree)


def shard_runs(tree, mesh: Mesh):
  """Place every leaf's leading (run) axis on the ``runs`` mesh axis, replicated over ``data``."""
  return _place(tree, NamedSharding(mesh, P("runs")))


def shard_runs_and_samples(x, mesh: Mesh):
  """Place ``x: [R, S, ...]`` with runs on ``runs`` and samples on ``data``."""
  return _place(x, NamedSharding(mesh, P("runs", "data")))


def is_primary() -> bool:
  """Whether this process writes the run's files (process 0; always true on one host)."""
  return jax.process_index() == 0


def to_host(tree):
  """Every leaf as a whole NumPy array on this host, whichever devices hold its shards.

  One host: ``jax.device_get``. Several: an all-gather, so every process (and the
  primary, which writes) sees all runs, not only those on its own devices.
  """
  if jax.process_count() == 1:
    return jax.tree.map(np.asarray, jax.device_get(tree))
  return multihost_utils.process_allgather(tree, tiled=True)
