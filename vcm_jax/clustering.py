"""k-means (k-means++ seeding, Lloyd steps), jittable: initialisations for mixtures."""
from __future__ import annotations

import jax
import jax.numpy as jnp


def squared_distances(x: jax.Array, centers: jax.Array) -> jax.Array:
  """``[S, K]`` squared distances without the ``[S, K, D]`` intermediate."""
  return (jnp.square(x).sum(-1, keepdims=True) - 2 * x @ centers.T
          + jnp.square(centers).sum(-1))


def kmeans(key: jax.Array, x: jax.Array, n_clusters: int, *, iters: int = 10, n_active=None):
  """k-means++ seeding then ``iters`` Lloyd steps: ``(centers [K, D], labels [S])``.

  ``n_clusters`` and ``iters`` are static. An empty cluster keeps its centre.
  ``n_active`` (a traced int, default ``n_clusters``): only the first ``n_active``
  centres take points; they are exactly those of ``kmeans(key, x, n_active)`` (the
  seeding of centre k reads only the centres before it), so candidates with different
  K can share one padded, compiled program.
  """
  off = (jnp.zeros((n_clusters,), x.dtype) if n_active is None
         else jnp.where(jnp.arange(n_clusters) < n_active, 0.0, jnp.inf).astype(x.dtype))
  k_first, k_rest = jax.random.split(key)
  first = x[jax.random.randint(k_first, (), 0, x.shape[0])]
  centers = jnp.zeros((n_clusters, x.shape[1]), x.dtype).at[0].set(first)
  d2 = jnp.square(x - first).sum(-1)

  def seed(k, carry):
    centers, d2 = carry
    # D^2 sampling; the floor keeps the log finite where a point is a chosen centre.
    idx = jax.random.categorical(jax.random.fold_in(k_rest, k), jnp.log(jnp.maximum(d2, 1e-30)))
    c = x[idx]
    return centers.at[k].set(c), jnp.minimum(d2, jnp.square(x - c).sum(-1))

  centers, _ = jax.lax.fori_loop(1, n_clusters, seed, (centers, d2))

  def lloyd(centers, _):
    onehot = jax.nn.one_hot(jnp.argmin(squared_distances(x, centers) + off, -1), n_clusters,
                            dtype=x.dtype)
    counts = onehot.sum(0)
    new = onehot.T @ x / jnp.maximum(counts, 1.0)[:, None]
    return jnp.where(counts[:, None] > 0, new, centers), None

  centers, _ = jax.lax.scan(lloyd, centers, None, length=iters)
  return centers, jnp.argmin(squared_distances(x, centers) + off, -1)
