"""What a run checks about its data and its fit, said in one line each (warnings).

A fit that went wrong must not read as a result: the default (``choose.fit_default``)
gathers these lines on its ``ModelChoice.warnings``; ``vcm_jax.fit`` issues them as
Python warnings and keeps them on ``Fit.warnings``; the own-data command logs them and
writes them to ``metrics.json``. Host-level NumPy on small arrays.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from vcm_jax import units

# A column is a point mass worth saying so when one value holds this share of its rows.
POINT_MASS_SHARE = 0.5
# The gross-error term flags rows; a share this many times its prior's is a warning.
GROSS_ERROR_EXCESS = 3.0


def _name(names, j) -> str:
  return f"column {j}" if names is None else f"column {j} ({names[j]!r})"


def _most_common(column) -> tuple[float, float]:
  """The value that most rows of ``column`` hold, and their share."""
  values, counts = np.unique(column, return_counts=True)
  top = int(counts.argmax())
  return values[top], counts[top] / len(column)


def pinned_cells(fit, x) -> np.ndarray:
  """``[S, N]`` bool: cells of ``x`` (data units) at one of the fit's censoring bounds
  (``FitConfig.censor_share``), which its likelihood scores by the tail's probability,
  not a density: no noise floor is needed to bound it there. Tested in the fit's own
  units by the likelihood's rule (``densities.at_bounds``)."""
  params = fit.result.params
  if "censor_lower" not in params:
    return np.zeros(np.shape(x), bool)
  import jax.numpy as jnp
  from vcm_jax import densities, units
  xs = units.to_standard(jnp.asarray(x, jnp.float32), fit.result.loc, fit.result.scale)
  at_lower, at_upper = densities.at_bounds(xs, params["censor_lower"], params["censor_upper"])
  return np.asarray(at_lower | at_upper)


def _most_common_free(column, pinned) -> tuple[float, float]:
  """``_most_common`` among the cells not ``pinned``, its share of every cell."""
  free = column[~pinned]
  if not free.size:
    return float("nan"), 0.0
  value, held = _most_common(free)
  return value, held * free.size / column.size


def point_masses(x, names=None, share: float = POINT_MASS_SHARE, pinned=None) -> list[str]:
  """A line for each column where one value holds at least ``share`` of the rows (a floor,
  a ceiling, zeros): its density there is a point mass no noise family has. Cells
  ``pinned`` (``[S, N]`` bool, ``pinned_cells``: at a censoring bound of the fit, a
  probability there) are not counted."""
  out = []
  x = np.asarray(x)
  pinned = np.zeros(x.shape, bool) if pinned is None else np.asarray(pinned)
  for j in range(x.shape[1]):
    value, held = _most_common_free(x[:, j], pinned[:, j])
    if held >= share:
      out.append(f"{_name(names, j)}: {held:.0%} of the rows hold one value "
                 f"({value:.6g}); its noise scale is bounded below by the noise floor, "
                 "and regimes may form around the value")
  return out


def tied_regimes(fit, x, names=None, share: float = POINT_MASS_SHARE,
                 min_rows: int = 10, pinned=None) -> list[str]:
  """A line for each regime whose rows (its most probable ones, at least ``min_rows``)
  mostly hold one value of a column: a regime that may have collapsed onto tied
  readings, whose likelihood only the noise floor bounds (or a hard intervention that
  pins the value: either way, the scale there is the floor's). On a rounded column
  (``units.rounding_step`` d > 0: counts, ratings, a coarse sensor) ties are what
  rounding makes of any spread: there the regime is said only where its noise scale
  (``predict.regime_mechanisms`` on the regime's own rows) is under d / 2, a spread
  within the rounding's own (a normal of sd d / 2 rounded to d puts 68% of its rows on
  one value; of sd 0.7 d, the ratings family's, 52%, and every 5-level rating's middle
  level, holding half a regime's rows, had read as a collapse: 4-8 lines a fit on its
  report seeds). Continuous columns are said as before. Cells at one of the fit's
  censoring bounds (``pinned``: ``pinned_cells``, computed here where None) are not
  counted: the fit scores them by the tail's probability (floored-counts report seeds
  102-104: every such line named a floor)."""
  x = np.asarray(x)
  assigned = np.asarray(fit.assign(x))
  pinned = pinned_cells(fit, x) if pinned is None else np.asarray(pinned)
  found = []
  for k in np.unique(assigned):
    rows = x[assigned == k]
    if len(rows) < min_rows:
      continue
    for j in range(x.shape[1]):
      value, held = _most_common_free(rows[:, j], pinned[assigned == k, j])
      if held >= share:
        found.append((int(k), j, value, held))
  step = units.rounding_step(x)
  if any(step[j] > 0 for _, j, _, _ in found):
    scale = _own_regime_scales(fit, x, assigned)
    found = [(k, j, value, held) for k, j, value, held in found
             if step[j] == 0 or not scale[k, j] >= step[j] / 2]
  return [f"regime {k}: {held:.0%} of its rows hold one value of {_name(names, j)} "
          f"({value:.6g}); only the noise floor bounds its likelihood there: read this "
          "regime with care" for k, j, value, held in found]


