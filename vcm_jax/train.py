"""Fitting: the objective, the jitted step, the ``lax.scan`` loop, restarts.

``make_trainer(cfg, n_nodes=..., max_parents=...)`` returns pure ``init`` /
``run_steps`` / ``finish`` functions (for callers that checkpoint between chunks);
``fit_arrays`` runs them in one call. Everything runs on the device (scan over
steps, no host round-trips), so many fits are one call:
``jax.jit(jax.vmap(fit))(keys, xs, idxs, masks)``.

Recipes (README, "The recipe"):
  * ours (the default): ``estimator='exact'``, ``posterior='exact'``: the decoder
    and prior ascend the exact ``log p(x)`` (the ELBO with q equal to the model's
    own posterior, computed by enumerating the K regimes); no encoder is trained;
    surprise initialisation (``vcm_jax.init``); restarts chosen by ``log p(x)``;
  * the paper (``configs/recipes.py``): ``estimator='straight_through'``,
    ``posterior='encoder'``: a hard z drawn from the encoder's q, uniform prior,
    unit variance in the data's own units, random initialisation.
"""
from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from vcm_jax import elbo, parameters, units
from vcm_jax.rows import map_rows, rows_per_block, sum_rows
from vcm_jax.config import FitConfig
from vcm_jax.init import initial_params, sparse_from_free, step_batches
from vcm_jax.model import Model, build_model


class FitResult(NamedTuple):
  """A finished fit (a pytree): parameters in standardised units and the units."""
  params: Any          # {'decoder', 'prior_logits'[, 'encoder']} of the chosen restart
  loc: jax.Array       # [N] standardisation of the training data
  scale: jax.Array     # [N]
  history: Any         # dict of [num_steps] per-step metrics (chosen restart), standardised units
  restart_log_px: jax.Array  # [restarts] final mean log p(x) of the training data, data units
  train_elbo: jax.Array      # mean ELBO (the recipe's q, beta = 1) of the training data, data units
  steps_used: jax.Array      # [] int32 steps the chosen restart trained (the stopping rule)
  stopped: jax.Array         # [] bool: it stopped by the rule, before num_steps


def change_cost(model: Model, parent_mask, n_rows: int):
  """Sparse decoder: nats a changed mechanism costs, ``[N]``: BIC's ``0.5 log(S)`` per
  parameter of the mechanism's own copy (``parameters.per_mechanism``) times
  ``change_penalty``: the price the model choice's BIC charges it."""
  copy, _ = parameters.per_mechanism(model.cfg, parent_mask)
  return model.cfg.change_penalty * 0.5 * jnp.log(float(n_rows)) * copy


def snap_gates(model: Model, params):
  """Sparse decoder: every gate to 0 or 1 (the fitted model is the exact one)."""
  if not model.sparse:
    return params
  return dict(params, gate_logits=jnp.where(model.gates_on(params), 30.0, -30.0))


def objective(params, key, x, parent_idx, parent_mask, *, model: Model, beta, n_rows=1):
  """Loss to minimise and its parts, for one batch ``x: [B, N]`` (standardised);
  ``n_rows``: the training rows, for the sparse decoder's per-sample change cost."""
  cfg = model.cfg
  log_prior = model.log_prior(params)
  if cfg.estimator == "exact":
    ll = model.regime_log_likelihoods(params, x, parent_idx, parent_mask)
    log_px = elbo.log_marginal(ll, log_prior)
    post = elbo.posterior_logits(ll, log_prior)
    if model.encoder is None:
      # The ELBO at q = p(z | x) is log p(x): decoder and prior ascend it directly.
      elbo_value, ell, kl = elbo.elbo_exact(jax.lax.stop_gradient(post), ll, log_prior, beta)
      loss = -log_px
    else:
      q_logits = model.encoder.apply(params["encoder"], x)
      elbo_value, ell, kl = elbo.elbo_exact(q_logits, ll, log_prior, beta)
      loss = -elbo_value
  else:
    q_logits = model.encoder.apply(params["encoder"], x)
    node_ll = lambda z: model.node_log_densities(params, x, z, parent_idx, parent_mask)
    elbo_value, ell, kl = elbo.elbo_sampled(key, q_logits, log_prior, node_ll,
                                            estimator=cfg.estimator, temperature=cfg.temperature,
                                            beta=beta)
    loss = -elbo_value
    log_px = model.log_marginal(jax.lax.stop_gradient(params), x, parent_idx, parent_mask)
  aux = {"elbo": elbo_value.mean(), "expected_loglik": ell.mean(), "kl": kl.mean(),
         "log_px": log_px.mean()}
  loss = loss.mean()
  if model.sparse:  # the gates relax {0, 1}; per gate the loss is concave, so 0 or 1 wins
    loss = loss + jnp.sum(model.gates(params) * change_cost(model, parent_mask, n_rows)) / n_rows
  return loss, aux


