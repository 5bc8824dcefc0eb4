"""Spreading runs and data over devices with ``jax.sharding`` (DESIGN section 7).

A ``Mesh`` with a ``runs`` axis (independent runs on different devices) and a
``data`` axis (one dataset's samples split over devices, parameters replicated).
Arrays are placed by annotation; ``jit`` propagates the layout and XLA inserts
the reductions, so the training code itself is unchanged.
"""
from __future__ import annotations

import jax
import numpy as np
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


def shard_runs(tree, mesh: Mesh):
  """Place every leaf's leading (run) axis on the ``runs`` mesh axis, replicated over ``data``."""
  sharding = NamedSharding(mesh, P("runs"))
  return jax.device_put(tree, sharding)


def shard_runs_and_samples(x, mesh: Mesh):
  """Place ``x: [R, S, ...]`` with runs on ``runs`` and samples on ``data``."""
  return jax.device_put(x, NamedSharding(mesh, P("runs", "data")))
