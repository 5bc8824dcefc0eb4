"""Which model the data support: the latent (single-target, sparse K), K and the noise family.

``choose_model`` fits every candidate and scores it on the fitted rows by BIC and
by the integrated completed likelihood (ICL, Biernacki, Celeux and Govaert 2000):

    BIC = log L - 0.5 log(S) * (number of parameters),
    ICL = BIC - sum_s H(p(z | x_s)),

ICL being BIC minus the entropy of the regime posterior. BIC (like the held-out
likelihood) answers "which density is best", and on real data it keeps adding
regimes that split one condition's cells into overlapping groups (Sachs: K = 12
and rising, AMI 0.48); the entropy term charges a regime for the samples it cannot
tell from another's, which is what a regime that only reshapes a condition's
density does. So ICL chooses K of the sparse latent, and BIC the noise family and
the latent (``choose_model``): the single-target latent's K is fixed by its
assumption, and charging it for regimes that overlap in truth would trade a right
model for a merged one (a 4-node test: ARI 0.46 instead of 0.85).
The held-out ``log p(x)`` of every candidate is reported beside them.

Parameters are counted on the mechanisms' linear parts (weights, intercept, noise
scale: ``|pa_i| + 2`` per mechanism), the count the sparse decoder's gates pay
(``train.change_cost``), plus ``K - 1`` regime weights.
"""
from __future__ import annotations

import dataclasses
import itertools
from typing import NamedTuple, Sequence

import jax.numpy as jnp
import numpy as np

from vcm_jax import api, checks, graphs
from vcm_jax.config import FitConfig


class ModelChoice(NamedTuple):
  config: FitConfig  # the chosen candidate
  table: list        # one dict per fitted candidate, best first: its settings and scores
  fit: object = None       # the chosen candidate's ``api.Fit`` (fitted on the rows given)
  check: dict | None = None  # ``checks.shared_mechanism_check`` of the first fit, summarised
  skipped: tuple = ()      # candidates not fitted, each with why

  @property
  def misfit_confirmed(self) -> bool:
    """Whether the chosen fit's shared-mechanism misfit counts as a change (the
    verdict's ``shared_misfit``). Not where the latents that allow several changes a
    regime were fitted and lost (BIC) to the single-target one: the likelihood says
    the misfit does not pay for another mechanism. A mechanism family the decoder
    lacks misfits a regime that moved its parents in just that way."""
    single = lambda decoder: decoder == "structured"
    return not (single(self.config.decoder)
                and any(not single(row["decoder"]) for row in self.table))


def default_k(n_nodes: int) -> tuple[int, ...]:
  """Sparse candidates: 2, 3, 4, 6, 8, 12 regimes, below N + 1 (the single-target count)."""
  return tuple(k for k in (2, 3, 4, 6, 8, 12) if k <= n_nodes + 1)


def candidates(base: FitConfig, n_nodes: int, *, decoders: Sequence[str] = ("structured", "sparse"),
               noises: Sequence[str] = ("gauss", "student_t"), k_candidates: Sequence[int] = (),
               max_mechanisms: int = 0) -> list[FitConfig]:
  """The configurations tried: every decoder x noise family (x K for sparse and free).

  ``max_mechanisms`` > 0 keeps the candidates that evaluate at most that many
  mechanisms per row (structured 2N; sparse (K + 1) N; free K N): a budget on a step's
  cost, so that at hundreds of variables only the cheap latents are tried.
  """
  ks = tuple(k_candidates) or default_k(n_nodes)
  out = []
  for decoder, noise in itertools.product(decoders, noises):
    if decoder == "structured":
      configs = [base.replace(decoder=decoder, noise=noise, n_regimes=0)]
    else:
      configs = [base.replace(decoder=decoder, noise=noise, n_regimes=k) for k in ks]
    out += [c for c in configs if max_mechanisms <= 0 or mechanisms_per_row(c, n_nodes)
            <= max_mechanisms]
  return out


