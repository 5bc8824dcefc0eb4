"""The fitted model: its networks, their parameters, and how they give regime likelihoods.

``build_model(cfg, n_nodes=..., max_parents=...)`` assembles the encoder (only
when the recipe reads its q) and the decoder; ``Model``'s methods are pure
functions of ``(params, x, parent_idx, parent_mask)`` in standardised units.
Every switch between the structured and the free decoder, and between teacher
forcing and propagated means, is made here and nowhere else.

Regimes: the structured decoder has ``K = N + 1`` (0 observational, ``k``
changes mechanism ``k - 1``); the free decoder has ``K = cfg.n_regimes``
clusters without meaning until ``identify`` reads them; the sparse decoder has
``K = cfg.n_regimes`` regimes over one shared (observational) set of mechanisms,
regime k replacing mechanism i by its own where its gate ``g[k, i]`` is on:
``log p(x | k) = sum_i l_base_i + g[k, i] (l_ki - l_base_i)`` (exact for 0/1 gates;
the structured decoder is the case ``g = I`` shifted by one, the free one ``g = 1``).
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from vcm_jax import densities, elbo, networks
from vcm_jax.config import FitConfig


class Model(NamedTuple):
  """Static structure of a fit (no arrays): safe to close over in ``jit``."""
  encoder: networks.Encoder | None  # None when the posterior is exact
  decoder: networks.MechanismDecoder | networks.FreeDecoder
  cfg: FitConfig

  @property
  def structured(self) -> bool:
    return isinstance(self.decoder, networks.MechanismDecoder)

  @property
  def sparse(self) -> bool:
    return self.cfg.decoder == "sparse"

  @property
  def n_nodes(self) -> int:
    return self.decoder.n_nodes

  @property
  def n_categories(self) -> int:
    if self.structured:
      return self.n_nodes + 1
    return self.decoder.n_regimes - 1 if self.sparse else self.decoder.n_regimes

  def cell_log_density(self, x, mean, log_scale, params=None):
    """``log p(x_j | pa_j)`` of every cell under the noise family, gross errors included;
    a cell at a censoring bound (``params['censor_lower' / 'censor_upper']``,
    ``FitConfig.censor_share``) has its tail probability instead."""
    return densities.contaminated(self._clean_cell_log_density(x, mean, log_scale, params),
                                  x, self.cfg.outlier_fraction)

  def _clean_cell_log_density(self, x, mean, log_scale, params=None):
    """``cell_log_density`` without the gross errors: the noise family's density, or
    the tail's probability at a censoring bound."""
    cfg = self.cfg
    log_p = densities.log_density(cfg.noise, cfg.noise_dof)(x, mean, log_scale)
    lower, upper = _censoring(params)
    if lower is not None:
      lower, upper = jax.lax.stop_gradient((lower, upper))
      cdf = densities.log_cdf(cfg.noise, cfg.noise_dof)
      log_p = densities.censored(log_p, x, mean, log_scale, lower, upper, cdf)
      if "two_point" in params:  # a two-valued column: a Bernoulli's probability
        log_p = densities.two_point(log_p, mean, log_scale, lower, upper,
                                    params["two_point"] > 0, cdf)
    return log_p

  def cell_expected_log_density(self, mean, log_scale, params=None):
    """``E[log p(X_j | pa_j)]`` of every cell with ``X_j`` drawn from the cell's own law
    (its censoring included, gross errors not): what ``cell_log_density`` averages to
    where the mechanism is right, for these parents (``densities.expected_log_density``)."""
    cfg = self.cfg
    lower, upper = _censoring(params)
    out = densities.expected_log_density(cfg.noise, cfg.noise_dof, mean, log_scale,
                                         lower, upper)
    if lower is not None and "two_point" in params:
      on = params["two_point"] > 0
      out = jnp.where(on, densities.two_point_expected_log_density(
          mean, log_scale, lower, upper, on, densities.log_cdf(cfg.noise, cfg.noise_dof)), out)
    return out

  def _decode(self, params, *args):
    """The decoder's means and log-scales, the scales above the noise floor
    (``params['log_floor']``, ``FitConfig.noise_floor``: ``sigma + floor``, smooth)."""
    mean, log_scale = self.decoder.apply(params["decoder"], *args)
    if "log_floor" in params:
      log_scale = jnp.logaddexp(log_scale, jax.lax.stop_gradient(params["log_floor"]))
    return mean, log_scale

  def gates(self, params):
    """Sparse decoder: ``[K, N]`` in [0, 1], whether regime k changes mechanism i."""
    return jax.nn.sigmoid(params["gate_logits"])

  def gates_on(self, params):
    """Sparse decoder: ``[K, N]`` bool, the gates read as on/off (a fit ends with every
    gate at 0 or 1: ``train.snap_gates``). The one place the threshold lives."""
    return params["gate_logits"] > 0.0

  def _sparse_means(self, params, x, parent_idx, parent_mask):
    """Sparse decoder: the shared mechanisms' and every regime's own, ``[B, 1 + K, N]``."""
    return self._decode(params, x, parent_idx, parent_mask)

  def shared_means(self, params, x, parent_idx, parent_mask):
    """Means and log-scales ``[B, N]`` of the mechanisms regimes share (parents as
    observed): the structured decoder's observational state, the sparse decoder's
    shared copy. The free decoder shares none."""
    if self.sparse:
      return tuple(a[:, 0] for a in self._sparse_means(params, x, parent_idx, parent_mask))
    if not self.structured:
      raise ValueError("the free decoder has no shared mechanisms")
    return self._decode(params, x, jnp.zeros_like(x), parent_idx, parent_mask)

  def log_prior(self, params):
    """``log p(z)``, ``[K]``."""
    if self.cfg.prior == "learned":
      return jax.nn.log_softmax(params["prior_logits"])
    if self.cfg.prior == "fixed":
      return initial_log_prior(self)
    if self.cfg.prior != "uniform":
      raise ValueError(f"unknown prior {self.cfg.prior!r}; expected learned, uniform or fixed")
    return jnp.full((self.n_categories,), -jnp.log(self.n_categories))

  def q_logits(self, params, x, parent_idx, parent_mask):
    """Logits of the q the recipe uses: the encoder's, or the exact posterior's."""
    if self.encoder is not None:
      return self.encoder.apply(params["encoder"], x)
    return elbo.posterior_logits(self.regime_log_likelihoods(params, x, parent_idx, parent_mask),
                                 self.log_prior(params))

  def mixed_means(self, params, x, z, parent_idx, parent_mask):
    """Means and log-scales ``[B, N]`` with parents read from ``x: [B, N]`` under a
    one-hot or relaxed regime ``z: [B, K]`` (the structured decoder reads its
    per-node states ``z[:, 1:]``; the free decoder mixes its regimes' parameters)."""
    if self.structured:
      return self._decode(params, x, z[..., 1:], parent_idx, parent_mask)
    if self.sparse:
      mean, log_scale = self.regime_means(params, x, parent_idx, parent_mask)
      return tuple(jnp.einsum("bk,bkn->bn", z, a) for a in (mean, log_scale))
    return jax.tree.map(lambda a: a[:, 0], self._decode(params, x, parent_idx, parent_mask, z))

  def means(self, params, x, z, parent_idx, parent_mask):
    """``mixed_means`` with the model's parents: the observed ones (teacher forcing),
    or the means propagated from zeros along the DAG (the reference code's decoder)."""
    decode = lambda xh: self.mixed_means(params, xh, z, parent_idx, parent_mask)
    if self.cfg.teacher_forcing:
      return decode(x)
    return networks.free_running(decode, x.shape, self.cfg.propagation_passes or self.n_nodes)

  def node_log_densities(self, params, x, z, parent_idx, parent_mask):
    """``log p(x_j | pa_j, z)``, ``[B, N]``."""
    mean, log_scale = self.means(params, x, z, parent_idx, parent_mask)
    return self.cell_log_density(x, mean, log_scale, params)

  def regime_means(self, params, x, parent_idx, parent_mask):
    """Every node's mean and log-scale under every regime, ``[B, K, N]`` each
    (``[1, K, N]`` without teacher forcing: the means then ignore x)."""
    k, n = self.n_categories, self.n_nodes
    if not self.cfg.teacher_forcing:
      mean, log_scale = self.means(params, jnp.zeros((k, n)), jnp.eye(k), parent_idx, parent_mask)
      return mean[None], log_scale[None]
    if self.sparse:  # the gates read as on/off (they end at 0 or 1: train.finish)
      mean, log_scale = self._sparse_means(params, x, parent_idx, parent_mask)
      on = self.gates_on(params)[None]
      return tuple(jnp.where(on, a[:, 1:], a[:, :1]) for a in (mean, log_scale))
    if not self.structured:
      return self._decode(params, x, parent_idx, parent_mask)
    states = [self._decode(params, x, jnp.full_like(x, z), parent_idx,
                                 parent_mask) for z in (0.0, 1.0)]
    hit = jnp.eye(k)[None, :, 1:] > 0  # [1, K, N]: regime k switches node k - 1
    return tuple(jnp.where(hit, i[:, None], o[:, None]) for o, i in zip(*states))

  def observed_regime_means(self, params, x, parent_idx, parent_mask):
    """``regime_means`` with the parents as observed whatever the recipe, ``[B, K, N]``:
    how each regime moves each mechanism, the thing identification reads. (Means
    propagated without teacher forcing move a target's descendants too.)"""
    if self.cfg.teacher_forcing:
      return self.regime_means(params, x, parent_idx, parent_mask)
    k, b = self.n_categories, x.shape[0]
    one = lambda z: self.mixed_means(params, x, jnp.broadcast_to(z, (b, k)), parent_idx,
                                     parent_mask)
    return tuple(jnp.swapaxes(a, 0, 1) for a in jax.vmap(one)(jnp.eye(k)))

  def regime_log_likelihoods(self, params, x, parent_idx, parent_mask):
    """``log p(x | z = k)`` for all k, ``[B, K]``.

    The structured decoder costs 2N mechanism evaluations for all K = N + 1
    regimes: every node in its two states, combined by ``elbo.structured_log_likelihoods``.
    """
    if self.structured and self.cfg.teacher_forcing:
      l_obs, l_int = (self.cell_log_density(x, *self._decode(
          params, x, jnp.full_like(x, z), parent_idx, parent_mask), params) for z in (0.0, 1.0))
      return elbo.structured_log_likelihoods(l_obs, l_int)
    if self.sparse:  # (1 + K) N mechanism evaluations, combined by the gates
      l = self.cell_log_density(x[:, None], *self._sparse_means(params, x, parent_idx,
                                                                 parent_mask), params)
      base = l[:, 0]
      return base.sum(-1)[:, None] + jnp.einsum("kn,bkn->bk", self.gates(params),
                                                l[:, 1:] - base[:, None])
    mean, log_scale = self.regime_means(params, x, parent_idx, parent_mask)
    return self.cell_log_density(x[:, None], mean, log_scale, params).sum(-1)

  def outlier_scores(self, params, x, parent_idx, parent_mask):
    """``[B]``: per row, the largest over its cells of the probability that the cell is a
    gross error (``cfg.outlier_fraction``'s mixture), averaged over the regime posterior;
    0 when the model has no gross errors."""
    cfg = self.cfg
    mean, log_scale = self.observed_regime_means(params, x, parent_idx, parent_mask)
    # The cell's term as the likelihood reads it: at a censoring bound, the tail's
    # probability (with the density there instead, a saturated sensor's pinned readings
    # scored as gross errors: physical report seed 101, 4.6% of rows flagged, 99% of
    # them at the ceiling, 5x what the term's prior expects).
    log_p = self._clean_cell_log_density(x[:, None], mean, log_scale, params)
    cell = densities.outlier_probability(log_p, x[:, None], cfg.outlier_fraction)  # [B, K, N]
    post = self.posterior(params, x, parent_idx, parent_mask)
    return jnp.einsum("bk,bkn->bn", post, cell).max(-1)

  def posterior(self, params, x, parent_idx, parent_mask):
    """Exact posterior of the fitted model, ``[B, K]`` probabilities."""
    ll = self.regime_log_likelihoods(params, x, parent_idx, parent_mask)
    return jnp.exp(elbo.posterior_logits(ll, self.log_prior(params)))

  def log_marginal(self, params, x, parent_idx, parent_mask):
    """Exact ``log p(x)``, ``[B]`` (standardised units)."""
    ll = self.regime_log_likelihoods(params, x, parent_idx, parent_mask)
    return elbo.log_marginal(ll, self.log_prior(params))

  def sample(self, key, params, regimes, parent_idx, parent_mask, order):
    """Samples ``[S, N]`` (standardised units) under chosen ``regimes: [S]``.

    Nodes are drawn in topological ``order`` with ``lax.scan``; each draw feeds
    the sampled parents to the mechanisms, so interventional predictions follow.
    Without teacher forcing the model's means do not read the parents: samples
    are those means plus noise. A draw beyond a censoring bound is read at it, and a
    two-valued column's draw is one of its two values (the law the likelihood scores).
    """
    s, n = regimes.shape[0], self.n_nodes
    z = jax.nn.one_hot(regimes, self.n_categories)
    lower, upper = _censoring(params)
    if lower is not None:  # (a stream of its own: uncensored fits draw as they always did)
      key, key_atoms = jax.random.split(key)
      u = jax.random.uniform(key_atoms, (s, n))
    eps = _standard_noise(key, (s, n), self.cfg)

    def reading(mean, log_scale, cols=slice(None)):
      """The mechanism's draw as it is read: at a censoring bound where it falls beyond
      one; a two-valued column's at one of its two values (``densities.two_point``)."""
      value = mean + jnp.exp(log_scale) * eps[:, cols]
      if lower is None:
        return value
      lo, hi = lower[cols], upper[cols]
      value = jnp.clip(value, lo, hi)
      if "two_point" in params:
        on = params["two_point"][cols] > 0
        log_low, _, total = densities.two_point_atoms(
            mean, log_scale, lo, hi, on, densities.log_cdf(self.cfg.noise, self.cfg.noise_dof))
        value = jnp.where(on, jnp.where(u[:, cols] < jnp.exp(log_low - total), lo, hi), value)
      return value

    if not self.cfg.teacher_forcing:
      return reading(*self.means(params, jnp.zeros((s, n)), z, parent_idx, parent_mask))

    def draw(x, node):
      mean, log_scale = self.mixed_means(params, x, z, parent_idx, parent_mask)
      return x.at[:, node].set(reading(mean[:, node], log_scale[:, node], node)), None

    x, _ = jax.lax.scan(draw, jnp.zeros((s, n)), order)
    return x


