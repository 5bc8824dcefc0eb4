"""Whole datasets in row blocks: the memory of one block, whatever the number of rows."""
from __future__ import annotations

from typing import Callable, Iterator

import jax
import jax.numpy as jnp
import numpy as np

# Elements of one [rows, ...] intermediate of a block (2 MB of float32). Measured on
# regime_mechanisms' [rows, K, N] blocks (CPU): blocks that stay in cache are 2-5x
# faster than blocks of 2048 rows, and far smaller in memory (K = N + 1 = 301: 5 rows).
BLOCK_ELEMENTS = 1 << 19


def rows_per_block(elements_per_row: int, *, most: int = 2048,
                   budget: int | None = None) -> int:
  """Rows of a block whose per-row intermediates hold ``elements_per_row`` elements:
  ``most``, or fewer so that one intermediate stays near ``budget`` (default
  ``BLOCK_ELEMENTS``; a ``[rows, K, N]`` array at N = 300 is 90,300 elements a row)."""
  budget = BLOCK_ELEMENTS if budget is None else budget
  return int(max(1, min(most, budget // max(elements_per_row, 1))))


def _blocks(x, chunk: int):
  s = x.shape[0]
  blocks = -(-s // chunk)
  xp = jnp.pad(x, ((0, blocks * chunk - s), (0, 0))).reshape(blocks, chunk, x.shape[1])
  weight = (jnp.arange(blocks * chunk) < s).astype(x.dtype).reshape(blocks, chunk)
  return xp, weight


def map_rows(fn, x, chunk: int = 2048):
  """``fn`` over blocks of ``chunk`` rows of ``x`` (``lax.map``), outputs concatenated.

  The same per-row results as ``fn(x)``, with the peak memory of one block: scoring
  whole datasets with the free decoder holds ``[rows, K, N, hidden]`` activations.
  """
  s = x.shape[0]
  if s <= chunk:
    return fn(x)
  xp, _ = _blocks(x, chunk)
  out = jax.lax.map(fn, xp)
  return jax.tree.map(lambda a: a.reshape((xp.shape[0] * chunk,) + a.shape[2:])[:s], out)


def sum_rows(fn, x, chunk: int = 2048):
  """``sum_s fn(x)[s]`` for a per-row ``fn: [B, N] -> pytree of [B, ...]``, reduced
  inside each block: the output's size never scales with the number of rows."""
  xp, weight = _blocks(x, min(chunk, x.shape[0]))

  def block_sum(b, w):
    return jax.tree.map(lambda a: jnp.tensordot(w, a, axes=1), fn(b))

  def add_block(total, args):  # a running sum: no [blocks, ...] stack of block sums
    return jax.tree.map(jnp.add, total, block_sum(*args)), None

  zero = jax.tree.map(jnp.zeros_like, jax.eval_shape(block_sum, xp[0], weight[0]))
  return jax.lax.scan(add_block, zero, (xp, weight))[0]


def host_blocks(fn: Callable, x: np.ndarray, *, block: int = 65536) -> Iterator[tuple]:
  """``(start, fn(x[start:start + block]))`` as NumPy, block after block, on the host.

  For results kept on the host (a posterior over a million rows): the device holds
  one block at a time, and every call sees the same shape (the last block is padded
  with its own first row, then cut), so a jitted ``fn`` compiles once.
  """
  s = x.shape[0]
  block = min(block, s)
  for start in range(0, s, block):
    part = np.asarray(x[start:start + block])
    n = part.shape[0]
    if n < block:
      part = np.concatenate([part, np.repeat(part[:1], block - n, axis=0)])
    out = jax.tree.map(lambda a: np.asarray(a)[:n], fn(part))
    yield start, out