def mechanisms_per_row(cfg: FitConfig, n_nodes: int) -> int:
  """Mechanism evaluations one row costs in a step."""
  if cfg.decoder == "structured":
    return 2 * n_nodes
  return (cfg.n_regimes + (cfg.decoder == "sparse")) * n_nodes


def n_parameters(fit: api.Fit) -> int:
  """Free parameters of a fit, counted on the mechanisms' linear parts (module doc)."""
  model = fit.model
  per_mechanism = np.asarray(fit.parent_mask).sum(1) + 2
  k = model.n_categories
  if model.structured:
    return int(2 * per_mechanism.sum() + k - 1)
  if model.sparse:
    gates = np.asarray(model.gates(fit.result.params)) > 0.5
    return int(per_mechanism.sum() + (gates * per_mechanism).sum() + k - 1)
  return int(k * per_mechanism.sum() + k - 1)


def scores(fit: api.Fit, x, x_heldout=None) -> dict:
  """ICL and its parts on the fitted rows ``x`` (data units), and the held-out
  ``log p(x)`` per row when ``x_heldout`` is given."""
  x = jnp.asarray(x, jnp.float32)
  log_px = float(fit.log_prob(x).sum())
  post = np.asarray(fit.posterior(x), np.float64)
  entropy = float(-(post * np.log(np.clip(post, 1e-300, 1.0))).sum())
  n_params = n_parameters(fit)
  bic = log_px - 0.5 * np.log(x.shape[0]) * n_params
  out = {"log_px": log_px / x.shape[0], "n_parameters": n_params, "bic": bic,
         "entropy": entropy, "icl": bic - entropy}
  if x_heldout is not None:
    out["heldout_log_px"] = float(fit.log_prob(jnp.asarray(x_heldout, jnp.float32)).mean())
  return out


def describe(cfg: FitConfig) -> dict:
  return {"decoder": cfg.decoder, "n_regimes": cfg.n_regimes, "noise": cfg.noise}


