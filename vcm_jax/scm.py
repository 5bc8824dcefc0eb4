"""Additive-noise SCMs with single-node soft interventions (DESIGN section 3).

Mechanisms are linear (the paper), random one-hidden-layer tanh MLPs of the
parents (the decoder's own family), or random smooth functions outside it: random
Fourier features (an approximate draw from a Gaussian process with a
squared-exponential kernel) added to a linear part.

Everything is a pure function of a PRNG key and arrays, so ``jax.vmap`` gives
many graphs and SCMs at once. The true per-regime log-density and the exact
regime posterior give the Bayes ceiling.
"""
from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from vcm_jax import densities, elbo, graphs, inputs


class MLPMechanisms(NamedTuple):
  """Nonlinear part of every mechanism: ``sum_h out[j, h] act(sum_i x_i w_in[i, j, h] + b_in[j, h])``,
  with ``act`` tanh (``SCM.mlp``) or cos (``SCM.fourier``: random Fourier features).

  ``w_in`` is zero off the graph, so node j reads only its parents.
  """
  w_in: jax.Array   # [N, N, H]
  b_in: jax.Array   # [N, H]
  out: jax.Array    # [N, H]


class SCM(NamedTuple):
  """Parameters of an additive-noise SCM and its N single-node interventions.

  ``x_j = bias_j + sum_i weights[i, j] x_i [+ mlp_j(pa_j)] + noise_scale_j eps_j``
  in the observational state; the intervened state of node j adds ``shift_j`` to
  the mean and multiplies the noise scale by ``int_scale_j``. Regime 0 is
  observational, regime ``k >= 1`` intervenes on node ``k - 1``. ``mlp`` and
  ``fourier`` are ``None`` unless the mechanisms have that nonlinear part.
  """
  adj: jax.Array          # [N, N] 0/1, adj[i, j] = 1 for i -> j
  weights: jax.Array      # [N, N], zero off the graph
  bias: jax.Array         # [N]
  noise_scale: jax.Array  # [N]
  shift: jax.Array        # [N] mean shift of each node's intervened state
  int_scale: jax.Array    # [N] noise-scale factor of the intervened state
  regime_probs: jax.Array  # [N + 1]
  mlp: MLPMechanisms | None = None
  fourier: MLPMechanisms | None = None



def mechanism_means(scm: SCM, x: jax.Array) -> jax.Array:
  """Observational mean of every node given the values ``x: [S, N]`` of its parents."""
  mean = scm.bias + x @ scm.weights
  for part, act in ((scm.mlp, jnp.tanh), (scm.fourier, jnp.cos)):
    if part is not None:
      pre = jnp.einsum("si,ijh->sjh", x, part.w_in) + part.b_in
      mean = mean + jnp.einsum("sjh,jh->sj", act(pre), part.out)
  return mean


def _signed_uniform(key, shape, low, high):
  """Uniform on ``[-high, -low] U [low, high]``."""
  k_mag, k_sign = jax.random.split(key)
  mag = jax.random.uniform(k_mag, shape, minval=low, maxval=high)
  return jnp.where(jax.random.bernoulli(k_sign, 0.5, shape), mag, -mag)