def noise_log_floor(cfg: FitConfig, x, scale):
  """``[N]`` log of the noise scales' floor in the fit's units (``FitConfig.noise_floor``,
  read on the data-unit rows ``x``), or None where there is none (fixed scales, or 0)."""
  if cfg.scale != "learned" or cfg.noise_floor == 0:
    return None
  # (in a floating type: integer data, counts, would round a floor of 0.5 to 0)
  dtype = jnp.result_type(x.dtype, jnp.float32)
  floor = (jnp.full(x.shape[-1:], cfg.noise_floor, dtype) if cfg.noise_floor > 0
           else units.default_noise_floor(x))
  return jnp.log(floor / scale)


def pinned_extremes(x, share: float, xp=jnp):
  """``(lowest, highest, lowest pinned, highest pinned)`` per column of ``x: [S, N]``: an
  extreme is pinned (a floor or a ceiling: a saturated sensor, a detection limit, zero
  counts) where at least ``share`` of the rows, and 10, hold it exactly. ``xp``: ``jnp``
  (jit-safe) or ``np`` (on the host)."""
  lo, hi = x.min(axis=0), x.max(axis=0)
  need = xp.maximum(share * x.shape[0], 10.0)
  pinned = lambda b: (x == b[None]).sum(axis=0) >= need
  return lo, hi, pinned(lo), pinned(hi)


def censoring_bounds(cfg: FitConfig, x, loc, scale, extremes=None):
  """``(lower, upper)`` ``[N]`` censoring bounds in the fit's units (``-inf`` / ``inf``
  where none), or None (``cfg.censor_share`` 0): the pinned extremes (``extremes``,
  ``pinned_extremes``'s, read here where None). Jit-safe."""
  if cfg.censor_share <= 0:
    return None
  lo, hi, lo_pinned, hi_pinned = extremes or pinned_extremes(x, cfg.censor_share)
  to_fit = lambda b: (b - loc) / scale
  return jnp.where(lo_pinned, to_fit(lo), -jnp.inf), jnp.where(hi_pinned, to_fit(hi), jnp.inf)


def two_point_mask(cfg: FitConfig, x, extremes=None):
  """``[N]`` bool, the two-valued columns of ``x`` (``two_point_columns``; ``extremes``
  as ``censoring_bounds``), or None where the config reads none (``cfg.two_point`` off,
  or no censoring). Jit-safe."""
  if cfg.censor_share <= 0 or not cfg.two_point:
    return None
  return two_point_columns(x, *(extremes or pinned_extremes(x, cfg.censor_share)))


def without_unused_censoring(cfg: FitConfig, x) -> FitConfig:
  """``cfg`` with ``censor_share`` 0 where no column of the host rows ``x: [S, N]`` has
  a pinned extreme (``censoring_bounds`` would find no bound): the tail terms are then
  never used, and leaving them out of the program cuts a third of a small fit's compile
  and run time (measured on a 4-node default fit). ``two_point`` off where no column is
  two-valued (``two_point_columns``). The fit is the same."""
  if cfg.censor_share <= 0:
    return cfg
  x = np.asarray(x)
  lo, hi, lo_pinned, hi_pinned = pinned_extremes(x, cfg.censor_share, np)
  if not (lo_pinned | hi_pinned).any():
    return cfg.replace(censor_share=0.0, two_point=False)
  if cfg.two_point and not two_point_columns(x, lo, hi, lo_pinned, hi_pinned).any():
    cfg = cfg.replace(two_point=False)  # (the same fit: no column would read as one)
  return cfg


def two_point_columns(x, lo, hi, lo_pinned, hi_pinned):
  """``[N]`` bool: the columns of ``x: [S, N]`` whose every reading is at one of two
  pinned extremes (``pinned_extremes``): a two-valued column, read as a Bernoulli
  (``FitConfig.two_point``, ``densities.two_point``). NumPy or jnp arrays alike."""
  at_either = ((x == lo[None]) | (x == hi[None])).sum(axis=0) == x.shape[0]
  return at_either & lo_pinned & hi_pinned & (hi > lo)


