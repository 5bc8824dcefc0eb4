"""Baselines beside the VAE: exact EM for the linear-Gaussian structured mixture, the
pooled and label-knowing oracle fits (``linear``), and a full-covariance Gaussian
mixture (``mixture``). Pure, jittable and vmappable over ``(key, x, adj)``."""
from vcm_jax.baselines.linear import (BaselineFit, EMResult, LinearMechanisms, StructuredLinear,
                                      cholesky, linear_em, oracle_fit, pooled_fit,
                                      regime_log_likelihoods, solve_spd, state_log_densities,
                                      structured_log_marginal, structured_posterior,
                                      weighted_least_squares)
from vcm_jax.baselines.mixture import GMMResult, gaussian_mixture, gmm_log_marginal, gmm_posterior
from vcm_jax.baselines.yardstick import compare, gaussian_mixture_yardstick