def sample_linear_scm(key: jax.Array, adj: jax.Array, *, shift=10.0, noise_low=1.0,
                      noise_high=1.0, obs_fraction=0.2, intervention: str = "mean",
                      variance_factor=3.0, weight_low=0.1, weight_high=1.0) -> SCM:
  """Random linear SCM on ``adj`` with one soft intervention per node.

  Args:
    key: PRNG key.
    adj: ``[N, N]`` DAG adjacency.
    shift: mean shift; node j's is ``shift + U(+-[0.1, 1])``.
    noise_low, noise_high: observational noise scales ``~ U(noise_low, noise_high)``.
    obs_fraction: probability of the observational regime; the rest is uniform
      over the N interventions.
    intervention: ``mean`` (shift), ``variance`` (noise scale x variance_factor)
      or ``both``. Static.
    variance_factor: noise-scale factor of a variance intervention.
    weight_low, weight_high: ``|w_ij| ~ U(weight_low, weight_high)``, random sign.
  """
  if intervention not in ("mean", "variance", "both"):
    raise ValueError(f"unknown intervention {intervention!r}; expected mean, variance or both")
  graphs.check_concrete_dag(adj)  # (a cycle has no fixed point for sample_data to reach)
  inputs.check_probability("obs_fraction", obs_fraction)
  # The regime weights outside the program: from Python numbers, in double precision.
  n = adj.shape[-1]
  probs = jnp.concatenate([jnp.full((1,), obs_fraction), jnp.full((n,), (1.0 - obs_fraction) / n)])
  return _linear_scm(key, adj, shift, noise_low, noise_high, probs, variance_factor,
                     weight_low, weight_high, intervention)


# One compiled program (op by op, each of some 30 small operations was compiled alone);
# the numbers are arguments, so a sweep over them compiles nothing more.
@functools.partial(jax.jit, static_argnums=9)
def _linear_scm(key, adj, shift, noise_low, noise_high, probs, variance_factor,
                weight_low, weight_high, intervention: str) -> SCM:
  n = adj.shape[-1]
  k_w, k_s, k_n = jax.random.split(key, 3)
  weights = adj * _signed_uniform(k_w, (n, n), weight_low, weight_high)
  noise_scale = jax.random.uniform(k_n, (n,), minval=noise_low, maxval=noise_high)
  shifts = shift + _signed_uniform(k_s, (n,), 0.1, 1.0)
  use_mean = intervention in ("mean", "both")
  use_var = intervention in ("variance", "both")
  return SCM(
      adj=adj, weights=weights, bias=jnp.zeros(n),
      noise_scale=noise_scale,
      shift=shifts if use_mean else jnp.zeros(n),
      int_scale=jnp.full((n,), variance_factor, jnp.float32) if use_var else jnp.ones(n),
      regime_probs=probs)


def sample_mlp_scm(key: jax.Array, adj: jax.Array, *, hidden: int = 4, input_low=0.5,
                   input_high=2.0, output_low=1.0, output_high=3.0, **kwargs) -> SCM:
  """Random SCM with nonlinear mechanisms on ``adj``: each node's mean is a random
  one-hidden-layer tanh MLP of its parents (no linear part), ``hidden`` units.

  Input weights ``|w| ~ U(input_low, input_high) / sqrt(in-degree)`` and output
  weights ``|a| ~ U(output_low, output_high)`` (random signs) make the mechanisms
  clearly nonlinear over the range the parents take (a linear fit explains only
  part of them); interventions, noise and regime weights as ``sample_linear_scm``
  (``**kwargs``).
  """
  k_lin, k_in, k_b, k_out = jax.random.split(key, 4)
  base = sample_linear_scm(k_lin, adj, **kwargs)
  n = adj.shape[-1]
  fan_in = jnp.maximum(adj.sum(0), 1.0)  # [N] in-degree of each node
  w_in = adj[:, :, None] * _signed_uniform(k_in, (n, n, hidden), input_low, input_high) \
      / jnp.sqrt(fan_in)[None, :, None]
  b_in = jax.random.uniform(k_b, (n, hidden), minval=-1.0, maxval=1.0)
  out = _signed_uniform(k_out, (n, hidden), output_low, output_high)
  # Roots have no parents: their MLP is a constant, which the zero bias absorbs.
  out = out * (adj.sum(0) > 0)[:, None]
  return base._replace(weights=jnp.zeros_like(base.weights), mlp=MLPMechanisms(w_in, b_in, out))