def _own_regime_scales(fit, x, assigned) -> np.ndarray:
  """``[K, N]``: each regime's noise scale of each node, data units, averaged over the
  rows ``assigned`` to it (a scale that reads the parents is read where the regime's own
  rows are; 0 for a regime with none). One compiled program a model, row blocks of one
  shape (``rows.host_blocks``)."""
  from vcm_jax import rows
  k, n = fit.model.n_categories, fit.model.n_nodes
  sums = np.zeros((k, n))
  scales = lambda b: _regime_scales_per_row(fit.model, fit.result, b, fit.parent_idx,
                                            fit.parent_mask)
  for start, scale in rows.host_blocks(scales, np.asarray(x, np.float32),
                                       block=rows.rows_per_block(k * n)):
    own = assigned[start:start + len(scale)]
    np.add.at(sums, own, scale[np.arange(len(scale)), own])
  return sums / np.maximum(np.bincount(assigned, minlength=k), 1)[:, None]


@functools.partial(jax.jit, static_argnums=0)
def _regime_scales_per_row(model, result, x, parent_idx, parent_mask):
  """``[B, K, N]``: every row's noise scale of every node under every regime, data units
  (the parents as observed: ``Model.observed_regime_means``)."""
  xs = units.to_standard(x, result.loc, result.scale)
  mean, log_scale = model.observed_regime_means(result.params, xs, parent_idx, parent_mask)
  return jnp.broadcast_to(jnp.exp(log_scale), (x.shape[0],) + mean.shape[1:]) * result.scale


def unsupported_regimes(fit, x, names=None) -> tuple[dict, str | None]:
  """Whether the fit's regimes pay for their parameters: its BIC against that of one
  SCM, its own observational regime's mechanisms, scoring every row of ``x`` (data
  units). That SCM is the model with one regime (the trunks and one copy of each
  mechanism, ``parameters.per_mechanism``), at parameters fitted to the observational
  rows alone, so its BIC is a lower bound and the test errs towards the regimes.

  Why: data from one regime still get the single-target latent's N + 1 regimes (the
  noise split among them) and an "identified" verdict; the yardstick's single
  Gaussian, which wins there by BIC, does not warn, since the MLP fit's likelihood is
  higher (``docs/benchmarks.md``, "Data nobody tuned for").
  Where they do, each regime is put to the same test on its own
  (``regimes_not_paying``: ``summary["regimes_not_paying"]``), with a line where some
  fail it; ``names``: the columns' names for that line.
  Returns ``(summary, warning or None)``."""
  from vcm_jax import elbo, parameters
  from vcm_jax.baselines.yardstick import bic as bic_of
  s = x.shape[0]
  # One pass over the rows: log p(x) is these per-regime terms under the prior, as
  # ``Model.log_marginal`` combines them.
  ll = fit.regime_log_likelihoods(x)
  log_px = float(np.asarray(elbo.log_marginal(ll, fit.model.log_prior(fit.result.params)),
                            np.float64).sum())
  alone = float(np.asarray(ll, np.float64)[:, fit.observational].sum())
  copy, trunk = parameters.per_mechanism(fit.model.cfg, fit.parent_mask)
  n_fit = float(fit.n_parameters())
  n_alone = float(np.sum(copy) + np.sum(trunk))
  bic, bic_alone = bic_of(log_px / s, n_fit, s), bic_of(alone / s, n_alone, s)
  summary = {"supported": bool(bic >= bic_alone), "bic": bic, "bic_observational_alone": bic_alone,
             "log_px": log_px / s, "log_px_observational_alone": alone / s,
             "n_parameters": n_fit, "n_parameters_observational_alone": n_alone}
  if summary["supported"]:
    summary["regimes_not_paying"] = regimes_not_paying(fit, ll, names)
    return summary, _not_paying_line(summary["regimes_not_paying"], s)
  return summary, (f"the regimes do not pay for their parameters: the observational regime's "
                   f"mechanisms alone, one SCM scoring every row, have the higher BIC "
                   f"({bic_alone:.1f} against the fit's {bic:.1f}; log p(x) "
                   f"{alone / s:.3f} against {log_px / s:.3f} a row): the data may hold one "
                   f"regime, which the others split")


def owned_parameters(fit) -> np.ndarray:
  """``[K]`` float64: the parameters only each regime of ``fit`` uses
  (``parameters.per_regime``)."""
  from vcm_jax import parameters
  return np.asarray(parameters.per_regime(fit.model, fit.result.params, fit.parent_mask),
                    np.float64)


