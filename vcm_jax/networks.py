"""The networks: encoder MLP and the masked autoregressive decoders (DESIGN section 2).

The decoder holds all N per-node mechanisms as one batched network: weights are
stacked ``[N, ...]`` and each node reads only its parents through a gather table
(``graphs.parent_table``), MADE-style with the DAG as the mask. Each mechanism
takes its parents' observed values (teacher forcing) and its state
``z_j in [0, 1]`` (0 observational, 1 intervened; relaxed values in between).
"""
from __future__ import annotations

import math
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

class Encoder(nn.Module):
  """``q(z | x)``: an MLP (``len(hidden) + 1`` layers, the paper's 3) giving K logits."""
  n_categories: int
  hidden: Sequence[int] = (64, 64)

  @nn.compact
  def __call__(self, x):
    h = x
    for width in self.hidden:
      h = nn.relu(nn.Dense(width)(h))
    return nn.Dense(self.n_categories)(h)


def _stacked_init(scale: float):
  """LeCun-normal over the fan-in axis of stacked per-node weights ``[N, fan_in, fan_out]``."""
  def init(key, shape, dtype=jnp.float32):
    return scale * jax.random.normal(key, shape, dtype) / jnp.sqrt(max(shape[-2], 1))
  return init


def _z_init(kind: str, fan_in: int):
  """The regime's input weights: ``zeros`` (both states start equal; the surprise
  initialisation separates them) or ``random``, PyTorch's ``nn.Linear`` default
  ``U(+-1/sqrt(fan_in))`` (the public code's, where nothing else separates them)."""
  if kind == "zeros":
    return nn.initializers.zeros
  if kind != "random":
    raise ValueError(f"unknown z_init {kind!r}; expected zeros or random")
  bound = 1.0 / max(fan_in, 1) ** 0.5
  return lambda key, shape, dtype=jnp.float32: jax.random.uniform(key, shape, dtype, -bound, bound)


_ACTIVATIONS = {"tanh": jnp.tanh, "relu": jax.nn.relu}


def _fixed_log_scale(scale: str, n_nodes: int) -> float:
  """``unit``: sigma = 1; ``mse``: the public code's loss, the squared error averaged
  over the N nodes, which is a Gaussian likelihood with sigma^2 = N / 2."""
  if scale not in ("unit", "mse"):
    raise ValueError(f"unknown fixed scale {scale!r}; expected unit or mse")
  return 0.0 if scale == "unit" else 0.5 * math.log(n_nodes / 2.0)