def _censoring(params):
  """``(lower, upper)`` censoring bounds of a fit's ``params`` (``train.data_constants``),
  or ``(None, None)``."""
  if params is None or "censor_lower" not in params:
    return None, None
  return params["censor_lower"], params["censor_upper"]


def build_model(cfg: FitConfig, *, n_nodes: int, max_parents: int) -> Model:
  """The networks of a fit; ``max_parents`` is the parent table's width (static)."""
  common = dict(n_nodes=n_nodes, max_parents=max_parents, mechanism=cfg.mechanism,
                hidden=tuple(cfg.hidden), scale=cfg.scale, linear_skip=cfg.linear_skip,
                activation=cfg.activation, z_init=cfg.z_init, scale_model=cfg.scale_model)
  if cfg.decoder == "structured":
    decoder, k = networks.MechanismDecoder(**common), n_nodes + 1
  else:
    if cfg.n_regimes < 2:
      raise ValueError(f"the {cfg.decoder} decoder needs model.n_regimes >= 2, got "
                       f"{cfg.n_regimes}")
    k = cfg.n_regimes
    # sparse: copy 0 holds the shared (observational) mechanisms, copy k + 1 regime k's own
    decoder = networks.FreeDecoder(n_regimes=k + (cfg.decoder == "sparse"), **common)
  encoder = (networks.Encoder(n_categories=k, hidden=tuple(cfg.encoder_hidden))
             if cfg.needs_encoder else None)
  return Model(encoder=encoder, decoder=decoder, cfg=cfg)