def choose_model(key, x, adj, base: FitConfig, *, decoders=("structured", "sparse"),
                 noises=("gauss", "student_t"), k_candidates=(), max_mechanisms: int = 0,
                 x_heldout=None, log=None, screen: bool = True,
                 first_restarts: int = 0) -> ModelChoice:
  """Fit the candidates on ``x`` and choose (host-level: one compiled fit each).

  Three questions, each with its criterion (module doc):
    1. the noise family, by BIC on the first decoder (the single-target latent by
       default: cheap, and the noise is the mechanisms', not the latent's);
    2. K of the other decoders (sparse), with that family, by ICL;
    3. the latent: the winners of 1 and 2, by BIC. The single-target latent's K is
       fixed by its assumption, so its posterior entropy is the data's overlap, not a
       choice to charge for; the sparse latent's K is free, and there ICL keeps a
       condition's cells from being split into overlapping regimes.

  With ``screen`` the first decoder's fit with the first noise family is checked
  before anything else is fitted (``checks.shared_mechanism_check``): where every
  mechanism it keeps shared fits every regime's rows alike, the latent holds and the
  other decoders are not fitted; another noise family is then fitted only where its
  ``log p(x)`` at the first fit's parameters is already higher (a refit only raises
  it). Where the check fails, every candidate is fitted as above.

  Args:
    key: the PRNG key every candidate is fitted with.
    x: ``[S, N]`` rows to fit (data units); adj: ``[N, N]`` the DAG.
    base: the settings every candidate shares (steps, mechanisms, ...).
    decoders, noises, k_candidates, max_mechanisms: as in ``candidates`` (the budget
      applies to the decoders after the first).
    x_heldout: optional rows to report each candidate's held-out ``log p(x)`` on.
    log: optional ``callable(dict)`` told each candidate's scores as they come.
    screen: check the first fit before fitting the rest (above).
    first_restarts: restarts of the first decoder's candidates (0: ``base.restarts``):
      the model kept when the check holds, so a caller can keep its fit, not refit it.

  Returns:
    the chosen config, a table of every fitted candidate (``chosen`` first, then the
    other ``finalist``, then the rest by BIC), the chosen fit, the check and the
    candidates not fitted.
  """
  adj, n = np.asarray(adj), np.asarray(adj).shape[0]
  x = jnp.asarray(x, jnp.float32)
  table, skipped, check = [], [], None
  opts = dict(k_candidates=k_candidates, max_mechanisms=max_mechanisms)

  def fit_one(cfg):
    max_parents = graphs.resolve_max_parents(adj, cfg.max_parents)
    fit = api._jit_fit_graph(cfg, max_parents)(key, x, jnp.asarray(adj, jnp.float32))
    row = dict(describe(cfg), **scores(fit, x, x_heldout))
    if log is not None:
      log(row)
    table.append((row, cfg, fit))
    return fit

  best = lambda rows, key: max(rows, key=lambda rc: rc[0][key]) if rows else None
  # The first decoder (the single-target latent, the cheapest) is fitted whatever the
  # budget: max_mechanisms keeps the other latents away from hundreds of variables.
  first_cfgs = candidates(base, n, decoders=decoders[:1], noises=noises,
                          k_candidates=k_candidates)
  if first_cfgs:
    first_cfgs = [c.replace(restarts=first_restarts or base.restarts) for c in first_cfgs]
    first_fit = fit_one(first_cfgs[0])
    if screen and checks.applies(first_fit.model):
      found = checks.shared_mechanism_check(first_fit, x)
      check = {"holds": found["holds"], "largest_gap": found["largest_gap"],
               "regimes": found["regimes"],
               "flagged": [[int(k), int(j)] for k, j in np.argwhere(found["flagged"])]}
  if screen and check is not None and check["holds"]:
    log_px = table[0][0]["log_px"]
    for cfg in first_cfgs[1:]:
      at_first = log_prob_as(first_fit, cfg)(x).mean()
      if at_first > log_px:
        fit_one(cfg)
      else:
        skipped.append(dict(describe(cfg), why=(
            f"log p(x) {float(at_first):.4f} a row at the first fit's parameters, below its "
            f"{log_px:.4f}")))
    skipped += [dict(describe(cfg), why="the first fit's shared mechanisms fit every regime "
                     "(checks.shared_mechanism_check)")
                for cfg in candidates(base, n, decoders=decoders[1:], noises=noises[:1], **opts)]
    chosen = best(table, "bic")
    finalists = [chosen]
  else:
    for cfg in first_cfgs[1:]:
      fit_one(cfg)
    first = best(table, "bic")  # the noise family: a question about densities
    noise = first[1].noise if first else base.noise
    n_first = len(table)
    for cfg in candidates(base, n, decoders=decoders[1:], noises=(noise,), **opts):
      fit_one(cfg)
    if not table:
      raise ValueError("no candidate model within selection.max_mechanisms="
                       f"{max_mechanisms} mechanism evaluations per row")
    second = best(table[n_first:], "icl")  # how many regimes: ICL
    finalists = [rc for rc in (first, second) if rc is not None]
    chosen = best(finalists, "bic")  # which latent: BIC
  for row, _, _ in table:
    row["finalist"] = any(row is f[0] for f in finalists)
    row["chosen"] = row is chosen[0]
  table.sort(key=lambda rc: (not rc[0]["chosen"], not rc[0]["finalist"], -rc[0]["bic"]))
  if check is not None:  # whether its flags hold for the chosen fit (a caller need not redo it)
    check["of_chosen"] = table[0][2] is first_fit
  return ModelChoice(table[0][1], [row for row, _, _ in table], table[0][2], check,
                     tuple(skipped))


def log_prob_as(fit: api.Fit, cfg: FitConfig):
  """``x -> log p(x)`` of ``fit``'s parameters read under ``cfg``'s noise family (and
  gross-error fraction): the same means and scales, another density."""
  other = dataclasses.replace(fit, model=fit.model._replace(cfg=fit.model.cfg.replace(
      noise=cfg.noise, noise_dof=cfg.noise_dof, outlier_fraction=cfg.outlier_fraction)))
  return other.log_prob