class MechanismDecoder(nn.Module):
  """Per-node Gaussian mechanisms ``p(x_j | pa_j, z_j)``, all nodes at once.

  ``mechanism='linear'``: ``mu_j = b_j + w_j . pa_j + z_j (db_j + dw_j . pa_j)``.
  ``mechanism='mlp'``: the linear part plus a per-node MLP of ``[pa_j, z_j]``.
  ``scale='learned'``: ``log sigma_j = s_j + z_j ds_j``; ``unit``/``mse``: fixed.
  """
  n_nodes: int
  max_parents: int
  mechanism: str = "mlp"
  hidden: Sequence[int] = (16,)
  scale: str = "learned"
  linear_skip: bool = True  # mlp: add the linear part (off: the paper's plain MLP)
  activation: str = "tanh"
  z_init: str = "zeros"
  scale_model: str = "constant"  # parents: log sigma also reads the MLP's last hidden layer

  @nn.compact
  def __call__(self, x, z_nodes, parent_idx, parent_mask):
    """Means and log-scales.

    Args:
      x: ``[B, N]`` observed values; z_nodes: ``[B, N]`` mechanism states;
      parent_idx, parent_mask: ``[N, D]`` gather table.

    Returns:
      mean, log_scale: ``[B, N]``.
    """
    n, d = self.n_nodes, self.max_parents
    x_pa = x[..., parent_idx] * parent_mask  # [B, N, D]
    zeros = nn.initializers.zeros
    if self.mechanism == "linear" or self.linear_skip:
      w = self.param("w", zeros, (n, d))
      dw = self.param("dw", zeros, (n, d))
    b = self.param("b", zeros, (n,))
    db = self.param("db", zeros, (n,))
    mean = b + z_nodes * db
    if self.mechanism == "linear" or self.linear_skip:
      mean = mean + jnp.einsum("bnd,nd->bn", x_pa, w) \
          + z_nodes * jnp.einsum("bnd,nd->bn", x_pa, dw)
    if self.mechanism == "mlp":
      # Node-major activations [N, B, H]: each layer is then a plain batched matmul
      # over nodes (with the node axis in the middle, XLA:CPU transposes around every
      # dot; node-major is 1.6x faster for the whole decoder step there).
      # The bias (and, in the first layer, z_j's weights) ride in the matmul as extra
      # input columns [1, z_j]: their gradients then come out of the same dot instead
      # of reductions over the batch, which XLA:CPU runs slowly.
      shape = jnp.broadcast_shapes(x.shape, jnp.shape(z_nodes))  # [..., N]
      z_t = jnp.broadcast_to(z_nodes, shape).reshape(-1, n).T[..., None]  # [N, B, 1]
      x_t = jnp.swapaxes(jnp.broadcast_to(x_pa, shape + (d,)).reshape(-1, n, d), 0, 1)
      h = jnp.concatenate([x_t, jnp.ones_like(z_t), z_t], axis=-1)
      for layer, width in enumerate(self.hidden):
        fan_in = h.shape[-1] - (2 if layer == 0 else 1)
        rows = [self.param(f"kernel_{layer}", _stacked_init(1.0), (n, fan_in, width)),
                self.param(f"bias_{layer}", zeros, (n, width))[:, None]]
        if layer == 0:  # z_j enters the first layer, as in the paper
          rows.append(self.param("z_kernel", _z_init(self.z_init, d + 1), (n, width))[:, None])
        h = _ACTIVATIONS[self.activation](
            jnp.einsum("nbi,nio->nbo", h, jnp.concatenate(rows, axis=1)))
        if layer + 1 < len(self.hidden):
          h = jnp.concatenate([h, jnp.ones_like(z_t)], axis=-1)
      out = self.param("out", _stacked_init(0.1), (n, h.shape[-1], 1))[..., 0]
      mean = mean + jnp.einsum("nbh,nh->nb", h, out).T.reshape(shape)
      if self.scale_model == "parents":
        head = self.param("scale_out", zeros, (n, h.shape[-1]))
        scale_shift = jnp.einsum("nbh,nh->nb", h, head).T.reshape(shape)
    elif self.mechanism != "linear":
      raise ValueError(f"unknown mechanism {self.mechanism!r}; expected linear or mlp")
    if self.scale == "learned":
      log_scale = self.param("log_scale", zeros, (n,)) \
          + z_nodes * self.param("dlog_scale", zeros, (n,))
      if self.scale_model == "parents":
        log_scale = log_scale + scale_shift
    elif self.scale in ("unit", "mse"):
      log_scale = jnp.full_like(mean, _fixed_log_scale(self.scale, n))
    else:
      raise ValueError(f"unknown scale {self.scale!r}; expected learned, unit or mse")
    return mean, jnp.broadcast_to(log_scale, mean.shape)