def initial_log_prior(model: Model):
  """``[K]``: ``init_obs_prior`` on the observational regime (the structured latent's
  regime 0; the free decoder's first cluster when the prior is fixed), the rest uniform;
  uniform for a learned free prior, whose clusters carry no meaning yet."""
  k, obs = model.n_categories, model.cfg.init_obs_prior
  if not model.structured and model.cfg.prior != "fixed":
    return jnp.full((k,), -jnp.log(k))
  return jnp.log(jnp.concatenate([jnp.full((1,), obs), jnp.full((k - 1,), (1 - obs) / (k - 1))]))


def init_params(key, model: Model, parent_idx, parent_mask):
  """Random parameters: ``{'decoder', 'prior_logits'}`` (+ ``'encoder'`` when it is used)."""
  k_enc, k_dec = jax.random.split(key)
  x0 = jnp.zeros((1, model.n_nodes))
  if model.structured:
    decoder = model.decoder.init(k_dec, x0, x0, parent_idx, parent_mask)
  else:
    decoder = model.decoder.init(k_dec, x0, parent_idx, parent_mask)
  params = {"decoder": decoder, "prior_logits": initial_log_prior(model)}
  if model.sparse:  # the data and the penalty decide where they end
    params["gate_logits"] = jnp.full((model.n_categories, model.n_nodes), float(model.cfg.gate_init))
  if model.encoder is not None:
    params["encoder"] = model.encoder.init(k_enc, x0)
  return params


