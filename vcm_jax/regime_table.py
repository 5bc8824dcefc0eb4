"""The regime table: what a person or a program reads about a fit's regimes, in data units.

``regime_table(fit, x_fit, x_all, names)`` (host-side, NumPy) renumbers the regimes
so that 0 is the observational one (the free decoder's clusters come in no
order) and describes each: its targets, size, confidence, how it moves every
node, and its target's mechanism in both states. ``regimes.json`` is this table.
"""
from __future__ import annotations

import jax
import numpy as np

from vcm_jax import graphs, identifiability, rows


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


def regime_table(fit, x_fit, x_all, names, *, misfit_confirmed: bool = True,
                 shared_misfit=None) -> tuple[dict, dict]:
  """The report of a ``vcm_jax.Fit`` and the arrays behind it.

  Memory beyond the data: one ``[S, K]`` float32 posterior and ``[K, N]`` tables;
  the rows are scored and summed in blocks (never ``[S, K, N]``).

  Args:
    fit: a ``vcm_jax.Fit``.
    x_fit: ``[S_fit, N]`` the rows it was fitted on (mechanisms are averaged over them).
    x_all: ``[S, N]`` every row to assign (NumPy is best: it goes to the device a block
      at a time).
    names: the N node names.
    misfit_confirmed: whether the shared-mechanism misfit counts as a change in the
      verdict (``choose.ModelChoice.misfit_confirmed``).
    shared_misfit: ``[K, N]`` the check's flags of this fit on ``x_fit`` where already
      computed (the model choice's); None: computed here.

  Returns:
    ``(report, extras)``: ``report`` is ``regimes.json``; ``extras`` holds
    ``posterior [S, K]`` (float32), ``assigned [S]``, ``probability [S]`` (the
    posterior of the assigned regime), ``target_idx [K]`` (-1 for regime 0),
    ``marginal_shift`` and ``mechanism_shift [K, N]``, all in the new order, and
    ``order`` (new id -> the fit's regime).
  """
  model, result = fit.model, fit.result
  structured = model.structured
  k = fit.n_regimes
  # Means for the report; the verdict compares the regimes row by row (the divergence).
  mean, scale, divergence = identifiability.mechanisms_of_fit(fit, x_fit)
  ident = jax.tree.map(np.asarray, fit.identification)
  obs = int(ident.observational)
  order = np.array([obs] + [r for r in range(k) if r != obs])  # new id -> fitted regime
  mean, scale, divergence = mean[order], scale[order], divergence[order][:, order]
  target_idx, changed = ident.target[order], ident.changed[order]
  target_idx[0] = -1
  post = posterior_in_order(fit, x_all, order)
  assigned = post.argmax(1)
  probability = post[np.arange(len(post)), assigned]
  sizes = np.bincount(assigned, minlength=k)
  expected_sizes = post.sum(0, dtype=np.float64)
  mean_probability = np.bincount(assigned, weights=probability, minlength=k) / np.maximum(sizes, 1)
  params = jax.tree.map(np.asarray, result.params["decoder"]["params"])
  loc, std = np.asarray(result.loc, np.float64), np.asarray(result.scale, np.float64)
  idx, mask = np.asarray(fit.parent_idx), np.asarray(fit.parent_mask)
  parent_ids = [[int(i) for i, m in zip(idx[j], mask[j]) if m] for j in range(len(names))]

  gates_on = np.asarray(model.gates_on(result.params)) if model.sparse else None

  def copy_of(regime, node):  # which of the decoder's copies holds a regime's mechanism
    if structured:
      return None
    if gates_on is not None:  # sparse: copy 0 is shared, copy r + 1 regime r's own
      return int(regime) + 1 if gates_on[regime, node] else 0
    return regime

  def state(node, regime=None, intervened=False):
    w, b, log_s = _mechanism_params(params, node, regime=copy_of(regime, node),
                                    intervened=intervened)
    out = _in_data_units(w, b, log_s, loc, std, node, parent_ids[node], names)
    if model.cfg.mechanism == "mlp":  # the MLP adds to the linear part: report it as a part
      out = {"noise_scale": out.pop("noise_scale"), "linear_part": out}
    return out

  # How each node moves in regime k against the observational regime, in units of
  # its observational spread: the marginal (descendants move too) and the
  # mechanism (parents held as observed: only the targets move).
  marginal_shift = _marginal_shift(post, x_all, expected_sizes)
  mechanism_shift = (mean - mean[0]) / scale[0]
  regimes = []
  for r in range(k):
    t = int(target_idx[r])
    entry = {"id": r, "observational": r == 0, "target": names[t] if t >= 0 else None,
             "targets": [names[j] for j in np.flatnonzero(changed[r])],
             "size": int(sizes[r]), "fraction": float(sizes[r] / len(assigned)),
             "expected_size": float(expected_sizes[r]), "empty": bool(sizes[r] == 0),
             "mean_probability": float(mean_probability[r]) if sizes[r] else None,
             "marginal_shift": {n: float(v) for n, v in zip(names, marginal_shift[r])},
             "mechanism_shift": {n: float(v) for n, v in zip(names, mechanism_shift[r])}}
    if t >= 0:
      obs_state, int_state = state(t, order[0]), state(t, order[r], structured)
      obs_state["mean"], int_state["mean"] = float(mean[0, t]), float(mean[r, t])
      entry["mechanism"] = {"node": names[t], "parents": [names[p] for p in parent_ids[t]],
                            "observational": obs_state, "intervened": int_state,
                            "mean_shift": float(mean[r, t] - mean[0, t]),
                            "noise_scale_ratio": float(scale[r, t] / scale[0, t])}
    regimes.append(entry)
  observational_mechanisms = {
      names[j]: dict(state(j, order[0]), parents=[names[p] for p in parent_ids[j]],
                     mean=float(mean[0, j])) for j in range(len(names))}
  misfit = identifiability.shared_misfit(fit, x_fit) if shared_misfit is None else shared_misfit
  misfit = None if misfit is None else np.asarray(misfit)[order]  # fitted order: renumbered
  verdict = identifiability.verdict(divergence, sizes, graphs.table_adjacency(idx, mask), names,
                                    shared_misfit=misfit, misfit_confirmed=misfit_confirmed)
  report = {"decoder": model.cfg.decoder, "mechanism": model.cfg.mechanism,
            "n_regimes": k, "n_empty": int(np.sum(sizes == 0)), "nodes": list(names),
            "identifiability": verdict,
            "regimes": regimes, "observational_mechanisms": observational_mechanisms}
  extras = {"posterior": post, "assigned": assigned, "probability": probability,
            "target_idx": target_idx, "marginal_shift": marginal_shift,
            "mechanism_shift": mechanism_shift, "order": order}
  return report, extras