def without_unused_terms(cfg: FitConfig, x) -> FitConfig:
  """``cfg`` without the terms that the host rows ``x: [S, N]`` never use: censoring
  where no column has a pinned extreme (``without_unused_censoring``), the spike start
  and floor (``spike_ratio`` 0) where no column has a spike (``units.interior_spikes``).
  The fit is the same, its programs those of a config without the terms: no sort of the
  rows each window and no second scoring pass in ``finish`` (measured at 30000 x 30,
  300 steps: 3.4 s a compiled fit without the spike terms, 3.7 s with them)."""
  cfg = without_unused_censoring(cfg, x)
  if cfg.spike_ratio <= 0:
    return cfg
  found = _interior_spikes(jnp.asarray(np.asarray(x), jnp.float32), cfg.spike_share,
                           cfg.spike_ratio)[0]
  return cfg if bool(np.asarray(found).any()) else cfg.replace(spike_ratio=0.0)


_interior_spikes = jax.jit(units.interior_spikes, static_argnums=(1, 2))


def data_constants(cfg: FitConfig, x, loc, scale) -> dict:
  """The constants a fit reads from its data and carries in its parameters (never
  trained): ``log_floor`` (``noise_log_floor``), ``censor_lower`` / ``censor_upper``
  (``censoring_bounds``) and ``two_point`` (``two_point_mask``), each where the config
  has it."""
  out = {}
  log_floor = noise_log_floor(cfg, x, scale)
  if log_floor is not None:
    out["log_floor"] = log_floor
  if cfg.censor_share > 0:  # the extremes read once, for the bounds and the two-point mask
    extremes = pinned_extremes(x, cfg.censor_share)
    out["censor_lower"], out["censor_upper"] = censoring_bounds(cfg, x, loc, scale, extremes)
    mask = two_point_mask(cfg, x, extremes)
    if mask is not None:
      out["two_point"] = mask.astype(jnp.float32)  # (a parameter leaf: a float, 0 or 1)
  return out


class TrainState(NamedTuple):
  """Everything a fit carries between chunks of steps (a checkpointable pytree).

  Arrays under ``params`` and ``opt_state`` have a leading ``[restarts]`` axis.
  """
  step: jax.Array      # [] int32, steps of the main phase done
  params: Any
  opt_state: Any
  key_data: jax.Array  # [restarts, 2] uint32 raw keys of each restart's step stream
  loc: jax.Array       # [N] standardisation of the training data
  scale: jax.Array     # [N]
  stop: "StopState"    # [restarts] each restart's stopping rule


class StopState(NamedTuple):
  """The stopping rule's memory, per restart (inside the compiled steps, so a resumed
  run and a chunked one stop exactly where one call does)."""
  done: jax.Array        # bool: stopped; later steps leave it as it is
  window_sum: jax.Array  # sum of the batch log p(x) over the current window
  prev_mean: jax.Array   # mean batch log p(x) of the previous window (-inf before one)
  steps_used: jax.Array  # int32: steps trained
  lr_scale: jax.Array    # the learning rate's factor (lr_schedule='plateau': cut at plateaus)
  decays: jax.Array      # int32: plateaus met so far (each one cut the learning rate)


def _initial_stop(restarts: int) -> StopState:
  return StopState(jnp.zeros((restarts,), bool), jnp.zeros((restarts,)),
                   jnp.full((restarts,), -jnp.inf), jnp.zeros((restarts,), jnp.int32),
                   jnp.ones((restarts,)), jnp.zeros((restarts,), jnp.int32))


class Trainer(NamedTuple):
  """Pure pieces of a fit, for callers that checkpoint or log between chunks.

  ``fit = finish(run_steps(init(key, x, ...), xs, ..., num_steps), xs, ...)``,
  with ``xs = units.to_standard(x, state.loc, state.scale)``; a chunked loop gives
  the same numbers as one call because every step draws its randomness from
  ``fold_in(key, step)``.
  """
  model: Model
  init: Any       # (key, x, parent_idx, parent_mask) -> TrainState
  run_steps: Any  # (state, xs, parent_idx, parent_mask, num_steps) -> (state, history)
  finish: Any     # (state, xs, parent_idx, parent_mask[, history]) -> FitResult
  init_from: Any = None  # (key, params, loc, scale[, each]) -> TrainState: a warm start


