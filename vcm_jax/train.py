"""Fitting the VAE: train state, jitted step, ``lax.scan`` loop, restarts.

``make_fit(cfg, n_nodes=..., max_parents=...)`` returns a pure function
``fit(key, x, parent_idx, parent_mask) -> FitResult``; everything inside runs on
the device (scan over steps, no host round-trips), so many runs are one call:
``jax.jit(jax.vmap(fit))(keys, xs, idxs, masks)``.

Recipes (DESIGN section 2):
  * the paper: ``estimator='gumbel'``, ``posterior='encoder'``, uniform prior,
    unit variance, random initialisation;
  * ours (default): ``estimator='exact'`` with ``posterior='exact'``: the decoder
    and prior ascend the exact ``log p(x)`` (the ELBO with q equal to the true
    posterior of the model, computed by enumerating the K categories), the encoder
    is trained to that posterior (the ELBO's gradient for q); ``init='surprise'``
    starts from a pooled fit whose intervened states are broader, so samples a
    mechanism finds surprising are explained by its intervened state; restarts
    are chosen by ``log p(x)``.
"""
from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from vcm_jax import clustering, elbo, models


@dataclasses.dataclass(frozen=True)
class FitConfig:
  """Static hyperparameters of one fit (hashable, safe to close over in ``jit``)."""
  decoder: str = "structured"       # structured (K = N + 1) | free (K = n_regimes)
  n_regimes: int = 0                # free decoder: K
  mechanism: str = "mlp"            # linear | mlp
  hidden: tuple = (16,)             # decoder MLP widths
  linear_skip: bool = True          # mlp mechanisms also get a linear part
  teacher_forcing: bool = True      # mechanisms read observed parents (off: predicted means)
  propagation_passes: int = 0       # no teacher forcing: passes (>= longest path + 1; 0: N)
  encoder_hidden: tuple = (64, 64)  # encoder MLP widths (3 layers with the output)
  scale: str = "learned"            # learned | unit
  estimator: str = "exact"          # exact | gumbel | straight_through
  posterior: str = "exact"          # exact | encoder: q used for the decoder's expectation
  prior: str = "learned"            # learned | uniform
  init: str = "surprise"            # surprise | random
  init_scale_factor: float = 3.0    # intervened-state scale / pooled scale at init
  init_obs_prior: float = 0.5       # initial prior weight of the observational regime
  pooled_steps: int = 100
  num_steps: int = 400
  batch_size: int = 1000
  learning_rate: float = 3e-2
  temperature: float = 1.0          # Gumbel-Softmax temperature
  kl_schedule: str = "constant"     # constant | warmup | cyclical
  kl_warmup_steps: int = 0
  kl_cycles: int = 4
  restarts: int = 1

  @classmethod
  def from_config(cls, model_cfg, train_cfg) -> "FitConfig":
    """Build from the ``model`` and ``train`` groups of an experiment config."""
    fields = {f.name for f in dataclasses.fields(cls)}
    values = {}
    for group in (model_cfg, train_cfg):
      for k, v in group.items():
        if k in fields:
          values[k] = tuple(v) if isinstance(v, (list, tuple)) else v
    return cls(**values)


class FitResult(NamedTuple):
  params: Any          # {'encoder', 'decoder', 'prior_logits'} of the chosen restart
  loc: jax.Array       # [N] standardisation of the training data
  scale: jax.Array     # [N]
  history: Any         # dict of [num_steps] per-step metrics (chosen restart), standardised units
  restart_log_px: jax.Array  # [restarts] final mean log p(x) of the training data per restart
  train_elbo: jax.Array      # mean ELBO (encoder's q, beta = 1) of the training data, chosen restart


def standardize(x: jax.Array):
  """Column-wise standardisation: ``(x - loc) / scale, loc, scale``."""
  loc = x.mean(axis=0)
  scale = jnp.maximum(x.std(axis=0), 1e-6)
  return (x - loc) / scale, loc, scale


