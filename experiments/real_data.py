"""Sachs in the comparison: every recipe, the baselines and a supervised reference line.

Every method fits all 5846 rows with the labels hidden and is scored in-sample
(as the notes and Mameche et al. do): ARI and AMI against the 6 regimes, and the
per-target AMI of Mameche et al. (for each inhibitor's regime, the AMI between its
one-vs-rest indicator and the assignment). ``vcm_own_data`` is the own-data default
(``configs/sachs.py``: the model chosen by ICL); the recipes run as on synthetic
data (K = N + 1). The supervised line (quadratic discriminant analysis with the
labels, 5-fold cross-validated) is no rival: a rough ceiling of what the 11
proteins can tell apart.
"""
from __future__ import annotations

import json
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging

from experiments import methods
from vcm_jax import baselines, evaluate, graphs, metrics, predict, train
from vcm_jax.datasets import load_sachs

GMM_K = tuple(range(2, 13))  # K tried by the GMM's BIC
# What the command takes (the comparison grid passes pooled and oracle too: skipped here,
# they need the true SCM or the labels)
KNOWN_METHODS = (*methods.RECIPES, "em", "gmm")


def _scores(labels, assigned) -> dict:
  per_target = evaluate.per_target_ami(labels, assigned)
  return {"ari": float(metrics.adjusted_rand_index(
              jnp.asarray(np.unique(labels, return_inverse=True)[1]), jnp.asarray(assigned),
              len(np.unique(labels)), int(assigned.max()) + 1)),
          "ami": metrics.adjusted_mutual_info(labels, assigned),
          "per_target_ami": float(np.mean(list(per_target.values()))),
          "n_regimes": int(len(np.unique(assigned)))}


def _recipe(name, key, x, adj):
  n = x.shape[1]
  max_parents = graphs.max_in_degree(adj)
  cfg = methods.recipe_config(name, n)
  trainer = train.make_trainer(cfg, n_nodes=n, max_parents=max_parents)
  idx, mask = graphs.parent_table(jnp.asarray(adj), max_parents)
  result = jax.jit(lambda k, a: train.fit_arrays(k, a, idx, mask, trainer=trainer))(key, x)
  return np.asarray(jnp.argmax(predict.posterior(trainer.model, result, x, idx, mask), -1))


def _gmm(key, x, k):
  fit = jax.jit(lambda kk, a: baselines.gaussian_mixture(kk, a, n_components=k))(key, x)
  s, d = x.shape
  n_params = k * (d + d * (d + 1) / 2) + k - 1
  bic = float(baselines.gmm_log_marginal(fit, x).sum()) - 0.5 * np.log(s) * n_params
  return np.asarray(fit.posterior.argmax(-1)), bic


def _qda_cross_validated(key, x, labels, folds: int = 5) -> np.ndarray:
  """Out-of-fold predictions of quadratic discriminant analysis (class Gaussians)."""
  x = np.asarray(x, np.float64)
  classes, y = np.unique(labels, return_inverse=True)
  fold = np.asarray(jax.random.permutation(key, len(x))) % folds
  pred = np.empty(len(x), int)
  for f in range(folds):
    tr, te = fold != f, fold == f
    scores = []
    for c in range(len(classes)):
      xc = x[tr & (y == c)]
      cov = np.cov(xc.T) + 1e-6 * np.eye(x.shape[1])
      diff = x[te] - xc.mean(0)
      _, logdet = np.linalg.slogdet(cov)
      maha = np.einsum("sd,sd->s", diff @ np.linalg.inv(cov), diff)
      scores.append(np.log(len(xc) / tr.sum()) - 0.5 * (logdet + maha))
    pred[te] = np.argmax(scores, 0)
  return pred


