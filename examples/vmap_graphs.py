"""Fit 8 random graphs in one vmapped call and print each ARI beside its Bayes ceiling.

  python examples/vmap_graphs.py [--nodes=8 --samples=5000 --steps=400]
"""
import argparse
import functools

import jax
import numpy as np

import vcm_jax
from vcm_jax import evaluate, graphs, metrics, scm


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--graphs", type=int, default=8)
  parser.add_argument("--nodes", type=int, default=8)
  parser.add_argument("--samples", type=int, default=5000)
  parser.add_argument("--steps", type=int, default=400)
  args = parser.parse_args()
  n = args.nodes

  def problem(key):  # graph -> SCM -> training and held-out data, all jittable
    k_g, k_s, k_x, k_t = jax.random.split(key, 4)
    adj = graphs.sample_er_dag(k_g, n_nodes=n, edge_prob=0.3)
    true = scm.sample_linear_scm(k_s, adj, shift=4.0, noise_low=0.5, noise_high=1.5)
    return adj, true, scm.sample_data(k_x, true, args.samples), scm.sample_data(k_t, true, 2000)

  keys = jax.random.split(jax.random.key(0), args.graphs)
  adjs, trues, (xs, _), (x_test, r_test) = jax.jit(jax.vmap(problem))(keys)
  config = vcm_jax.FitConfig(num_steps=args.steps)
  fit_one = functools.partial(vcm_jax.fit_graph, config=config,
                              max_parents=max(graphs.max_in_degree(adjs), 1))

  @jax.jit
  def fit_and_score(key, x, adj, true, x_t, r_t):
    fit = fit_one(key, x, adj)
    ari = metrics.adjusted_rand_index(r_t, fit.assign(x_t), n + 1)
    return ari, evaluate.bayes_ceiling(true, x_t, r_t)["bayes_ari"]

  aris, ceilings = jax.vmap(fit_and_score)(keys, xs, adjs, trues, x_test, r_test)
  for g, (a, c) in enumerate(zip(np.asarray(aris), np.asarray(ceilings))):
    print(f"graph {g}: {int(adjs[g].sum()):2d} edges  ARI {a:.3f}  ceiling {c:.3f}  ratio {a / c:.3f}")
  print(f"mean ARI {aris.mean():.3f} against a mean ceiling of {ceilings.mean():.3f}")


if __name__ == "__main__":
  main()