class Model(NamedTuple):
  """The modules of a fit and how they combine into regime log-likelihoods."""
  encoder: models.Encoder
  decoder: models.MechanismDecoder
  cfg: FitConfig

  @property
  def structured(self) -> bool:
    return isinstance(self.decoder, models.MechanismDecoder)

  @property
  def n_categories(self) -> int:
    return self.decoder.n_nodes + 1 if self.structured else self.decoder.n_regimes

  def log_prior(self, params):
    if self.cfg.prior == "learned":
      return jax.nn.log_softmax(params["prior_logits"])
    return jnp.full((self.n_categories,), -jnp.log(self.n_categories))

  def regime_means(self, params, x, parent_idx, parent_mask):
    """Every node's mean and log-scale under every regime, ``[B, K, N]`` each
    (``[1, K, N]`` without teacher forcing: the means then ignore x)."""
    k, n = self.n_categories, self.decoder.n_nodes
    dec = params["decoder"]
    if not self.cfg.teacher_forcing:
      # Means propagated from zeros depend on the regime only: K x N, no batch axis.
      if self.structured:
        states = jnp.concatenate([jnp.zeros((1, n)), jnp.eye(n)])
        decode = lambda xh: self.decoder.apply(dec, xh, states, parent_idx, parent_mask)
      else:
        decode = lambda xh: jax.tree.map(lambda a: a[:, 0], self.decoder.apply(
            dec, xh, parent_idx, parent_mask, jnp.eye(k)))
      mean, log_scale = models.free_running(decode, (k, n), self.cfg.propagation_passes or n)
      return mean[None], log_scale[None]
    if not self.structured:
      return self.decoder.apply(dec, x, parent_idx, parent_mask)
    states = [self.decoder.apply(dec, x, jnp.full_like(x, z), parent_idx, parent_mask)
              for z in (0.0, 1.0)]
    hit = jnp.concatenate([jnp.zeros((1, n)), jnp.eye(n)])[None, :, :] > 0  # [1, K, N]
    return tuple(jnp.where(hit, i[:, None], o[:, None]) for o, i in zip(*states))

  def regime_log_likelihoods(self, params, x, parent_idx, parent_mask):
    """``log p(x | z = k)`` for all k, ``[B, K]`` (standardised units)."""
    if not self.cfg.teacher_forcing:
      mean, log_scale = self.regime_means(params, x, parent_idx, parent_mask)
      return models.gaussian_log_density(x[:, None], mean, log_scale).sum(-1)
    if not self.structured:
      return models.free_log_likelihoods(self.decoder, params["decoder"], x, parent_idx,
                                         parent_mask)
    l_obs, l_int = models.both_states(self.decoder, params["decoder"], x, parent_idx, parent_mask)
    return elbo.structured_log_likelihoods(l_obs, l_int)

  def posterior(self, params, x, parent_idx, parent_mask):
    """Exact posterior of the fitted model, ``[B, K]`` probabilities."""
    ll = self.regime_log_likelihoods(params, x, parent_idx, parent_mask)
    return jnp.exp(elbo.posterior_logits(ll, self.log_prior(params)))

  def log_marginal(self, params, x, parent_idx, parent_mask):
    ll = self.regime_log_likelihoods(params, x, parent_idx, parent_mask)
    return elbo.log_marginal(ll, self.log_prior(params))


def build_model(cfg: FitConfig, *, n_nodes: int, max_parents: int) -> Model:
  common = dict(n_nodes=n_nodes, max_parents=max_parents, mechanism=cfg.mechanism,
                hidden=tuple(cfg.hidden), scale=cfg.scale, linear_skip=cfg.linear_skip)
  if cfg.decoder == "structured":
    decoder, k = models.MechanismDecoder(**common), n_nodes + 1
  elif cfg.decoder == "free":
    if cfg.n_regimes < 2:
      raise ValueError(f"the free decoder needs n_regimes >= 2, got {cfg.n_regimes}")
    decoder, k = models.FreeDecoder(n_regimes=cfg.n_regimes, **common), cfg.n_regimes
  else:
    raise ValueError(f"unknown decoder {cfg.decoder!r}; expected structured or free")
  return Model(encoder=models.Encoder(n_categories=k, hidden=tuple(cfg.encoder_hidden)),
               decoder=decoder, cfg=cfg)