def make_trainer(cfg: FitConfig, *, n_nodes: int, max_parents: int) -> Trainer:
  """Build the pure ``init`` / ``run_steps`` / ``finish`` functions of a fit."""
  model = build_model(cfg, n_nodes=n_nodes, max_parents=max_parents)
  beta_fn = elbo.kl_weight_schedule(cfg.kl_schedule, num_steps=cfg.num_steps,
                                    warmup_steps=cfg.kl_warmup_steps, cycles=cfg.kl_cycles)
  if cfg.lr_schedule not in ("cosine", "constant", "plateau"):
    raise ValueError(f"unknown lr_schedule {cfg.lr_schedule!r}; expected cosine, constant or "
                     "plateau")
  # plateau: a constant rate that the stopping rule cuts (StopState.lr_scale); Adam's
  # update is linear in its rate, so scaling the update is scaling the rate.
  lr = (optax.cosine_decay_schedule(cfg.learning_rate, cfg.num_steps, 0.05)
        if cfg.lr_schedule == "cosine" else cfg.learning_rate)
  optimizer = optax.adam(lr)
  # Plateaus the rule meets before it stops: with 'plateau' each but the last cuts the rate.
  plateaus_to_stop = cfg.plateau_decays + 1 if cfg.lr_schedule == "plateau" else 1

  def init_one(key, xs, parent_idx, parent_mask, n_active=None, constants=None):
    params, k_train = initial_params(key, model, xs, parent_idx, parent_mask, n_active,
                                     constants)
    return params, optimizer.init(params), jax.random.key_data(k_train)

  if model.sparse:  # the sparse stage starts from a free-decoder fit of the same K
    # (on the standardised rows the sparse stage sees: no second standardisation)
    dense = make_trainer(cfg.replace(decoder="free", standardize=False), n_nodes=n_nodes,
                         max_parents=max_parents)

  def sparse_start(key, xs, parent_idx, parent_mask, n_active=None, constants=None):
    """Every restart's free-decoder fit (to its stopping rule, or ``num_steps``), turned
    into sparse parameters."""
    state = dense.init(key, xs, parent_idx, parent_mask, n_active, constants=constants)
    state, _ = run_to_stop(dense, state, xs, parent_idx, parent_mask)
    m = dense.model

    def convert(p):
      def per_row(b):
        mean, log_scale = m.observed_regime_means(p, b, parent_idx, parent_mask)
        shape = (b.shape[0],) + mean.shape[1:]
        return (jnp.broadcast_to(mean, shape), jnp.broadcast_to(jnp.exp(log_scale), shape),
                m.posterior(p, b, parent_idx, parent_mask))
      sums = sum_rows(per_row, xs, rows_per_block(m.n_categories * m.n_nodes))
      mean, scale, weights = (a / xs.shape[0] for a in sums)
      out = sparse_from_free(model, p, mean, scale, weights)
      return dict(out, **constants)

    params = jax.vmap(convert)(state.params)
    key_data = jax.vmap(lambda k: jax.random.key_data(
        jax.random.fold_in(jax.random.wrap_key_data(k), 1)))(state.key_data)
    return params, jax.vmap(optimizer.init)(params), key_data

  def init(key, x, parent_idx, parent_mask, n_active=None, constants=None) -> TrainState:
    """``n_active`` (free and sparse decoders; a traced int): a fit of that many regimes,
    padded to ``cfg.n_regimes`` (``model.take_regimes`` reads it back), so that fits of
    several K are one compiled program. ``constants``: the data's constants in the fit's
    units (None: ``data_constants`` read on ``x``)."""
    if n_active is not None and (model.structured or cfg.prior != "learned"):
      raise ValueError("n_active pads the free or sparse decoder with a learned prior")
    if cfg.standardize:  # with gross errors in the model, in units they cannot move
      xs, loc, scale = units.standardize(x, robust=cfg.robust_units or cfg.outlier_fraction > 0)
    else:  # the data's own units: loc 0, scale 1
      xs, loc, scale = x, jnp.zeros(x.shape[-1], x.dtype), jnp.ones(x.shape[-1], x.dtype)
    if constants is None:
      constants = data_constants(cfg, x, loc, scale)
    if model.sparse:
      params, opt_state, key_data = sparse_start(key, xs, parent_idx, parent_mask, n_active,
                                                 constants)
    else:
      keys = jax.random.split(key, cfg.restarts)
      params, opt_state, key_data = jax.vmap(
          init_one, in_axes=(0, None, None, None, None, None))(
              keys, xs, parent_idx, parent_mask, n_active, constants)
    return TrainState(jnp.zeros((), jnp.int32), params, opt_state, key_data, loc, scale,
                      _initial_stop(cfg.restarts))

  def spiked_columns(params, xs):
    """``[N]`` bool, the columns of the fit's rows with a spike (``units.interior_spikes``),
    or None where the spike floor is off (or the scales have no floor)."""
    if cfg.spike_floor <= 0 or cfg.spike_ratio <= 0 or "log_floor" not in params:
      return None
    return units.interior_spikes(xs, cfg.spike_share, cfg.spike_ratio)[0]

  def spike_floored(p, spiked, step, lr_scale):
    """``p`` with a spike's column floored at ``cfg.spike_floor`` times the learning rate
    at ``step`` (FitConfig.spike_floor). Kumar et al.'s do(X = 1) regimes, development
    seeds 0-4: at the data's floor alone, Adam's steps of about the rate shook the
    narrow regimes off their spikes and the fits merged 1-2 of them into others (ARI
    0.71-0.87); floored so, 0.991-0.992. ``finish`` keeps the floor of the last rate
    where it scores higher than the data's own."""
    if spiked is None:
      return p
    rate = (lr(step) if callable(lr) else lr) * (
        lr_scale if cfg.lr_schedule == "plateau" else 1.0)
    return dict(p, log_floor=jnp.where(
        spiked, jnp.maximum(p["log_floor"], jnp.log(cfg.spike_floor * rate)), p["log_floor"]))

  def steps_one(params, opt_state, key_data, stop, step0, xs, parent_idx, parent_mask,
                num_steps):
    s = xs.shape[0]
    k_train = jax.random.wrap_key_data(key_data)
    steps = step0 + jnp.arange(num_steps)
    step_keys = lambda step: jax.random.split(jax.random.fold_in(k_train, step))
    batch_idx = step_batches(lambda step: step_keys(step)[0], steps, s, min(cfg.batch_size, s))
    spiked = spiked_columns(params, xs)

    def train_step(carry, inputs):
      p, o, stop = carry
      step, idx = inputs
      k_loss = step_keys(step)[1]  # unused (and compiled away) by the exact estimator
      beta = beta_fn(step)
      (loss, aux), g = jax.value_and_grad(objective, has_aux=True)(
          spike_floored(p, spiked, step, stop.lr_scale), k_loss, xs[idx], parent_idx,
          parent_mask, model=model, beta=beta, n_rows=s)
      updates, new_o = optimizer.update(g, o, p)
      if cfg.lr_schedule == "plateau":
        updates = jax.tree.map(lambda u: u * stop.lr_scale, updates)
      new_p = optax.apply_updates(p, updates)
      aux = dict(aux, loss=loss, beta=jnp.asarray(beta, jnp.float32))
      if cfg.stop_tolerance > 0:  # a stopped restart keeps its parameters
        keep = lambda new, old: jax.tree.map(lambda a, b: jnp.where(stop.done, b, a), new, old)
        new_p, new_o = keep(new_p, p), keep(new_o, o)
        stop = _stop_rule(stop, step, aux["log_px"])
      return (new_p, new_o, stop), aux

    (params, opt_state, stop), history = jax.lax.scan(train_step, (params, opt_state, stop),
                                                      (steps, batch_idx))
    return params, opt_state, stop, history

  def _stop_rule(stop: StopState, step, log_px) -> StopState:
    active = ~stop.done
    window_sum = stop.window_sum + jnp.where(active, log_px, 0.0)
    boundary = active & ((step + 1) % cfg.stop_window == 0)
    mean = window_sum / cfg.stop_window
    plateau = boundary & (mean - stop.prev_mean < cfg.stop_tolerance)
    decays = stop.decays + plateau
    return StopState(stop.done | (decays >= plateaus_to_stop), jnp.where(boundary, 0.0, window_sum),
                     jnp.where(boundary, mean, stop.prev_mean),
                     jnp.where(active, step + 1, stop.steps_used),
                     jnp.where(plateau, stop.lr_scale * cfg.plateau_factor, stop.lr_scale),
                     decays)

  def run_steps(state: TrainState, xs, parent_idx, parent_mask, num_steps: int):
    """``num_steps`` (static) steps from ``state.step``; history ``[restarts, num_steps]``."""
    params, opt_state, stop, history = jax.vmap(
        steps_one, in_axes=(0, 0, 0, 0, None, None, None, None, None))(
            state.params, state.opt_state, state.key_data, state.stop, state.step, xs,
            parent_idx, parent_mask, num_steps)
    return state._replace(step=state.step + num_steps, params=params, opt_state=opt_state,
                          stop=stop), history

  def finish(state: TrainState, xs, parent_idx, parent_mask, history=None) -> FitResult:
    """Pick the restart with the best training ``log p(x)`` (never labels)."""
    def final_one(params):
      log_prior = model.log_prior(params)

      def per_row(x):
        ll = model.regime_log_likelihoods(params, x, parent_idx, parent_mask)
        q = model.q_logits(params, x, parent_idx, parent_mask)
        return elbo.log_marginal(ll, log_prior), elbo.elbo_exact(q, ll, log_prior)[0]

      log_px, elbo_rows = map_rows(per_row, xs)
      return log_px.mean(), elbo_rows.mean()

    params = jax.vmap(lambda p: snap_gates(model, p))(state.params)
    spiked = spiked_columns(params, xs)

    def scored(ps):  # each restart's log p(x) (-inf where not finite) and ELBO
      log_px, elbo_value = jax.vmap(final_one)(ps)
      return jnp.where(jnp.isfinite(log_px), log_px, -jnp.inf), elbo_value

    if spiked is None:
      log_px, elbo_value = scored(params)
    else:
      # Each restart scored at the data's floor and with its spike columns at the floor
      # of its last rate, in one pass over both; the higher log p(x) keeps its floor.
      # (Kumar hard development seed 0: the data's floor 0.992, the rate's 0.984; with
      # noise_floor=1e-5 the data's floor alone 0.27, the means aimed no finer than the
      # rate.) Without a spike both are the same parameters.
      last = jnp.maximum(state.step - 1, 0)
      raised = jax.vmap(lambda p, lr_scale: spike_floored(p, spiked, last, lr_scale))(
          params, state.stop.lr_scale)
      both = jax.tree.map(lambda a, b: jnp.concatenate([a, b]), params, raised)
      log_px, elbo_value = scored(both)
      n = log_px.shape[0] // 2
      up = log_px[n:] > log_px[:n]
      params = jax.tree.map(
          lambda a, b: jnp.where(up.reshape(up.shape + (1,) * (a.ndim - 1)), b, a), params, raised)
      log_px, elbo_value = (jnp.where(up, v[n:], v[:n]) for v in (log_px, elbo_value))
    state = state._replace(params=params)
    best = jnp.argmax(log_px)
    pick = lambda t: t[best]
    jacobian = units.log_jacobian(state.scale)
    history = None if history is None else jax.tree.map(pick, history)
    steps_used = jnp.where(cfg.stop_tolerance > 0, state.stop.steps_used[best], state.step)
    return FitResult(jax.tree.map(pick, state.params), state.loc, state.scale, history,
                     log_px - jacobian, elbo_value[best] - jacobian, steps_used,
                     state.stop.done[best])

  def init_from(key, params, loc, scale, each: bool = False) -> TrainState:
    """Every restart starts from one fit's ``params`` (no restart axis), in that fit's
    standardisation ``loc``, ``scale``: a fit that contains it, or the same model on
    more rows, continues from it instead of starting over (its step stream from ``key``).
    ``each``: ``params`` has a restart axis, one start per restart."""
    if not each:
      params = jax.tree.map(lambda a: jnp.broadcast_to(a, (cfg.restarts,) + a.shape), params)
    key_data = jax.vmap(jax.random.key_data)(jax.random.split(key, cfg.restarts))
    return TrainState(jnp.zeros((), jnp.int32), params, jax.vmap(optimizer.init)(params),
                      key_data, loc, scale, _initial_stop(cfg.restarts))

  return Trainer(model, init, run_steps, finish, init_from)