def regimes_not_paying(fit, ll, names=None) -> list[dict]:
  """The regimes whose rows the others explain at a higher BIC: greedily, the regime
  whose removal (its prior mass spread over the rest in proportion, the parameters only
  it uses dropped: ``owned_parameters``) raises the fit's BIC most, while one does. The
  observational regime stays. At the fitted parameters of the rest, no refit: a lower
  bound on what dropping it gains, so the test errs towards the regimes.

  Why: the single-target latent has a regime for every node; a node the data never
  intervene on still gets one, which takes a few rows of the observational regime's
  (a chain whose last two nodes are never targeted: regimes of 2 and 17 rows out of
  1837, named as interventions on them under an "identified" verdict).

  ``ll``: ``[S, K]`` ``log p(x | k)`` (``Fit.regime_log_likelihoods``). Returns one dict
  per regime dropped, in the order dropped: ``regime``, ``targets`` (names),
  ``rows`` (rows whose most probable regime it is), ``weight``, ``bic_gain`` (the BIC's
  rise when it goes, the ones before it gone)."""
  from scipy.special import logsumexp
  ll = np.asarray(ll, np.float64)
  s, k = ll.shape
  log_prior = np.asarray(fit.model.log_prior(fit.result.params), np.float64)
  owned = owned_parameters(fit) * 0.5 * np.log(s)
  targets = [tuple(names[j] for j in t) if names is not None else tpl
             for t, tpl in zip(fit.targets, fit.target_names)]
  rows = np.bincount((ll + log_prior).argmax(1), minlength=k)
  kept = log_prior > EMPTY_LOG_PRIOR  # (a padded or dropped regime is not a candidate)
  out = []
  while kept.sum() > 2:
    prior = np.where(kept, log_prior, -np.inf)
    prior -= logsumexp(prior)
    gains = _removal_log_px(ll, prior) + owned
    gains[~kept] = -np.inf
    gains[fit.observational] = -np.inf
    j = int(gains.argmax())
    if not gains[j] > 0.0:
      break
    out.append({"regime": j, "targets": list(targets[j]), "rows": int(rows[j]),
                "weight": float(np.exp(prior[j])), "bic_gain": float(gains[j])})
    kept[j] = False
  return out


# A regime whose log prior is below this holds no rows (``model.INACTIVE_LOGIT``'s).
EMPTY_LOG_PRIOR = -1e6


def _removal_log_px(ll, log_prior) -> np.ndarray:
  """``[K]``: the change of the summed ``log p(x)`` when regime ``j`` goes, its prior mass
  spread over the rest in proportion, for every ``j`` at once (``O(S K)``): a row's
  ``p(x)`` becomes ``p(x) (1 - r_j) / (1 - pi_j)``, ``r_j`` its responsibility. ``log(1 -
  r_j)`` is ``log1p(-r_j)`` where ``r_j <= 1/2`` (every regime but a row's most probable
  one) and the log of the other regimes' responsibilities summed where it is the most
  probable (exact where ``r_j`` rounds to 1); ``log(1 - pi_j)`` likewise the others'
  prior mass summed."""
  from scipy.special import logsumexp
  joint = ll + log_prior
  log_px = logsumexp(joint, axis=1, keepdims=True)
  log_post = joint - log_px
  top = log_post.argmax(1)
  with np.errstate(divide="ignore"):
    log_rest = np.log1p(-np.minimum(np.exp(log_post), 0.5))
    others = joint.copy()
    others[np.arange(len(joint)), top] = -np.inf
    log_rest[np.arange(len(joint)), top] = (logsumexp(others, axis=1) - log_px[:, 0])
    # log(1 - pi_j) as the others' prior mass summed (exact where pi_j rounds to 1)
    k = len(log_prior)
    log_others = logsumexp(np.where(np.eye(k, dtype=bool), -np.inf, log_prior[None, :]), axis=1)
    return log_rest.sum(0) - len(joint) * log_others


def _not_paying_line(dropped: list[dict], n_rows: int) -> str | None:
  if not dropped:
    return None
  many = len(dropped) > 1
  what = ", ".join(f"{d['regime']} ({', '.join(map(str, d['targets'])) or 'no target'}; "
                   f"{d['rows']} of {n_rows} rows)" for d in dropped)
  gain = sum(d["bic_gain"] for d in dropped)
  return (f"regime{'s' if many else ''} {what} {'do' if many else 'does'} not pay for "
          f"{'their' if many else 'its'} parameters: the other regimes explain those rows "
          f"at a BIC {gain:.1f} higher; {'their targets' if many else 'its target'} may "
          "never be intervened on in these data (read such a regime as empty)")


def gross_error_share(outlier_score, n_nodes: int, fraction: float) -> tuple[dict, str | None]:
  """The rows the gross-error term flags (score > 0.5) against what its prior expects
  (``1 - (1 - fraction)^N`` of the rows), and a line where they are
  ``GROSS_ERROR_EXCESS`` times more."""
  score = np.asarray(outlier_score)
  flagged = float(np.mean(score > 0.5)) if score.size else 0.0
  expected = 1.0 - (1.0 - fraction) ** n_nodes
  out = {"flagged_rows": flagged, "expected_rows": expected}
  if flagged > GROSS_ERROR_EXCESS * expected:
    return out, (f"the gross-error term flags {flagged:.1%} of the rows, "
                 f"{flagged / expected:.0f}x the {expected:.2%} its prior expects: regimes or "
                 "mechanisms the model lacks are read as gross errors")
  return out, None
