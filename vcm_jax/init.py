"""Where a fit starts: the pooled pre-fit and the surprise initialisation.

``init='surprise'`` (the default) first fits every mechanism's linear part in its
observational state to all data, regimes ignored; the intervened state then
starts as a broader copy of it, so a sample that node j's mechanism finds
surprising is explained by regime j + 1 in the first posterior. The free
decoder's K identical copies of the pooled fit never separate by themselves:
k-means on the pooled residuals offsets them. ``init='random'`` is the networks'
own random start and nothing else (the paper's and its public code's).
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import optax

from vcm_jax import clustering, identify, units
from vcm_jax.model import PER_REGIME, Model, deactivate_regimes, init_params

# Only the linear part is pre-fitted: an MLP could absorb a mechanism's shift as a
# function of its parents' regimes, hiding the very surprise the initialisation reads.
_POOLED_PARAMS = ("w", "b", "log_scale")


def step_batches(step_key, steps, n_samples: int, batch_size: int):
  """Every step's batch indices, ``[len(steps), batch_size]``, drawn before the loop.

  The same numbers as drawing each step's batch inside it from ``step_key(step)``,
  but one vectorised threefry call instead of a small random-number loop per step
  (that loop was about 15% of a step on CPU).
  """
  return jax.vmap(lambda step: jax.random.randint(step_key(step), (batch_size,), 0,
                                                  n_samples))(steps)


def pooled_loss(params, x, parent_idx, parent_mask, *, model: Model):
  """Minus the mean log-density of every mechanism in its observational state.

  Free decoder: every regime's copy gets the same gradient, so from the common
  zero initialisation they stay equal, each the pooled fit."""
  if not model.structured:
    return -model.regime_log_likelihoods(params, x, parent_idx, parent_mask).mean()
  # Observed parents whatever the recipe: the pre-fit is a regression on them.
  z_obs = jnp.zeros(x.shape[:1] + (model.n_categories,)).at[:, 0].set(1.0)
  mean, log_scale = model.mixed_means(params, x, z_obs, parent_idx, parent_mask)
  return -model.cell_log_density(x, mean, log_scale, params).sum(-1).mean()


def pooled_prefit(key, model: Model, params, x, parent_idx, parent_mask):
  """``cfg.pooled_steps`` Adam steps of ``pooled_loss`` on the linear parts."""
  cfg = model.cfg
  opt = optax.adam(cfg.learning_rate)
  idx = step_batches(lambda step: jax.random.fold_in(key, step), jnp.arange(cfg.pooled_steps),
                     x.shape[0], min(cfg.batch_size, x.shape[0]))

  def step(carry, batch_idx):
    p, o = carry
    g = jax.grad(pooled_loss)(p, x[batch_idx], parent_idx, parent_mask, model=model)
    dec_g = {k: (v if k in _POOLED_PARAMS else jnp.zeros_like(v))
             for k, v in g["decoder"]["params"].items()}
    updates, o = opt.update(dict(g, decoder={"params": dec_g}), o, p)
    return (optax.apply_updates(p, updates), o), None

  (params, _), _ = jax.lax.scan(step, (params, opt.init(params)), idx)
  return params


def residual_centroids(key, model: Model, params, x, parent_idx, parent_mask,
                       max_points: int = 4096, n_active=None):
  """Free decoder: per-regime offsets ``[K, N]`` that break the symmetry of the pooled copies.

  k-means on the residuals of the pooled mechanisms: a sample from a regime
  that shifts node j has a large residual at j only (parents are observed), so
  the centroids start each regime near one kind of departure from the pooled fit.
  """
  k_sub, k_means = jax.random.split(key)
  xs = x[jax.random.permutation(k_sub, x.shape[0])[:max_points]]
  # Every regime's copy is the same pooled fit here: evaluate one (the mix z = e_0).
  first = jnp.zeros((xs.shape[0], model.n_categories)).at[:, 0].set(1.0)
  mean, _ = model.mixed_means(params, xs, first, parent_idx, parent_mask)
  residuals = xs - mean
  if model.cfg.outlier_fraction > 0:  # a gross error must not claim a centroid of its own
    residuals = jnp.clip(residuals, -6.0, 6.0)
  return clustering.kmeans(k_means, residuals, model.n_categories, n_active=n_active)[0]


def start_at_spikes(params, found, centre, scale: float):
  """Structured decoder: node j's intervened state starts on its column's spike where
  ``found[j]`` (``units.interior_spikes``): mean ``centre[j]`` whatever its parents say
  (the linear part's parent weights cancelled; the MLP's output weights at zero in both
  states, where the pre-fit left them random), noise scale ``scale`` (> 0; the
  training's floor for the column at its first step: ``FitConfig.spike_floor`` x the
  rate). Where do(X_j = v) puts v inside X_j's own spread (a root), no residual makes
  its rows surprising, and the broad surprise start misses them."""
  dec = dict(params["decoder"]["params"])
  if "dw" in dec:
    dec["dw"] = jnp.where(found[:, None], -dec["w"], dec["dw"])
  if "out" in dec:
    dec["out"] = jnp.where(found[:, None, None], 0.0, dec["out"])
  dec["db"] = jnp.where(found, centre - dec["b"], dec["db"])
  if "dlog_scale" in dec and scale > 0:
    dec["dlog_scale"] = jnp.where(found, math.log(scale) - dec["log_scale"], dec["dlog_scale"])
  return dict(params, decoder={"params": dec})


def initial_params(key, model: Model, x, parent_idx, parent_mask, n_active=None,
                   constants=None):
  """Parameters a fit starts from, for standardised data ``x: [S, N]``.

  Returns the parameters and the key that seeds the training steps (the split
  matches earlier versions, so a seed keeps its numbers). ``n_active`` (free and
  sparse decoders, a traced int): a model of that many regimes padded to K
  (``model.deactivate_regimes``).
  """
  cfg = model.cfg
  k_init, k_pool, k_train, k_seed = jax.random.split(key, 4)
  params = init_params(k_init, model, parent_idx, parent_mask)
  params.update(constants or {})  # the data's constants ride in the parameters (never trained)
  if cfg.init == "surprise":
    params = pooled_prefit(k_pool, model, params, x, parent_idx, parent_mask)
    dec = params["decoder"]["params"]
    if model.structured and "dlog_scale" in dec:
      dec = dict(dec, dlog_scale=jnp.full_like(dec["dlog_scale"], jnp.log(cfg.init_scale_factor)))
      params = dict(params, decoder={"params": dec})
    if model.structured and cfg.spike_ratio > 0:
      params = start_at_spikes(params, *units.interior_spikes(x, cfg.spike_share,
                                                              cfg.spike_ratio),
                               scale=cfg.spike_floor * cfg.learning_rate)
  if not model.structured and cfg.init == "surprise":
    dec = params["decoder"]["params"]
    offsets = residual_centroids(k_seed, model, params, x, parent_idx, parent_mask,
                                 n_active=n_active)
    if model.sparse:  # the shared copy 0 stays the pooled fit; the regimes' own copies move
      offsets = jnp.concatenate([jnp.zeros_like(offsets[:1]), offsets])
    params = dict(params, decoder={"params": dict(dec, b=dec["b"] + offsets)})
  if n_active is not None:
    params = deactivate_regimes(params, n_active)
  return params, k_train


# A gate's logit at the start of the sparse stage: decided, but not beyond recall.
GATE_START = 3.0


def sparse_from_free(model: Model, free_params, mean, scale, weights):
  """Sparse-decoder parameters that start where a free-decoder fit of the same K ended.

  The free fit's observational regime o (``identify.free_observational``: the regime
  the others differ from in fewest mechanisms) gives the shared copy; every regime
  keeps its own copies, and its gates start open where its mechanism moves away from
  o's (``identify.CHANGE_THRESHOLD``), closed elsewhere. The change penalty then
  closes the gates the data do not pay for.

  Args:
    free_params: one restart's parameters of the free decoder (K copies).
    mean, scale: ``[K, N]`` its regimes' conditional means (averaged over the data) and
      noise scales, standardised units; weights: ``[K]`` the regimes' shares.
  """
  div = identify.mechanism_divergence(mean, scale)
  obs = identify.free_observational(div, weights)
  dec = free_params["decoder"]["params"]
  dec = {name: (jnp.concatenate([a[obs][None], a]) if name in PER_REGIME else a)
         for name, a in dec.items()}
  moved = ((div[obs] > identify.CHANGE_THRESHOLD) & (jnp.arange(mean.shape[0]) != obs)[:, None]
           & (weights > 0)[:, None])  # a padded (inactive) regime changes nothing
  gates = jnp.where(moved, GATE_START, -GATE_START)
  return dict(free_params, decoder={"params": dec}, gate_logits=gates)