def sample_fourier_scm(key: jax.Array, adj: jax.Array, *, features: int = 16,
                       lengthscale=1.5, amplitude=2.0, **kwargs) -> SCM:
  """Random SCM whose mechanisms are smooth functions the decoder does not share.

  Each node's mean is its linear part (as ``sample_linear_scm``) plus a random
  Fourier-feature draw from a Gaussian process over its parents,
  ``sqrt(2 / F) sum_f a_f cos(w_f . pa + b_f)``, ``w_f ~ N(0, I / lengthscale^2)``
  (data units, divided by sqrt(in-degree)), ``b_f ~ U(0, 2 pi)``,
  ``a_f ~ N(0, amplitude^2)``: a cosine basis, not the decoder's tanh MLP, with a
  nonlinear part of standard deviation ``amplitude`` that a linear fit cannot explain.
  """
  k_lin, k_in, k_b, k_out = jax.random.split(key, 4)
  base = sample_linear_scm(k_lin, adj, **kwargs)
  n = adj.shape[-1]
  fan_in = jnp.maximum(adj.sum(0), 1.0)
  w_in = adj[:, :, None] * jax.random.normal(k_in, (n, n, features)) \
      / (lengthscale * jnp.sqrt(fan_in)[None, :, None])
  b_in = jax.random.uniform(k_b, (n, features), maxval=2 * jnp.pi)
  out = amplitude * jnp.sqrt(2.0 / features) * jax.random.normal(k_out, (n, features))
  out = out * (adj.sum(0) > 0)[:, None]  # roots: no parents, no nonlinear part
  return base._replace(fourier=MLPMechanisms(w_in, b_in, out))


def sample_scm(key: jax.Array, adj: jax.Array, *, mechanism: str = "linear", hidden: int = 4,
               **kwargs) -> SCM:
  """``sample_linear_scm``, ``sample_mlp_scm`` (``hidden`` units) or
  ``sample_fourier_scm`` (``4 * hidden`` features) by name (static ``mechanism``)."""
  if mechanism == "linear":
    return sample_linear_scm(key, adj, **kwargs)
  if mechanism == "mlp":
    return sample_mlp_scm(key, adj, hidden=hidden, **kwargs)
  if mechanism == "fourier":
    return sample_fourier_scm(key, adj, features=4 * hidden, **kwargs)
  raise ValueError(f"unknown mechanism {mechanism!r}; expected linear, mlp or fourier")


def sample_regimes(key: jax.Array, regime_probs: jax.Array, n_samples: int) -> jax.Array:
  """``[S]`` int32 regime labels drawn i.i.d. from ``regime_probs``."""
  return jax.random.categorical(key, jnp.log(regime_probs), shape=(n_samples,)).astype(jnp.int32)


def _standard_noise(key, shape, noise: str):
  if noise == "gauss":
    return jax.random.normal(key, shape)
  if noise == "laplace":  # unit variance
    return jax.random.laplace(key, shape) / jnp.sqrt(2.0)
  raise ValueError(f"unknown noise {noise!r}; expected gauss or laplace")


def sample_data(key: jax.Array, scm: SCM, n_samples: int, *, noise: str = "gauss",
                regimes: jax.Array | None = None,
                n_passes: int | None = None) -> tuple[jax.Array, jax.Array]:
  """Samples from the pooled regimes.

  ``x = u + x W`` is solved by N passes of that map: a DAG's W is nilpotent,
  so the fixed point ``u (I - W)^-1`` is reached exactly after N passes (matmuls
  only, no LAPACK call: cheap under ``vmap`` and on accelerators). ``n_passes``
  (static) may be lowered to the DAG's longest path + 1 for large sparse graphs.

  ``regimes``: ``[S]`` ids in ``0..N`` (0 observational, k >= 1 intervenes on node
  k - 1), instead of drawing them; concrete ones out of that range, or a negative
  ``n_samples``, are a ``ValueError`` (traced ones cannot be checked: an id out of range
  draws from the observational state).

  Returns:
    x: ``[S, N]`` samples; regimes: ``[S]`` their true regimes.
  """
  n = scm.adj.shape[-1]
  if regimes is None and not (inputs.is_integer(n_samples) and int(n_samples) >= 0):
    raise ValueError(f"n_samples={n_samples!r} must be an integer >= 0")
  if regimes is not None and not isinstance(regimes, jax.core.Tracer):
    bad = np.flatnonzero((np.asarray(regimes) < 0) | (np.asarray(regimes) > n))
    if bad.size:
      raise ValueError(f"regimes[{bad[0]}] = {np.asarray(regimes)[bad[0]]} is not a regime id "
                       f"of this SCM (0..{n}: 0 observational, k intervenes on node k - 1)")
  regimes, hit, eps = _draws(key, scm.regime_probs, regimes,
                             None if regimes is not None else int(n_samples), n, noise)
  scale = scm.noise_scale * jnp.where(hit > 0, scm.int_scale, 1.0)
  u = hit * scm.shift + scale * eps  # the bias comes in through mechanism_means
  x = jax.lax.fori_loop(0, n if n_passes is None else n_passes,
                        lambda _, x: u + mechanism_means(scm, x), u)
  return x, regimes


