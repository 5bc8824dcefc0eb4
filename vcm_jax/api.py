"""The public entry: ``vcm_jax.fit(x, graph)`` and the ``Fit`` it returns.

``fit`` checks its input, standardises internally, chooses the restart (and, for
the free decoder, K) by likelihood, and answers in the data's own units. Under it
sits ``fit_graph``, a pure function of ``(key, x, adj)`` that ``jit`` and
``vmap`` take as they are: many fits over keys, or over graphs with the same N,
are one call::

  fits = jax.vmap(lambda k, a: vcm_jax.fit_graph(k, x, a, config=cfg, max_parents=3))(keys, adjs)

A ``Fit`` is a pytree (the batched fits above are one ``Fit`` with a leading axis).
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from vcm_jax import config as config_lib
from vcm_jax import graphs, identify, predict, select, train
from vcm_jax.config import FitConfig
from vcm_jax.identify import Identification
from vcm_jax.model import Model


@struct.dataclass
class Fit:
  """A fitted model and what it identified; methods take and return data units."""
  result: train.FitResult
  identification: Identification
  parent_idx: jax.Array   # [N, D] parent table
  parent_mask: jax.Array  # [N, D]
  order: jax.Array        # [N] a topological order
  model: Model = struct.field(pytree_node=False)

  @property
  def n_regimes(self) -> int:
    return self.model.n_categories

  @property
  def weights(self) -> jax.Array:
    """``[K]`` the fitted regime probabilities ``p(z)``."""
    return jnp.exp(self.model.log_prior(self.result.params))

  def _one(self) -> "Fit":
    if self.result.loc.ndim > 1:
      raise ValueError("this Fit holds a batch of fits (from vmap): query it inside jax.vmap, "
                       "e.g. jax.vmap(lambda f, x: f.posterior(x))(fits, x)")
    return self

  def posterior(self, x) -> jax.Array:
    """``[S, K]`` regime probabilities (the recipe's posterior: exact by default)."""
    self._one()
    return _jitted(predict.posterior)(self.model, self.result, jnp.asarray(x, jnp.float32),
                                      self.parent_idx, self.parent_mask)

  def assign(self, x) -> jax.Array:
    """``[S]`` the most probable regime of each sample."""
    return jnp.argmax(self.posterior(x), axis=-1).astype(jnp.int32)

  def log_prob(self, x) -> jax.Array:
    """``[S]`` exact ``log p(x)`` of the fitted mixture, in data units."""
    self._one()
    return _jitted(predict.log_prob)(self.model, self.result, jnp.asarray(x, jnp.float32),
                                     self.parent_idx, self.parent_mask)

  def outlier_score(self, x) -> jax.Array:
    """``[S]`` probability that a row's most suspect cell is a gross error (needs
    ``outlier_fraction > 0`` in the config; 0 otherwise)."""
    self._one()
    return _jitted(predict.outlier_score)(self.model, self.result, jnp.asarray(x, jnp.float32),
                                          self.parent_idx, self.parent_mask)

  def sample(self, key, n: int, regime: int = 0) -> jax.Array:
    """``[n, N]`` samples from regime ``regime``, in data units."""
    self._one()
    if isinstance(regime, int) and not 0 <= regime < self.n_regimes:
      raise ValueError(f"regime={regime} is not a regime id of this fit (0..{self.n_regimes - 1})")
    regimes = jnp.full((n,), regime, jnp.int32)
    return _jitted(predict.sample, 1)(key, self.model, self.result, regimes, self.parent_idx,
                                      self.parent_mask, self.order)

  @property
  def observational(self) -> int:
    """Id of the observational regime (host; inside jit use ``identification.observational``)."""
    return int(self.identification.observational)

  @property
  def targets(self) -> list[tuple[int, ...]]:
    """Per regime, the tuple of target node indices (``()`` for the observational one);
    host-side: inside jit use ``identification.changed``, ``[K, N]``."""
    changed = np.asarray(self.identification.changed)
    return [tuple(int(j) for j in np.flatnonzero(row)) for row in changed]


@functools.cache
def _jitted(fn, model_argnum: int = 0):
  return jax.jit(fn, static_argnums=model_argnum)


def fit_graph(key, x, adj, *, config: FitConfig, max_parents: int) -> Fit:
  """Fit raw data ``x: [S, N]`` on the DAG ``adj: [N, N]`` (pure: jit- and vmap-safe).

  ``config`` and ``max_parents`` (at least the largest in-degree) are static; the
  free decoder needs ``config.n_regimes`` set (``fit`` chooses it when it is 0).
  """
  n = x.shape[-1]
  trainer = _trainer(config, n, max_parents)
  idx, mask = graphs.parent_table(adj, max_parents)
  result = train.fit_arrays(key, x, idx, mask, trainer=trainer)
  return from_result(trainer.model, result, x, idx, mask, graphs.topological_order(adj))


def from_result(model: Model, result: train.FitResult, x, parent_idx, parent_mask, order) -> Fit:
  """A ``Fit`` from a finished ``FitResult`` (for callers that run the steps
  themselves): identifies the regimes on the training data ``x`` (data units)."""
  mean, scale = predict.regime_mechanisms(model, result, x, parent_idx, parent_mask)
  sizes = predict.posterior(model, result, x, parent_idx, parent_mask).mean(0)
  changed = model.gates(result.params) > 0.5 if model.sparse else None
  ident = identify.identify_regimes(mean, scale, sizes, structured=model.structured,
                                    changed=changed)
  return Fit(result, ident, parent_idx, parent_mask, order, model)


@functools.cache
def _trainer(cfg: FitConfig, n_nodes: int, max_parents: int) -> train.Trainer:
  return train.make_trainer(cfg, n_nodes=n_nodes, max_parents=max_parents)


@functools.cache
def _jit_fit_graph(cfg: FitConfig, max_parents: int):
  return jax.jit(functools.partial(fit_graph, config=cfg, max_parents=max_parents))


def fit(x, graph, key=None, config=None) -> Fit:
  """Fit the regimes of ``x: [S, N]`` (data units) on a known DAG.

  Args:
    x: samples pooled from the regimes, ``[S, N]``.
    graph: ``[N, N]`` 0/1 adjacency (``graph[i, j] = 1`` for ``i -> j``) or a
      ``networkx.DiGraph`` over nodes ``0..N-1`` (or over any nodes, read in
      ``graph.nodes`` order).
    key: a PRNG key (default ``jax.random.key(0)``).
    config: ``None`` (the default recipe), a ``FitConfig``, a dict of its fields,
      or an experiment config with ``model`` and ``train`` groups.

  Raises:
    ValueError: with one line naming the problem (a cycle, a bad cell, an unknown key).
  """
  cfg = config_lib.coerce(config)
  adj = graphs.as_adjacency(graph)
  x = _check_data(x, adj.shape[0])
  graphs.validate_dag(adj)
  key = jax.random.key(0) if key is None else key
  max_parents = graphs.resolve_max_parents(adj, cfg.max_parents)
  if cfg.decoder != "structured" and cfg.n_regimes == 0:
    k_select, key = jax.random.split(key)
    cfg = cfg.replace(n_regimes=select.choose_n_regimes(
        k_select, x, jnp.asarray(adj), config=cfg, max_parents=max_parents).n_regimes)
  return _jit_fit_graph(cfg, max_parents)(key, jnp.asarray(x), jnp.asarray(adj, jnp.float32))


def _check_data(x, n_nodes: int) -> np.ndarray:
  x = np.asarray(x, np.float32)
  if x.ndim != 2:
    raise ValueError(f"x must be [samples, nodes]; got shape {x.shape}")
  if x.shape[1] != n_nodes:
    raise ValueError(f"x has {x.shape[1]} columns but the graph has {n_nodes} nodes")
  bad = np.argwhere(~np.isfinite(x))
  if bad.size:
    raise ValueError(f"x has a non-finite value at row {bad[0, 0]}, column {bad[0, 1]}")
  if x.shape[0] < 2:
    raise ValueError(f"x has {x.shape[0]} rows; a fit needs at least 2")
  return x