# A padded regime's prior logit: its weight is exactly 0 in float32, so it takes no
# rows, its parameters get no gradient (Adam leaves a zero-gradient leaf where it is),
# and the active regimes' likelihood is that of a model without it.
INACTIVE_LOGIT = -1e9
# The free and sparse decoders' per-regime parameters (a leading [K] axis, [1 + K] for
# the sparse decoder's shared copy 0); every other decoder parameter is shared.
PER_REGIME = ("b", "w", "z_kernel", "log_scale")


def deactivate_regimes(params, n_active):
  """Regimes ``>= n_active`` (a traced int) switched off: the prior of a model with
  ``n_active`` regimes, padded to the model's K (many K in one compiled program)."""
  logits = params["prior_logits"]
  active = jnp.arange(logits.shape[-1]) < n_active
  return dict(params, prior_logits=jnp.where(active, logits, INACTIVE_LOGIT))


def take_regimes(params, n_regimes: int, *, sparse: bool):
  """The parameters of the first ``n_regimes`` regimes of a padded free or sparse fit
  (host, ``n_regimes`` static): the model ``build_model`` makes with that K."""
  copies = n_regimes + sparse
  dec = {name: (a[:copies] if name in PER_REGIME else a)
         for name, a in params["decoder"]["params"].items()}
  out = dict(params, decoder={"params": dec},
             prior_logits=jax.nn.log_softmax(params["prior_logits"][:n_regimes]))
  if "gate_logits" in params:
    out["gate_logits"] = params["gate_logits"][:n_regimes]
  return out