def init_params(key, model: Model, parent_idx, parent_mask):
  k_enc, k_dec = jax.random.split(key)
  n, k = model.decoder.n_nodes, model.n_categories
  x0 = jnp.zeros((1, n))
  if model.structured:
    obs = model.cfg.init_obs_prior
    prior = jnp.log(jnp.concatenate([jnp.full((1,), obs), jnp.full((n,), (1 - obs) / n)]))
    decoder = model.decoder.init(k_dec, x0, x0, parent_idx, parent_mask)
  else:
    prior = jnp.zeros((k,))
    decoder = model.decoder.init(k_dec, x0, parent_idx, parent_mask)
  return {"encoder": model.encoder.init(k_enc, x0), "decoder": decoder, "prior_logits": prior}


def objective(params, key, x, parent_idx, parent_mask, *, model: Model, beta):
  """Loss to minimise and its parts, for one batch ``x: [B, N]``."""
  cfg = model.cfg
  q_logits = model.encoder.apply(params["encoder"], x)
  log_prior = model.log_prior(params)
  if cfg.estimator == "exact":
    ll = model.regime_log_likelihoods(params, x, parent_idx, parent_mask)
    log_px = elbo.log_marginal(ll, log_prior)
    post = elbo.posterior_logits(ll, log_prior)
    elbo_value, ell, kl = elbo.elbo_exact(q_logits, ll, log_prior, beta)
    if cfg.posterior == "exact":
      # Decoder and prior: the ELBO at q = p(z | x), i.e. log p(x). Encoder: the
      # ELBO's own gradient, KL(q || p(z | x)), with the model held fixed.
      loss = -log_px + elbo.kl_categorical(q_logits, jax.lax.stop_gradient(post))
    else:
      loss = -elbo_value
  else:
    def node_ll(z):
      dec = params["decoder"]
      if model.structured:
        decode = lambda xh: model.decoder.apply(dec, xh, z[..., 1:], parent_idx, parent_mask)
      else:
        decode = lambda xh: jax.tree.map(lambda a: a[:, 0], model.decoder.apply(
            dec, xh, parent_idx, parent_mask, z))
      if cfg.teacher_forcing:
        mean, log_scale = decode(x)
      else:
        mean, log_scale = models.free_running(decode, x.shape,
                                              cfg.propagation_passes or model.decoder.n_nodes)
      return models.gaussian_log_density(x, mean, log_scale)
    elbo_value, ell, kl = elbo.elbo_sampled(
        key, q_logits, log_prior, node_ll, estimator=cfg.estimator,
        temperature=cfg.temperature, beta=beta)
    loss = -elbo_value
    log_px = model.log_marginal(jax.lax.stop_gradient(params), x, parent_idx, parent_mask)
  aux = {"elbo": elbo_value.mean(), "expected_loglik": ell.mean(), "kl": kl.mean(),
         "log_px": log_px.mean()}
  return loss.mean(), aux


def _pooled_loss(params, x, parent_idx, parent_mask, *, model: Model):
  """Fit every mechanism in its observational state to all data (regimes ignored).

  Free decoder: every regime's copy gets the same gradient, so from the common
  zero initialisation they stay equal, each the pooled fit."""
  if not model.structured:
    return -model.regime_log_likelihoods(params, x, parent_idx, parent_mask).mean()
  l_obs = models.node_log_densities(model.decoder, params["decoder"], x, jnp.zeros_like(x),
                                    parent_idx, parent_mask)
  return -l_obs.sum(-1).mean()


_POOLED_PARAMS = ("w", "b", "log_scale")


def _batches(key, n_samples, batch_size):
  return jax.random.randint(key, (batch_size,), 0, n_samples)


def _step_batches(step_key, steps, n_samples, batch_size):
  """Every step's batch indices, ``[len(steps), batch_size]``, drawn before the loop.

  The same numbers as drawing each step's batch inside it from ``step_key(step)``,
  but one vectorised threefry call instead of a small random-number loop per step
  (that loop was about 15% of a step on CPU).
  """
  return jax.vmap(lambda step: _batches(step_key(step), n_samples, batch_size))(steps)