def run_to_stop(trainer: Trainer, state: TrainState, xs, parent_idx, parent_mask):
  """Train ``state`` on standardised ``xs`` for ``num_steps``, or, with the stopping rule
  on, window by window in a ``lax.while_loop`` until every restart has stopped (the
  history of the steps not run is zero). Returns ``(state, history)``."""
  cfg = trainer.model.cfg
  run = lambda st, n: trainer.run_steps(st, xs, parent_idx, parent_mask, n)
  if cfg.stop_tolerance <= 0:
    return run(state, cfg.num_steps)
  window, n_windows = cfg.stop_window, cfg.num_steps // cfg.stop_window
  shapes = jax.eval_shape(lambda st: run(st, window)[1], state)
  history = jax.tree.map(lambda a: jnp.zeros(a.shape[:-1] + (cfg.num_steps,), a.dtype), shapes)

  def body(carry):
    st, hist, i = carry
    st, h = run(st, window)
    hist = jax.tree.map(lambda a, b: jax.lax.dynamic_update_slice_in_dim(a, b, i * window, -1),
                        hist, h)
    return st, hist, i + 1

  def cond(carry):
    st, _, i = carry
    return (i < n_windows) & ~jnp.all(st.stop.done)

  state, history, _ = jax.lax.while_loop(cond, body, (state, history, 0))
  return state, history