def split_regimes(key, params, n_regimes: int, *, sparse: bool, jitter: float = 0.1,
                  gate_logit: float | None = None):
  """Free or sparse parameters with ``n_regimes`` regimes that hold a fit with fewer
  (host-level; the counts are static): the regime with the most prior weight is split
  in two, and again, until there are ``n_regimes``. Both halves keep its mechanisms and
  gates and take half its weight; their intercepts move ``jitter`` of its noise scale
  apart, in opposite random directions, so that training can pull them apart (two
  identical copies get identical gradients and stay one regime). The likelihood is the
  plainer fit's to second order in ``jitter``. ``gate_logit``: the sparse gates restart
  at +-it (a fit's gates end snapped at +-30, where no gradient moves them), as in
  ``sparse_from_structured``; the relaxed gates then cost a little likelihood at the
  start, which training wins back."""
  dec = dict(params["decoder"]["params"])
  log_prior = jax.nn.log_softmax(params["prior_logits"])
  gates = params.get("gate_logits")
  if gates is not None and gate_logit is not None:
    gates = jnp.where(gates > 0, gate_logit, -gate_logit)
  for step_key in jax.random.split(key, max(n_regimes - log_prior.shape[0], 0)):
    j = int(jnp.argmax(log_prior))
    copy = j + sparse  # (the sparse decoder's copy 0 is the shared one)
    sd = jnp.exp(dec["log_scale"][copy]) if "log_scale" in dec else 1.0
    step = 0.5 * jitter * sd * jax.random.normal(step_key, dec["b"].shape[1:])
    half = {name: dec[name][copy] for name in PER_REGIME if name in dec}
    half["b"] = half["b"] - step
    dec["b"] = dec["b"].at[copy].add(step)
    dec.update({name: jnp.concatenate([dec[name], a[None]]) for name, a in half.items()})
    weight = log_prior[j] - jnp.log(2.0)
    log_prior = jnp.concatenate([log_prior.at[j].set(weight), weight[None]])
    if gates is not None:
      gates = jnp.concatenate([gates, gates[j][None]])
  out = dict(params, decoder={"params": dec}, prior_logits=log_prior)
  if gates is not None:
    out["gate_logits"] = gates
  return out


