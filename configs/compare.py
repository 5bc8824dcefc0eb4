"""Comparison grid: every method and the Bayes ceiling on the same data.

  python -m experiments.compare --config=configs/compare.py --workdir=DIR

Nine settings, each a set of overrides of configs/er.py's ``scm`` group, that
cover every axis (shift 10/4/2; linear, tanh-MLP and random-Fourier mechanisms;
gauss/laplace noise; mean/variance/both interventions; N = 10/30), 10 vmapped
seeds each, on report seeds (seed 1) that no default was tuned on.
"""
import ml_collections

from configs import recipes


def get_config():
  c = ml_collections.ConfigDict()
  # Seed split: the defaults of every recipe were chosen on seed 0 (development,
  # `--config.seed=0`); the report runs on seed 1, whose graphs, SCMs and data no
  # choice has seen.
  c.seed = 1
  c.num_seeds = 10
  c.methods = ",".join(recipes.METHODS)
  # The one-choice ablations of vcm run on these settings only (the 40-minute budget;
  # the nonlinear setting is where the choices differ most).
  c.ablation_settings = "mlp_shift4"
  c.n_train = 10000
  c.n_test = 2000
  c.max_steps = 0  # > 0 caps every recipe's steps (smoke tests); 0 runs each as written
  c.plots = True
  # Real data rows of the report (experiments/real_data.py): Sachs, every method beside
  # the own-data default (configs/sachs.py) and a supervised reference; "" skips them.
  c.real_data = "sachs"
  base = dict(noise_low=0.5, noise_high=1.5, shift=4.0)
  c.settings = ml_collections.ConfigDict({
      # The paper's own setting: shift 10, unit noise.
      "shift10": dict(shift=10.0, noise_low=1.0, noise_high=1.0),
      "shift4": dict(base),
      "shift2": dict(base, shift=2.0),
      "mlp_shift4": dict(base, mechanism="mlp", edge_prob=0.3),
      # Smooth random functions outside the decoder's family (Fourier features of a GP,
      # not tanh units): where a linear fit falls below the ceiling.
      "fourier_shift4": dict(base, mechanism="fourier", edge_prob=0.3),
      "laplace_shift4": dict(base, noise="laplace"),
      "variance": dict(base, intervention="variance", shift=0.0),
      "both_shift2": dict(base, intervention="both", shift=2.0),
      "n30_shift4": dict(base, n_nodes=30),
  })
  return c