# The random draws as one compiled program (op by op, each of their small operations was
# compiled alone: a test's or a script's concrete call paid for that). The arithmetic
# after them stays outside it: compiled together, ``scale * eps + shift`` may become one
# fused multiply-add, and the data would move in their last bits.
@functools.partial(jax.jit, static_argnums=(3, 4, 5))
def _draws(key, regime_probs, regimes, n_samples, n: int, noise: str):
  k_r, k_e = jax.random.split(key)
  if regimes is None:
    regimes = sample_regimes(k_r, regime_probs, n_samples)
  hit = jax.nn.one_hot(regimes - 1, n)  # row of zeros for the observational regime
  return regimes, hit, _standard_noise(k_e, (regimes.shape[0], n), noise)


def state_log_densities(scm: SCM, x: jax.Array, *, noise: str = "gauss"):
  """True ``log p(x_j | pa_j)`` in both states: ``(l_obs, l_int)``, each ``[S, N]``."""
  x = jnp.asarray(x)
  if x.shape[-1:] != scm.adj.shape[-1:]:  # (shapes are static: checked under jit too)
    raise ValueError(f"x has {x.shape[-1] if x.ndim else 0} columns; this SCM has "
                     f"{scm.adj.shape[-1]} nodes")
  mean = mechanism_means(scm, x)

  logpdf = densities.log_density(noise)
  log_scale = jnp.log(scm.noise_scale)
  l_obs = logpdf(x, mean, log_scale)
  l_int = logpdf(x, mean + scm.shift, log_scale + jnp.log(scm.int_scale))
  return l_obs, l_int


def regime_log_likelihoods(scm: SCM, x: jax.Array, *, noise: str = "gauss") -> jax.Array:
  """True ``log p(x | regime = k)``, ``[S, N + 1]``."""
  return elbo.structured_log_likelihoods(*state_log_densities(scm, x, noise=noise))


def true_log_marginal(scm: SCM, x: jax.Array, *, noise: str = "gauss") -> jax.Array:
  """True ``log p(x)`` of the pooled data, ``[S]``."""
  return elbo.log_marginal(regime_log_likelihoods(scm, x, noise=noise), jnp.log(scm.regime_probs))


def true_posterior(scm: SCM, x: jax.Array, *, noise: str = "gauss") -> jax.Array:
  """Exact regime posterior under the true SCM, ``[S, N + 1]`` probabilities."""
  logits = elbo.posterior_logits(regime_log_likelihoods(scm, x, noise=noise),
                                 jnp.log(scm.regime_probs))
  return jnp.exp(logits)


def implied_covariance(scm: SCM) -> jax.Array:
  """Observational covariance ``(I - W)^-T diag(sigma^2) (I - W)^-1`` (linear SCMs only)."""
  n = scm.adj.shape[-1]
  inv = jnp.linalg.inv(jnp.eye(n) - scm.weights)
  return inv.T @ jnp.diag(scm.noise_scale ** 2) @ inv