def swap_reference(params, node: int):
  """Structured-decoder parameters with ``node``'s observational and intervened states
  exchanged, and the prior weights of regime 0 and regime ``node + 1`` with them: the two
  regimes' likelihoods trade places exactly (an intervened state is the observational
  one plus deltas that ``z`` switches on: ``db``, ``dw``, ``dlog_scale``, and ``z_kernel``
  beside the first hidden layer's bias), while every other regime now reads ``node``
  through its other state. A start for the reading in which regime ``node + 1``'s rows
  are the observational ones (``choose``'s swap starts)."""
  dec = dict(params["decoder"]["params"])
  for base, delta in (("b", "db"), ("w", "dw"), ("log_scale", "dlog_scale"),
                      ("bias_0", "z_kernel")):
    if base in dec and delta in dec:
      dec[base] = dec[base].at[node].add(dec[delta][node])
      dec[delta] = dec[delta].at[node].set(-dec[delta][node])
  pair = jnp.array([0, node + 1])
  logits = params["prior_logits"].at[pair].set(params["prior_logits"][pair[::-1]])
  return dict(params, decoder={"params": dec}, prior_logits=logits)


def sparse_from_structured(params, gate_logit: float):
  """Sparse-decoder parameters (K = N + 1) that hold a structured fit's model: the shared
  copy is its observational state, regime k's own copy its intervened state, and regime
  k's gate is open on node k - 1 only (at ``gate_logit``; shut elsewhere). With the
  gates at 0/1 both models give every row the same likelihood, so a sparse fit that
  starts here starts where the single-target latent it contains ended."""
  dec = params["decoder"]["params"]
  n = dec["b"].shape[0]
  has = lambda name: name in dec
  intervened = {"b": dec["b"] + dec["db"]}
  observed = {"b": dec["b"]}
  if has("w"):
    intervened["w"], observed["w"] = dec["w"] + dec["dw"], dec["w"]
  if has("log_scale"):
    intervened["log_scale"] = dec["log_scale"] + dec["dlog_scale"]
    observed["log_scale"] = dec["log_scale"]
  if has("z_kernel"):
    intervened["z_kernel"], observed["z_kernel"] = dec["z_kernel"], jnp.zeros_like(dec["z_kernel"])
  # copies: 0 shared, then regime 0 (changes nothing) .. regime N (changes node N - 1)
  per_regime = {name: jnp.concatenate([observed[name][None], observed[name][None],
                                       jnp.broadcast_to(intervened[name],
                                                        (n,) + intervened[name].shape)])
                for name in observed}
  shared = {name: a for name, a in dec.items() if name not in ("b", "db", "w", "dw", "log_scale",
                                                               "dlog_scale", "z_kernel")}
  gates = jnp.where(jnp.eye(n + 1, n, -1) > 0, gate_logit, -gate_logit)
  out = dict(params, decoder={"params": {**shared, **per_regime}}, gate_logits=gates)
  return out


def _standard_noise(key, shape, cfg: FitConfig):
  """Noise of the mechanisms' family with mean 0 and standard deviation 1."""
  if cfg.noise == "laplace":
    return jax.random.laplace(key, shape) / jnp.sqrt(2.0)
  if cfg.noise == "student_t":
    return jax.random.t(key, cfg.noise_dof, shape) * jnp.sqrt((cfg.noise_dof - 2) / cfg.noise_dof)
  return jax.random.normal(key, shape)
