"""Whole datasets in row blocks: the memory of one block, whatever the number of rows."""
from __future__ import annotations

import jax
import jax.numpy as jnp


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

  def block(args):
    b, w = args
    return jax.tree.map(lambda a: jnp.tensordot(w, a, axes=1), fn(b))

  return jax.tree.map(lambda a: a.sum(0), jax.lax.map(block, (xp, weight)))