def _residual_centroids(key, model: Model, params, x, parent_idx, parent_mask,
                        max_points: int = 4096):
  """Free decoder: per-regime offsets ``[K, N]`` that break the symmetry of the pooled copies.

  k-means on the residuals of the pooled mechanisms: a sample from a regime
  that shifts node j has a large residual at j only (parents are observed), so
  the centroids start each regime near one kind of departure from the pooled fit.
  """
  k_sub, k_means = jax.random.split(key)
  xs = x[jax.random.permutation(k_sub, x.shape[0])[:max_points]]
  # Every regime's copy is the same pooled fit here: evaluate one (the mix z = e_0).
  first = jnp.zeros((xs.shape[0], model.n_categories)).at[:, 0].set(1.0)
  mean, _ = model.decoder.apply(params["decoder"], xs, parent_idx, parent_mask, first)
  return clustering.kmeans(k_means, xs - mean[:, 0], model.n_categories)[0]


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


class Trainer(NamedTuple):
  """Pure pieces of a fit, for callers that checkpoint or log between chunks.

  ``fit = finish(run_steps(init(key, x, ...), xs, ..., num_steps), xs, ...)``,
  with ``xs = standardized(state, x)``; a chunked loop gives the same numbers as
  one call because every step draws its randomness from ``fold_in(key, step)``.
  """
  model: Model
  init: Any       # (key, x, parent_idx, parent_mask) -> TrainState
  run_steps: Any  # (state, xs, parent_idx, parent_mask, num_steps) -> (state, history)
  finish: Any     # (state, xs, parent_idx, parent_mask) -> FitResult