def sachs_rows(names, seed: int, own_data_metrics: dict | None = None,
               gmm_k: tuple = GMM_K) -> list[dict]:
  """One row per method (``names``: recipes, ``em``, ``gmm``), plus ``gmm_bic``, the
  own-data default when its metrics are given, and the supervised reference."""
  data = load_sachs()
  x, labels, adj = jnp.asarray(data.values), np.asarray(data.labels), np.asarray(data.adjacency)
  key = jax.random.key(seed)
  rows = []
  if own_data_metrics is not None:
    lab = own_data_metrics["summary"]["labels"]
    chosen = own_data_metrics["summary"].get("model_selection", {}).get("chosen", {})
    rows.append({"method": "vcm_own_data", "ari": lab["ari"], "ami": lab["ami"],
                 "per_target_ami": float(np.mean(list(lab["per_target_ami"].values()))),
                 "n_regimes": own_data_metrics["summary"]["n_regimes"]
                 - own_data_metrics["summary"]["n_empty_regimes"], "note": str(chosen)})
  for name in names:
    if name in methods.RECIPES:
      assigned = _recipe(name, key, x, adj)
    elif name == "em":
      fit = jax.jit(lambda k, a: baselines.linear_em(k, a, jnp.asarray(adj, jnp.float32)))(key, x)
      assigned = np.asarray(baselines.structured_posterior(fit.params, x).argmax(-1))
    elif name == "gmm":
      assigned = _gmm(key, x, 6)[0]
      name = "gmm_6"
    else:
      continue  # pooled and oracle need the true SCM or labels
    rows.append(dict(method=name, **_scores(labels, assigned)))
    logging.info("sachs %-22s %s", name, rows[-1])
  if "gmm" in names:
    fits = {k: _gmm(key, x, k) for k in gmm_k}
    k_best = max(fits, key=lambda k: fits[k][1])
    rows.append(dict(method="gmm_bic", note=f"K = {k_best} by BIC over {min(gmm_k)}..{max(gmm_k)}",
                     **_scores(labels, fits[k_best][0])))
  rows.append(dict(method="supervised_qda_cv", note="labels used: a reference, not a rival",
                   **_scores(labels, _qda_cross_validated(key, x, labels))))
  return rows


def markdown(rows) -> list[str]:
  md = ["", "## Sachs (real data: 5846 cells, 11 proteins, 6 regimes, in-sample)", "",
        "ARI and AMI against the regime labels; per-target AMI: the mean over the five "
        "inhibitors of the AMI between the regime's one-vs-rest indicator and the assignment "
        "(Mameche et al. 2025). No Bayes ceiling exists for real data; the supervised line "
        "is a reference.", "",
        "| method | ARI | AMI | per-target AMI | regimes | note |",
        "| --- | --- | --- | --- | --- | --- |"]
  for r in rows:
    md.append(f"| {r['method']} | {r['ari']:.3f} | {r['ami']:.3f} | {r['per_target_ami']:.3f} "
              f"| {r['n_regimes']} | {r.get('note', '')} |")
  return md


def run_sachs(config, workdir: str, names) -> list[str]:
  """The Sachs rows (kept in ``workdir/sachs.json``: a rerun reuses them), as markdown."""
  path = os.path.join(workdir, "sachs.json")
  if os.path.exists(path):
    with open(path) as f:
      return markdown(json.load(f))
  from configs import sachs as sachs_config
  from experiments import own_data

  own_dir = os.path.join(workdir, "sachs_own_data")
  own = sachs_config.get_config()
  own.seed, own.plots = config.seed, False
  metrics_path = os.path.join(own_dir, "metrics.json")
  if not os.path.exists(metrics_path):
    own_data.run(own, own_dir)
  with open(metrics_path) as f:
    own_metrics = json.load(f)
  rows = sachs_rows(names, config.seed, own_metrics)
  with open(path, "w") as f:
    json.dump(rows, f, indent=1)
  return markdown(rows)


def main(argv):
  """``python -m experiments.real_data --workdir=DIR [--methods=vcm,paper,...] [--seed=1]``:
  the Sachs rows alone (the comparison grid writes the same under its report)."""
  from absl import flags

  import experiments

  del argv
  experiments.configure_jax()
  f = flags.FLAGS
  experiments.names_known(f.methods, KNOWN_METHODS, "methods")
  experiments.seeds_of([f.seed], "seed")
  os.makedirs(f.workdir, exist_ok=True)
  lines = run_sachs(ml_collections.ConfigDict({"seed": f.seed}), f.workdir, f.methods)
  with open(os.path.join(f.workdir, "report.md"), "w") as out:
    out.write("\n".join(lines) + "\n")
  print("\n".join(lines))


if __name__ == "__main__":
  from absl import flags

  import experiments
  from configs import recipes

  flags.DEFINE_string("workdir", None, "Where sachs.json and report.md go.", required=True)
  flags.DEFINE_list("methods", ["vcm", "paper", "paper_relaxed", "reference", "em", "gmm"],
                    f"Methods: recipes ({', '.join(recipes.RECIPES)}), em, gmm.")
  flags.DEFINE_integer("seed", 1, "Seed of every fit (the report seed).")
  experiments.run_main(main)