def posterior_in_order(fit, x, order, *, block: int = 65536) -> np.ndarray:
  """``fit.posterior(x)[:, order]`` as one float32 ``[S, K]`` NumPy array, filled a row
  block at a time (the device never holds more than a block; no second copy)."""
  # The fit's own posterior program (compiled once per model and shape, its parameters
  # arguments), reordered on the host: a program of its own here, with the parameters
  # closed over as constants, was compiled afresh for every fit.
  order = np.asarray(order)
  post = np.empty((x.shape[0], len(order)), np.float32)
  for start, p in rows.host_blocks(fit.posterior, x, block=block):
    post[start:start + len(p)] = p[:, order]
  return post


def _marginal_shift(post, x, weight_sums, *, block: int = 65536) -> np.ndarray:
  """``[K, N]``: each regime's posterior-weighted mean of ``x`` minus regime 0's, in units
  of regime 0's weighted standard deviation; float64 sums over row blocks."""
  k, n = post.shape[1], x.shape[1]
  sums = np.zeros((k, n))
  for start in range(0, len(x), block):
    p = post[start:start + block].astype(np.float64)
    sums += p.T @ np.asarray(x[start:start + block], np.float64)
  marg = sums / np.maximum(weight_sums, 1e-12)[:, None]
  spread = np.zeros(n)
  for start in range(0, len(x), block):  # a second pass: deviations from the mean, no cancellation
    w0 = post[start:start + block, 0].astype(np.float64)
    spread += w0 @ (np.asarray(x[start:start + block], np.float64) - marg[0]) ** 2
  obs_sd = np.sqrt(np.maximum(spread / max(weight_sums[0], 1e-12), 1e-24))
  return (marg - marg[0]) / obs_sd