def map_rows(fn, x, chunk: int = 2048):
  """``fn`` over blocks of ``chunk`` rows of ``x`` (``lax.map``), outputs concatenated.

  The same per-row results as ``fn(x)``, with the peak memory of one block: scoring
  whole datasets with the free decoder holds ``[rows, K, N, hidden]`` activations.
  """
  s = x.shape[0]
  if s <= chunk:
    return fn(x)
  blocks = -(-s // chunk)
  xp = jnp.pad(x, ((0, blocks * chunk - s), (0, 0))).reshape(blocks, chunk, x.shape[1])
  out = jax.lax.map(fn, xp)
  return jax.tree.map(lambda a: a.reshape((blocks * chunk,) + a.shape[2:])[:s], out)


def standardized(fitted, x):
  """Raw samples in the units a fit works in; ``fitted`` is a TrainState or a FitResult."""
  return (x - fitted.loc) / fitted.scale


def make_trainer(cfg: FitConfig, *, n_nodes: int, max_parents: int) -> Trainer:
  """Build the pure ``init`` / ``run_steps`` / ``finish`` functions of a fit."""
  model = build_model(cfg, n_nodes=n_nodes, max_parents=max_parents)
  beta_fn = elbo.kl_weight_schedule(cfg.kl_schedule, num_steps=cfg.num_steps,
                                    warmup_steps=cfg.kl_warmup_steps, cycles=cfg.kl_cycles)
  optimizer = optax.adam(optax.cosine_decay_schedule(cfg.learning_rate, cfg.num_steps, 0.05))
  pooled_opt = optax.adam(cfg.learning_rate)
  if cfg.init not in ("surprise", "random"):
    raise ValueError(f"unknown init {cfg.init!r}; expected surprise or random")

  def init_one(key, x, parent_idx, parent_mask):
    s = x.shape[0]
    batch = min(cfg.batch_size, s)
    k_init, k_pool, k_train, k_seed = jax.random.split(key, 4)
    params = init_params(k_init, model, parent_idx, parent_mask)
    if cfg.init == "surprise":
      pooled_idx = _step_batches(lambda step: jax.random.fold_in(k_pool, step),
                                 jnp.arange(cfg.pooled_steps), s, batch)

      def pooled_step(carry, batch_idx):
        p, o = carry
        xb = x[batch_idx]
        g = jax.grad(_pooled_loss)(p, xb, parent_idx, parent_mask, model=model)
        # Only the linear part is fitted here: an MLP could absorb a mechanism's
        # shift as a function of its parents' regimes, hiding the very surprise
        # the initialisation reads.
        dec_g = {k: (v if k in _POOLED_PARAMS else jnp.zeros_like(v))
                 for k, v in g["decoder"]["params"].items()}
        g = dict(g, decoder={"params": dec_g})
        updates, o = pooled_opt.update(g, o, p)
        return (optax.apply_updates(p, updates), o), None

      (params, _), _ = jax.lax.scan(pooled_step, (params, pooled_opt.init(params)), pooled_idx)
      # Break the symmetry between the two states: the intervened state starts as a
      # broader copy of the pooled mechanism, so outliers of node j are explained
      # by regime j + 1 in the first posterior.
      dec = params["decoder"]["params"]
      if model.structured and "dlog_scale" in dec:
        dec = dict(dec, dlog_scale=jnp.full_like(dec["dlog_scale"],
                                                 jnp.log(cfg.init_scale_factor)))
        params = dict(params, decoder={"params": dec})
    if not model.structured:  # identical regime copies never separate: offset them
      dec = params["decoder"]["params"]
      dec = dict(dec, b=dec["b"] + _residual_centroids(k_seed, model, params, x, parent_idx,
                                                        parent_mask))
      params = dict(params, decoder={"params": dec})
    return params, optimizer.init(params), jax.random.key_data(k_train)

  def init(key, x, parent_idx, parent_mask) -> TrainState:
    xs, loc, scale = standardize(x)
    keys = jax.random.split(key, cfg.restarts)
    params, opt_state, key_data = jax.vmap(init_one, in_axes=(0, None, None, None))(
        keys, xs, parent_idx, parent_mask)
    return TrainState(jnp.zeros((), jnp.int32), params, opt_state, key_data, loc, scale)

  def steps_one(params, opt_state, key_data, step0, xs, parent_idx, parent_mask, num_steps):
    s = xs.shape[0]
    batch = min(cfg.batch_size, s)
    k_train = jax.random.wrap_key_data(key_data)

    steps = step0 + jnp.arange(num_steps)
    step_keys = lambda step: jax.random.split(jax.random.fold_in(k_train, step))
    batch_idx = _step_batches(lambda step: step_keys(step)[0], steps, s, batch)

    def train_step(carry, inputs):
      p, o = carry
      step, idx = inputs
      k_loss = step_keys(step)[1]  # unused (and compiled away) by the exact estimator
      xb = xs[idx]
      beta = beta_fn(step)
      (loss, aux), g = jax.value_and_grad(objective, has_aux=True)(
          p, k_loss, xb, parent_idx, parent_mask, model=model, beta=beta)
      updates, o = optimizer.update(g, o, p)
      aux = dict(aux, loss=loss, beta=jnp.asarray(beta, jnp.float32))
      return (optax.apply_updates(p, updates), o), aux

    (params, opt_state), history = jax.lax.scan(train_step, (params, opt_state),
                                                (steps, batch_idx))
    return params, opt_state, history

  def run_steps(state: TrainState, xs, parent_idx, parent_mask, num_steps: int):
    """``num_steps`` (static) steps from ``state.step``; history ``[restarts, num_steps]``."""
    params, opt_state, history = jax.vmap(
        steps_one, in_axes=(0, 0, 0, None, None, None, None, None))(
            state.params, state.opt_state, state.key_data, state.step, xs, parent_idx,
            parent_mask, num_steps)
    return state._replace(step=state.step + num_steps, params=params,
                          opt_state=opt_state), history

  def finish(state: TrainState, xs, parent_idx, parent_mask, history=None) -> FitResult:
    """Pick the restart with the best training ``log p(x)`` (never labels)."""
    def final_one(params):
      log_prior = model.log_prior(params)

      def per_row(x):
        ll = model.regime_log_likelihoods(params, x, parent_idx, parent_mask)
        q_logits = model.encoder.apply(params["encoder"], x)
        return elbo.log_marginal(ll, log_prior), elbo.elbo_exact(q_logits, ll, log_prior)[0]

      log_px, elbo_rows = map_rows(per_row, xs)
      return log_px.mean(), elbo_rows.mean()

    log_px, elbo_value = jax.vmap(final_one)(state.params)
    log_px = jnp.where(jnp.isfinite(log_px), log_px, -jnp.inf)
    best = jnp.argmax(log_px)
    pick = lambda t: t[best]
    # Standardisation is a change of variables: data-unit densities lose sum(log scale).
    jacobian = jnp.log(state.scale).sum()
    history = None if history is None else jax.tree.map(pick, history)
    return FitResult(jax.tree.map(pick, state.params), state.loc, state.scale, history,
                     log_px - jacobian, elbo_value[best] - jacobian)

  return Trainer(model, init, run_steps, finish)


def make_fit(cfg: FitConfig, *, n_nodes: int, max_parents: int):
  """Returns ``fit(key, x, parent_idx, parent_mask) -> FitResult`` (pure, jit/vmap-safe).

  ``x: [S, N]`` raw data; parent tables from ``graphs.parent_table``.
  """
  trainer = make_trainer(cfg, n_nodes=n_nodes, max_parents=max_parents)

  def fit(key, x, parent_idx, parent_mask) -> FitResult:
    state = trainer.init(key, x, parent_idx, parent_mask)
    xs = standardized(state, x)
    state, history = trainer.run_steps(state, xs, parent_idx, parent_mask, cfg.num_steps)
    return trainer.finish(state, xs, parent_idx, parent_mask, history)

  fit.model = trainer.model
  return fit


def data_log_marginal(model: Model, result: FitResult, x, parent_idx, parent_mask):
  """Fitted ``log p(x)`` in the data's own units, ``[S]`` (standardisation Jacobian included)."""
  xs = standardized(result, x)
  log_px = map_rows(lambda b: model.log_marginal(result.params, b, parent_idx, parent_mask), xs)
  return log_px - jnp.log(result.scale).sum()


def data_posterior(model: Model, result: FitResult, x, parent_idx, parent_mask):
  """Exact regime posterior of the fitted model for raw samples ``x``, ``[S, K]``."""
  xs = standardized(result, x)
  return map_rows(lambda b: model.posterior(result.params, b, parent_idx, parent_mask), xs)


def sample_fitted(key, model: Model, result: FitResult, regimes, parent_idx, parent_mask, order):
  """Draw samples in data units from the fitted model under chosen ``regimes: [S]``
  (0 observational, k intervenes node k - 1), in topological ``order``."""
  xs = models.ancestral_sample(key, model.decoder, result.params["decoder"], regimes,
                               parent_idx, parent_mask, order)
  return xs * result.scale + result.loc


def encoder_posterior(model: Model, result: FitResult, x):
  """The encoder's amortised ``q(z | x)`` for raw samples ``x``, ``[S, K]``."""
  xs = standardized(result, x)
  return jax.nn.softmax(model.encoder.apply(result.params["encoder"], xs), axis=-1)


def regime_mechanisms(model: Model, result: FitResult, x, parent_idx, parent_mask):
  """Every node's conditional mean and noise scale under every regime, in data units.

  Means are averaged over the samples ``x`` (raw units) with parents as observed
  (as the model predicts them, without teacher forcing); ``mean[k] - mean[0]`` is
  how regime k moves each mechanism relative to regime 0.

  Returns:
    mean, scale: ``[K, N]``.
  """
  xs = standardized(result, x)
  mean, log_scale = map_rows(
      lambda b: jax.tree.map(lambda a: jnp.broadcast_to(
          a, (b.shape[0],) + a.shape[1:]), model.regime_means(result.params, b, parent_idx,
                                                             parent_mask)), xs)
  mean, scale = mean.mean(0), jnp.exp(log_scale).mean(0)
  return mean * result.scale + result.loc, scale * result.scale


def mechanism_changes(model: Model, result: FitResult, x, parent_idx, parent_mask):
  """Each mechanism's mean and noise scale in both states, in data units.

  The means are averaged over the samples ``x`` (raw units) with parents as observed:
  ``shift[1] - shift[0]`` is the mean shift of each intervened state.

  Returns:
    mean: ``[2, N]`` (observational, intervened); scale: ``[2, N]``.
  """
  xs = standardized(result, x)
  outs = [model.decoder.apply(result.params["decoder"], xs, jnp.full_like(xs, z), parent_idx,
                              parent_mask) for z in (0.0, 1.0)]
  mean = jnp.stack([m.mean(0) for m, _ in outs]) * result.scale + result.loc
  scale = jnp.stack([jnp.exp(ls).mean(0) for _, ls in outs]) * result.scale
  return mean, scale