def continue_fit(key, start: FitResult, x, parent_idx, parent_mask, *,
                 trainer: Trainer) -> FitResult:
  """A fit of raw data ``x`` that starts from ``start`` (a fit of the same model, e.g. on
  a subset of the rows, or of a model it contains) in its units, and trains to the
  stopping rule (jit/vmap-safe). Where the training ended below its start's ``log p(x)``
  on ``x``, the start's parameters are kept (their scores; the history and steps are the
  training's): a start already at an optimum, which minibatch steps only shook, cannot
  come back worse than it went in (15-node ER seed 107, 8000 rows: the scale that depends
  on the parents, continued from the constant scale's fit with its head at zero, ended
  0.0019 nats a row below it, and the model choice flagged that candidate as failed)."""
  begun = trainer.init_from(key, start.params, start.loc, start.scale)
  xs = units.to_standard(x, begun.loc, begun.scale)
  state, history = run_to_stop(trainer, begun, xs, parent_idx, parent_mask)
  # Both scored in one vmapped pass (one scoring program compiled, not two).
  both = jax.vmap(lambda st: trainer.finish(st, xs, parent_idx, parent_mask, history))(
      jax.tree.map(lambda a, b: jnp.stack([a, b]), state, begun))
  end, first = (jax.tree.map(lambda a: a[i], both) for i in (0, 1))
  keep = first.restart_log_px.max() > end.restart_log_px.max()
  pick = lambda a, b: jnp.where(keep, a, b)
  return end._replace(params=jax.tree.map(pick, first.params, end.params),
                      restart_log_px=pick(first.restart_log_px, end.restart_log_px),
                      train_elbo=pick(first.train_elbo, end.train_elbo))