class FreeDecoder(nn.Module):
  """Mechanisms conditioned on the whole one-hot regime (DESIGN section 2, ``free``).

  Every regime k has its own linear part ``b[k], w[k]`` and noise scale for every
  node; ``mlp`` adds a per-node MLP shared across regimes whose first layer also
  reads a per-regime embedding. All K x N mechanism evaluations are one batched
  computation. Clusters carry no meaning: targets are read off afterwards
  (``identify.free_targets``).
  """
  n_nodes: int
  n_regimes: int
  max_parents: int
  mechanism: str = "mlp"
  hidden: Sequence[int] = (16,)
  scale: str = "learned"
  linear_skip: bool = True
  activation: str = "tanh"
  z_init: str = "zeros"
  scale_model: str = "constant"

  @nn.compact
  def __call__(self, x, parent_idx, parent_mask, z=None):
    """Means and log-scales, ``[B, K, N]`` each: every node under every regime.

    With ``z: [B, K]`` (a one-hot or relaxed regime, as the reference code feeds
    it), every mechanism's parameters are mixed by ``z`` instead: ``[B, 1, N]``.
    """
    n, d, k = self.n_nodes, self.max_parents, self.n_regimes

    def per_regime(p):  # [K, ...] -> [1, K, ...] (every regime) or [B, 1, ...] (mixed by z)
      return p[None] if z is None else jnp.tensordot(z, p, axes=1)[:, None]

    x_pa = x[..., parent_idx] * parent_mask  # [B, N, D]
    zeros = nn.initializers.zeros
    mean = jnp.broadcast_to(per_regime(self.param("b", zeros, (k, n))),
                            (x.shape[0], k if z is None else 1, n))
    if self.mechanism == "linear" or self.linear_skip:
      w = self.param("w", zeros, (k, n, d))
      if z is None:
        mean = mean + jnp.einsum("bnd,knd->bkn", x_pa, w)
      else:
        mean = mean + jnp.einsum("bnd,bnd->bn", x_pa, jnp.tensordot(z, w, axes=1))[:, None]
    if self.mechanism == "mlp":
      # Node-major activations [N, B, K or 1, H]: each layer is then a plain batched
      # matmul over nodes (with the node axis in the middle, XLA:CPU transposes around
      # every dot, as in MechanismDecoder).
      x_t = jnp.swapaxes(x_pa, 0, 1)  # [N, B, D]
      h = None
      for layer, width in enumerate(self.hidden):
        fan_in = d if h is None else h.shape[-1]
        kernel = self.param(f"kernel_{layer}", _stacked_init(1.0), (n, fan_in, width))
        bias = self.param(f"bias_{layer}", zeros, (n, width))
        if h is None:  # the regime enters the first layer
          z_kernel = self.param("z_kernel", _z_init(self.z_init, d + k), (k, n, width))
          by_regime = (jnp.swapaxes(z_kernel, 0, 1)[:, None] if z is None  # [N, 1, K, H]
                       else jnp.swapaxes(jnp.tensordot(z, z_kernel, axes=1), 0, 1)[:, :, None])
          pre = (jnp.einsum("nbi,nio->nbo", x_t, kernel) + bias[:, None])[:, :, None] \
              + by_regime  # [N, B, K or 1, H]
        else:
          pre = jnp.einsum("nbri,nio->nbro", h, kernel) + bias[:, None, None]
        h = _ACTIVATIONS[self.activation](pre)
      out = self.param("out", _stacked_init(0.1), (n, h.shape[-1], 1))[..., 0]
      batch_major = lambda a: jnp.transpose(a, (1, 2, 0))  # [N, B, R] -> [B, R, N]
      mean = mean + batch_major(jnp.einsum("nbrh,nh->nbr", h, out))
      if self.scale_model == "parents":
        scale_shift = batch_major(jnp.einsum(
            "nbrh,nh->nbr", h, self.param("scale_out", zeros, (n, h.shape[-1]))))
    elif self.mechanism != "linear":
      raise ValueError(f"unknown mechanism {self.mechanism!r}; expected linear or mlp")
    if self.scale == "learned":
      log_scale = per_regime(self.param("log_scale", zeros, (k, n)))
      if self.scale_model == "parents":
        log_scale = log_scale + scale_shift
    elif self.scale in ("unit", "mse"):
      log_scale = jnp.full_like(mean, _fixed_log_scale(self.scale, n))
    else:
      raise ValueError(f"unknown scale {self.scale!r}; expected learned, unit or mse")
    return mean, jnp.broadcast_to(log_scale, mean.shape)


def free_running(decode, x_shape, n_passes: int):
  """Means and log-scales with every mechanism fed its parents' *predicted* means.

  No teacher forcing (the reference code's decoder): starting from zeros, each
  pass feeds ``decode``'s means back as the parents' values; after
  ``n_passes >= longest path + 1`` (static) they are the means propagated along
  the DAG, independent of the observed x.
  """
  def step(xh, _):
    return decode(xh)[0], None

  # Unrolled: the passes are tiny, and one fused program beats a loop of launches.
  xh, _ = jax.lax.scan(step, jnp.zeros(x_shape), None, length=n_passes, unroll=True)
  return decode(xh)
