"""A user's own data and graph: load and check, fit, report (DESIGN section 6).

``load`` reads and checks everything before the workdir is touched, so bad input
leaves no partial outputs. The fit is one run of the same trainer as the
synthetic experiments (a runs axis of size 1, so the driver's loop, checkpoints
and metrics are shared); ``report`` turns the fitted model into
``assignments.csv``, ``regimes.json``, ``metrics.json`` and plots, in the data's
own units.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from vcm_jax import elbo, graphs, identify, io, metrics, train


class OwnData(NamedTuple):
  names: list
  x: np.ndarray              # [S, N] float32, all rows, data units
  labels: np.ndarray | None  # [S] str
  adj: np.ndarray            # [N, N]
  train_rows: np.ndarray     # rows the model is fitted on
  test_rows: np.ndarray      # held-out rows (held-out log-likelihood, choice of K)


def min_rows(n_nodes: int) -> int:
  """Fewest rows a fit needs: a few per regime of the structured latent, and 20 in all."""
  return max(20, 2 * (n_nodes + 1))


def load(config) -> OwnData:
  """Read and check the data and graph named by ``config.data``; ``io.InputError`` if bad."""
  d = config.data
  if not d.path:
    raise io.InputError("no data file: set --config.data.path=FILE")
  if not d.graph:
    raise io.InputError("no graph file: set --config.data.graph=FILE")
  table = io.read_data(d.path, labels=d.labels or None)
  adj = io.read_graph(d.graph, table.names)
  s, n = table.values.shape
  if s < min_rows(n):
    raise io.InputError(f"data file {d.path} has {s} rows; {n} variables need at least "
                        f"{min_rows(n)}")
  perm = np.random.default_rng(config.seed).permutation(s)
  n_test = int(round(d.heldout_fraction * s))
  return OwnData(table.names, table.values.astype(np.float32), table.labels, adj,
                 np.sort(perm[n_test:]), np.sort(perm[:n_test]))


def fit_config(config, n_regimes: int | None = None) -> train.FitConfig:
  cfg = train.FitConfig.from_config(config.model, config.train)
  if n_regimes is not None:
    cfg = dataclasses.replace(cfg, n_regimes=n_regimes)
  return cfg


def default_k_candidates(n_nodes: int) -> list:
  """2, 3, 4, 6, 8, ... up to N + 1: roughly geometric, always including N + 1."""
  ks, k = [], 2
  while k < n_nodes + 1:
    ks.append(k)
    k = max(k + 1, int(round(k * 1.4)))
  return ks + [n_nodes + 1]


def choose_n_regimes(config, data: OwnData, max_parents: int) -> dict:
  """Free decoder with unknown K: fit each candidate on the training rows, keep the
  K with the best held-out ELBO (the exact ``log p(x)``, the ELBO at the exact
  posterior)."""
  idx, mask = graphs.parent_table(jnp.asarray(data.adj), max_parents)
  x_tr, x_te = jnp.asarray(data.x[data.train_rows]), jnp.asarray(data.x[data.test_rows])
  candidates = list(config.model.k_candidates) or default_k_candidates(len(data.names))
  scores = {}
  for k in candidates:
    cfg = fit_config(config, k)
    fit = train.make_fit(cfg, n_nodes=len(data.names), max_parents=max_parents)
    result = jax.jit(fit)(jax.random.key(config.seed), x_tr, idx, mask)
    scores[k] = float(train.data_log_marginal(fit.model, result, x_te, idx, mask).mean())
  best = max(scores, key=scores.get)
  return {"n_regimes": best, "heldout_elbo": {str(k): v for k, v in scores.items()}}


class Experiment(NamedTuple):
  trainer: train.Trainer
  setup: Any     # (key, x_train, parent_idx, parent_mask) -> TrainState
  evaluate: Any  # (TrainState, x_train, x_all, x_test, idx, mask) -> dict of arrays


def make_experiment(config, *, n_nodes: int, max_parents: int, n_regimes: int | None) -> Experiment:
  cfg = fit_config(config, n_regimes)
  trainer = train.make_trainer(cfg, n_nodes=n_nodes, max_parents=max_parents)
  model = trainer.model

  def evaluate(state, x_train, x_all, x_test, idx, mask):
    result = trainer.finish(state, train.standardized(state, x_train), idx, mask)
    posterior = train.data_posterior(model, result, x_all, idx, mask)
    mean, scale = train.regime_mechanisms(model, result, x_train, idx, mask)
    heldout = train.data_log_marginal(model, result, x_test, idx, mask)
    # Held-out ELBO with the encoder's q: log p(x) - KL(q || p(z | x)).
    xs_test = train.standardized(result, x_test)
    log_post = elbo.posterior_logits(
        model.regime_log_likelihoods(result.params, xs_test, idx, mask),
        model.log_prior(result.params))
    kl = elbo.kl_categorical(model.encoder.apply(result.params["encoder"], xs_test), log_post)
    return {"posterior": posterior, "mean": mean, "scale": scale,
            "params": result.params["decoder"]["params"], "loc": result.loc,
            "scale_std": result.scale, "train_elbo": result.train_elbo,
            "train_log_px": result.restart_log_px.max(),
            "heldout_loglik": heldout.mean(), "heldout_elbo": (heldout - kl).mean()}

  return Experiment(trainer, trainer.init, evaluate)


def _mechanism_params(params, node, *, regime=None, intervened=False):
  """Standardised-unit linear part ``(w [D] or None, b, log_scale)`` of one mechanism:
  structured (``intervened`` adds the deltas) or free (``regime`` picks the copy)."""
  pick = (lambda a: a[node]) if regime is None else (lambda a: a[regime, node])
  w = np.asarray(pick(params["w"])) if "w" in params else None
  b = float(pick(params["b"]))
  log_s = float(pick(params["log_scale"])) if "log_scale" in params else 0.0
  if intervened:
    b += float(params["db"][node])
    log_s += float(params["dlog_scale"][node]) if "dlog_scale" in params else 0.0
    w = None if w is None else w + np.asarray(params["dw"][node])
  return w, b, log_s


def _in_data_units(w, b, log_s, loc, std, node, parents, names):
  """A mechanism's linear part in data units: weights per parent, intercept, noise scale.

  The fit works on ``xs = (x - loc) / std``; undoing it for node j gives
  ``w'_i = std_j w_i / std_i`` and ``b' = loc_j + std_j b - sum_i w'_i loc_i``.
  """
  out = {}
  intercept = loc[node] + std[node] * b
  if w is not None:
    weights = {}
    for slot, parent in enumerate(parents):
      wp = std[node] * w[slot] / std[parent]
      weights[names[parent]] = float(wp)
      intercept -= wp * loc[parent]
    out["weights"] = weights
  out["intercept"] = float(intercept)
  out["noise_scale"] = float(std[node] * np.exp(log_s))
  return out


def regime_report(config, data: OwnData, ev: dict, *, structured: bool) -> dict:
  """Everything a person or a program reads about the regimes (``regimes.json``).

  Regime ids are renumbered so that 0 is the observational one (the free
  decoder's clusters come in no order); ``posterior`` is returned in that order.
  """
  names = data.names
  post = np.asarray(ev["posterior"], np.float64)
  mean, scale = np.asarray(ev["mean"], np.float64), np.asarray(ev["scale"], np.float64)
  k = post.shape[1]
  sizes = np.bincount(post.argmax(1), minlength=k)
  div = np.asarray(identify.mechanism_divergence(jnp.asarray(mean), jnp.asarray(scale)))
  if structured:
    obs, target_idx = 0, np.arange(k) - 1
  else:
    obs = int(identify.free_observational(jnp.asarray(div), jnp.asarray(sizes / sizes.sum(),
                                                                         jnp.float32)))
    target_idx = np.asarray(identify.free_targets(jnp.asarray(div), obs))
  order = np.array([obs] + [r for r in range(k) if r != obs])  # new id -> fitted category
  post, mean, scale, sizes = post[:, order], mean[order], scale[order], sizes[order]
  target_idx, div = target_idx[order], div[np.ix_(order, order)]
  assigned = post.argmax(1)
  params = jax.tree.map(np.asarray, ev["params"])
  loc, std = np.asarray(ev["loc"], np.float64), np.asarray(ev["scale_std"], np.float64)
  parent_ids = [list(np.flatnonzero(data.adj[:, j])) for j in range(len(names))]

  def state(node, category=None, intervened=False):
    w, b, log_s = _mechanism_params(params, node, regime=None if structured else category,
                                    intervened=intervened)
    out = _in_data_units(w, b, log_s, loc, std, node, parent_ids[node], names)
    if config.model.mechanism == "mlp":  # the MLP adds to the linear part: report it as a part
      out = {"noise_scale": out.pop("noise_scale"), "linear_part": out}
    return out

  # How each node moves in regime k against the observational regime, in units of
  # its observational spread: the marginal (descendants move too) and the
  # mechanism (parents held as observed: only the target moves).
  weights = post / np.maximum(post.sum(0), 1e-12)
  marg = weights.T @ data.x.astype(np.float64)
  obs_sd = np.sqrt(np.maximum(weights[:, 0] @ (data.x - marg[0]) ** 2, 1e-24))
  marginal_shift = (marg - marg[0]) / obs_sd
  mechanism_shift = (mean - mean[0]) / scale[0]
  regimes = []
  for r in range(k):
    t = int(target_idx[r]) if r else -1
    entry = {"id": r, "observational": r == 0, "target": names[t] if t >= 0 else None,
             "size": int(sizes[r]), "fraction": float(sizes[r] / len(assigned)),
             "expected_size": float(post[:, r].sum()), "empty": bool(sizes[r] == 0),
             "mean_probability": float(post[assigned == r, r].mean()) if sizes[r] else None,
             "marginal_shift": {n: float(v) for n, v in zip(names, marginal_shift[r])},
             "mechanism_shift": {n: float(v) for n, v in zip(names, mechanism_shift[r])}}
    if t >= 0:
      obs_state = state(t, order[0], False)
      int_state = state(t, order[r], structured)
      obs_state["mean"], int_state["mean"] = float(mean[0, t]), float(mean[r, t])
      entry["mechanism"] = {"node": names[t], "parents": [names[p] for p in parent_ids[t]],
                            "observational": obs_state, "intervened": int_state,
                            "mean_shift": float(mean[r, t] - mean[0, t]),
                            "noise_scale_ratio": float(scale[r, t] / scale[0, t])}
      if not structured:  # every node this cluster moves by more than half a noise scale
        entry["targets"] = [names[j] for j in np.flatnonzero(div[0, r] > 0.5)]
    regimes.append(entry)
  observational_mechanisms = {
      names[j]: dict(state(j, order[0]), parents=[names[p] for p in parent_ids[j]],
                     mean=float(mean[0, j])) for j in range(len(names))}
  report = {"decoder": config.model.decoder, "mechanism": config.model.mechanism,
            "n_regimes": k, "n_empty": int(np.sum(sizes == 0)), "nodes": names,
            "regimes": regimes, "observational_mechanisms": observational_mechanisms}
  extras = {"posterior": post, "assigned": assigned, "target_idx": target_idx,
            "marginal_shift": marginal_shift, "mechanism_shift": mechanism_shift}
  return report, extras


def label_metrics(data: OwnData, assigned: np.ndarray, target_idx: np.ndarray) -> dict:
  """ARI, NMI and target accuracy against the label column (all rows)."""
  _, true = np.unique(data.labels, return_inverse=True)
  k_true, k_pred = int(true.max()) + 1, int(max(assigned.max() + 1, len(target_idx)))
  out = {"ari": float(metrics.adjusted_rand_index(jnp.asarray(true), jnp.asarray(assigned),
                                                   k_true, k_pred)),
         "nmi": float(metrics.normalized_mutual_info(jnp.asarray(true), jnp.asarray(assigned),
                                                     k_true, k_pred))}
  true_targets = io.label_targets(data.labels, data.names)
  if true_targets is None:
    out["target_accuracy"] = None
    out["note"] = ("labels are neither node names (or 'observational') nor regime ids 0..N: "
                   "no target accuracy")
    return out
  pred_targets = np.asarray(target_idx)[assigned]
  pred_targets = np.where(assigned == 0, -1, pred_targets)
  out["target_accuracy"] = float(np.mean(pred_targets == true_targets))
  true_obs = true_targets == -1
  pred_obs = assigned == 0
  both = np.sum(true_obs & pred_obs)
  out["observational_identified"] = bool(both / max(true_obs.sum(), 1) > 0.5
                                         and both / max(pred_obs.sum(), 1) > 0.5)
  return out


def write_outputs(workdir: str, data: OwnData, report: dict, extras: dict) -> None:
  """``assignments.csv`` and ``regimes.json``, each written atomically."""
  targets = [data.names[t] if t >= 0 else "" for t in extras["target_idx"]]
  targets[0] = ""
  io.write_text_atomic(os.path.join(workdir, "assignments.csv"),
                       io.assignments_csv(extras["posterior"], targets))
  io.write_json_atomic(os.path.join(workdir, "regimes.json"), report)