def continue_each(key, starts, loc, scale, x, parent_idx, parent_mask, *,
                  trainer: Trainer) -> FitResult:
  """A fit of raw data ``x`` whose restarts start from ``starts`` (parameters with a
  restart axis of ``cfg.restarts``, in the units ``loc``, ``scale``), each trained to the
  stopping rule; the best restart's, as ``fit_arrays`` (jit/vmap-safe)."""
  begun = trainer.init_from(key, starts, loc, scale, each=True)
  xs = units.to_standard(x, begun.loc, begun.scale)
  state, history = run_to_stop(trainer, begun, xs, parent_idx, parent_mask)
  return trainer.finish(state, xs, parent_idx, parent_mask, history)


def fit_arrays(key, x, parent_idx, parent_mask, *, trainer: Trainer, n_active=None) -> FitResult:
  """One whole fit of raw data ``x: [S, N]`` (pure, jit/vmap-safe; ``trainer`` static).

  Parent tables come from ``graphs.parent_table``; ``run_to_stop`` runs the steps.
  ``n_active``: as in ``Trainer.init`` (a padded K).
  """
  state = trainer.init(key, x, parent_idx, parent_mask, n_active)
  xs = units.to_standard(x, state.loc, state.scale)
  state, history = run_to_stop(trainer, state, xs, parent_idx, parent_mask)
  return trainer.finish(state, xs, parent_idx, parent_mask, history)
