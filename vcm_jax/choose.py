"""Which model the data support, and the default fit built on that choice.

``choose_model`` fits the candidates and scores them on the fitted rows by BIC and
by the integrated completed likelihood (ICL, Biernacki, Celeux and Govaert 2000):

    BIC = log L - 0.5 log(S) * (number of parameters),
    ICL = BIC - sum_s H(p(z | x_s)),

ICL being BIC minus the entropy of the regime posterior. BIC (like the held-out
likelihood) answers "which density is best", and on real data it keeps adding
regimes that split one condition's cells into overlapping groups (Sachs: K = 12
and rising, AMI 0.48); the entropy term charges a regime for the samples it cannot
tell from another's. So ICL chooses K of the sparse latent, and BIC the noise
family and the latent: the single-target latent's K is fixed by its assumption,
and charging it for regimes that overlap in truth would trade a right model for a
merged one (a 4-node test: ARI 0.46 instead of 0.85). The held-out ``log p(x)``
of every candidate is reported beside them.

Candidates that differ only in K are one compiled program: a ``vmap`` over fits
padded to the largest K (``model.deactivate_regimes``), scored inside it. The
chosen sparse model's final starts reuse that program (no compilation).

Parameters are those the fit has (``parameters.count``: every mechanism's trunk and
copies, the regime weights), the count the sparse decoder's gates pay
(``train.change_cost``).

``fit_default`` is what ``vcm_jax.fit`` and the own-data command run: the first
fit, its shared-mechanism check, the choice where the check fails, the chosen fit.
"""
from __future__ import annotations

import dataclasses
import functools
import itertools
import logging
from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from vcm_jax import (api, capacity, checks, concurrency, diagnose, graphs, identifiability,
                     padding, parameters, predict, train, units)
from vcm_jax import model as model_lib
from vcm_jax import rows as rows_lib
from vcm_jax.init import GATE_START
from vcm_jax.select import default_k, seed_of
from vcm_jax.config import FitConfig, choices, scale_can_read_parents

# The default's stages after the choice, one line each as it starts (the command shows
# them; a library user sees them with logging at INFO): a long run says where it is.
_LOG = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Selection:
  """The model choice's settings (the own-data config's ``selection`` group)."""
  decoders: tuple = ("structured", "sparse")  # the first is fitted and checked first
  noises: tuple = ("gauss", "student_t")
  # The noise scale's dependence on the parents (FitConfig.scale_model), chosen like the
  # noise family: by BIC on the first decoder, each tried from the best fit it contains.
  scales: tuple = ("constant", "parents")
  screen: bool = True          # check the first fit before fitting the other latents
  k_candidates: tuple = ()     # sparse K tried; () = default_k(N)
  max_mechanisms: int = 400    # a step's cost budget (mechanism evaluations per row)
  restarts: int = 1            # starts per candidate after the first decoder's
  # Where the first fit's check fails, the chosen model has more local optima: at least
  # this many starts (Sachs AMI, seeds 0 / 1: 0.565 / 0.515 with 2, 0.527 / 0.563 with 4:
  # the same mean, the spread moved; set with the labels in view).
  violated_restarts: int = 4
  max_rows: int = 20000        # candidates are fitted on at most this many rows
  # On at most this many rows, linear or MLP mechanisms by a k-fold held-out likelihood
  # of the first candidate (``capacity``; 0: never, MLP): chosen on development seeds
  # 0-2 of the held-out families at 300 and 1000 rows (docs/defaults.md).
  capacity_max_rows: int = 1000
  capacity_folds: int = 5
  # The shared-mechanism check's thresholds (checks.EFFECT, checks.Z), and the gross-error
  # fraction its cell densities are read with, so that a few wild cells cannot fail it.
  check_effect: float = checks.EFFECT
  check_z: float = checks.Z
  check_gross_fraction: float = 1e-3
  # A richer candidate whose log p(x) is this far (nats a row) below one it contains
  # failed its fit (``nested_failures``): the choice never rests on it.
  nested_tolerance: float = 1e-3
  yardstick: bool = True       # fit a Gaussian mixture (K by BIC) beside the choice
  # put an "identified" verdict to a free-target rival on the same graph
  # (``identifiability.free_target_screen``)
  free_target_screen: bool = True
  # continue the single-target fit from each start that exchanges the observational
  # regime with one other (``swap_starts``), keeping the better log p(x). Off: on held-out
  # development seeds 0-1 (8 fits) it kept a swap on 4 and lowered their ARI (by 0.002 to
  # 0.067) and lost floored counts 0's observational regime; it mends a new-user tour's
  # X -> Y case (docs/model_choice.md)
  swap_starts: bool = False
  # Candidates' programs that share no data run side by side, up to this many at once
  # (``vcm_jax.concurrency``; the same fits whatever the number): 0, the CPU cores this
  # process may use, at most 4; 1, one after the other (each holds its working memory).
  threads: int = 0

  def __post_init__(self):
    for name in ("decoders", "noises", "scales", "k_candidates"):
      value = getattr(self, name)
      if isinstance(value, str):
        value = tuple(v for v in value.split(",") if v)
      object.__setattr__(self, name, tuple(value))
    allowed = {"decoders": ("structured", "sparse", "free"), "noises": choices()["noise"],
               "scales": choices()["scale_model"]}
    for name, values in allowed.items():
      bad = [v for v in getattr(self, name) if v not in values]
      if bad:
        raise ValueError(f"selection.{name} has {bad}; allowed: {', '.join(values)}")
    if any(k < 2 for k in self.k_candidates):
      raise ValueError(f"selection.k_candidates={self.k_candidates} must all be >= 2")
    if self.capacity_max_rows < 0 or self.capacity_folds < 2:
      raise ValueError(f"selection.capacity_max_rows={self.capacity_max_rows} must be >= 0 "
                       f"and selection.capacity_folds={self.capacity_folds} >= 2")
    if self.threads < 0:
      raise ValueError(f"selection.threads={self.threads} must be >= 0 (0: the CPU cores "
                       "this process may use, at most 4)")
    if self.restarts < 1 or self.max_rows < 0 or self.violated_restarts < 1:
      raise ValueError("selection.restarts and selection.violated_restarts must be >= 1 and "
                       "selection.max_rows >= 0")
    if self.check_effect < 0 or self.check_z < 0 or self.nested_tolerance < 0 \
        or not 0 <= self.check_gross_fraction < 1:
      raise ValueError("selection.check_effect, check_z and nested_tolerance must be >= 0 "
                       "and selection.check_gross_fraction in [0, 1)")

  @property
  def n_threads(self) -> int:
    """How many candidates' programs run side by side (``threads``, 0 resolved)."""
    return self.threads or concurrency.default_threads()

  def check(self, fit, x) -> dict:
    """The shared-mechanism check of ``fit`` on ``x`` at this selection's thresholds
    (``checks.shared_mechanism_check``): the one the choice, the repair's E-step and
    ``learn.reorient``'s judge read."""
    return checks.shared_mechanism_check(fit, x, effect=self.check_effect, z=self.check_z,
                                         gross_fraction=self.check_gross_fraction)

  @classmethod
  def from_config(cls, group) -> "Selection":
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(group) - known)
    if unknown:
      raise ValueError(f"unknown selection key {unknown[0]!r}; known: {', '.join(sorted(known))}")
    selection = cls(**{k: (tuple(v) if isinstance(v, list) else v)
                       for k, v in dict(group).items()})
    selection.n_threads  # (a bad $VCM_JAX_THREADS is said here, before a fit)
    return selection


class ModelChoice(NamedTuple):
  config: FitConfig  # the chosen candidate
  table: list        # one dict per fitted candidate, best first: its settings and scores
  fit: object = None       # the chosen candidate's ``api.Fit`` (fitted on the rows given)
  check: dict | None = None  # ``checks.shared_mechanism_check`` of the first fit, summarised
  skipped: tuple = ()      # candidates not fitted, each with why
  why: str = ""            # how the choice was made, in a sentence
  warnings: tuple = ()     # one line each: what the run found wrong (``diagnose``)
  extra: dict | None = None  # the gross-error stage, the yardstick, the settings used

  def __repr__(self) -> str:
    return (f"ModelChoice({self.config.decoder} K={self.config.n_regimes or 'N+1'} "
            f"{self.config.noise} chosen of {len(self.table)} candidates: {self.why}; "
            f"{len(self.warnings)} warning(s); .summary() for the table)")

  @property
  def misfit_confirmed(self) -> bool:
    """Whether the chosen fit's shared-mechanism misfit counts as a change (the
    verdict's ``shared_misfit``). Not where the latents that allow several changes a
    regime were fitted and lost (BIC) to the single-target one: the likelihood says
    the misfit does not pay for another mechanism."""
    single = lambda decoder: decoder == "structured"
    return not (single(self.config.decoder)
                and any(not single(row["decoder"]) for row in self.table))

  def misfit_flags(self, n_nodes: int):
    """``[K, N]`` bool, the check's flagged cells where they are the chosen fit's (its
    ``of_chosen``): what the verdict reads instead of checking again; None otherwise."""
    if self.check is None or not self.check.get("of_chosen"):
      return None
    flags = np.zeros((self.fit.n_regimes, n_nodes), bool)
    flags[tuple(np.asarray(self.check["flagged"], int).reshape(-1, 2).T)] = True
    return flags

  def summary(self) -> dict:
    """The choice as JSON-ready data (``model_selection.json``)."""
    return {"chosen": describe(self.config), "why": self.why,
            "runner_up": self.table[1] if len(self.table) > 1 else None,
            "candidates": self.table, "shared_mechanism_check": self.check,
            "misfit_confirmed": self.misfit_confirmed, "not_fitted": list(self.skipped),
            "warnings": list(self.warnings), **(self.extra or {})}


def candidates(base: FitConfig, n_nodes: int, *, decoders: Sequence[str] = ("structured", "sparse"),
               noises: Sequence[str] = ("gauss", "student_t"), k_candidates: Sequence[int] = (),
               max_mechanisms: int = 0) -> list[FitConfig]:
  """The configurations tried: every decoder x noise family (x K for sparse and free).

  ``max_mechanisms`` > 0 keeps the candidates that evaluate at most that many
  mechanisms per row (structured 2N; sparse (K + 1) N; free K N).
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
  """Free parameters of a fit (module doc); a regime dropped (``Fit.without_regimes``)
  no longer counts the parameters only it used."""
  n = int(parameters.count(fit.model, fit.result.params, jnp.asarray(fit.parent_mask)))
  empty = np.asarray(fit.model.log_prior(fit.result.params)) < diagnose.EMPTY_LOG_PRIOR
  return n - int(diagnose.owned_parameters(fit)[empty].sum()) if empty.any() else n


def _row(cfg: FitConfig, stats: dict, n_rows: int) -> dict:
  bic = stats["log_px"] - 0.5 * np.log(n_rows) * stats["n_parameters"]
  out = dict(describe(cfg), log_px=stats["log_px"] / n_rows, n_parameters=int(stats["n_parameters"]),
             bic=bic, entropy=stats["entropy"], icl=bic - stats["entropy"])
  if "heldout_log_px" in stats:
    out["heldout_log_px"] = stats["heldout_log_px"]
  return out


def scores(fit: api.Fit, x, x_heldout=None) -> dict:
  """ICL and its parts on the fitted rows ``x`` (data units), and the held-out
  ``log p(x)`` per row when ``x_heldout`` is given."""
  x = jnp.asarray(x, jnp.float32)
  post = np.asarray(fit.posterior(x), np.float64)
  stats = {"log_px": float(fit.log_prob(x).sum()), "n_parameters": n_parameters(fit),
           "entropy": float(-(post * np.log(np.clip(post, 1e-300, 1.0))).sum())}
  if x_heldout is not None:
    stats["heldout_log_px"] = float(fit.log_prob(jnp.asarray(x_heldout, jnp.float32)).mean())
  return _row(fit.model.cfg, stats, x.shape[0])


def describe(cfg: FitConfig) -> dict:
  return {"decoder": cfg.decoder, "n_regimes": cfg.n_regimes, "noise": cfg.noise,
          "scale_model": cfg.scale_model, "mechanism": cfg.mechanism}


@functools.cache
def _fit_and_score(cfg: FitConfig, n_nodes: int, max_parents: int, padded: bool):
  """One compiled program: ``vmap`` over fits ``(keys [G], n_active [G])`` of ``cfg`` (K
  padded to ``cfg.n_regimes`` when ``padded``) on one data set, each scored (module doc)."""
  trainer = api._trainer(cfg, n_nodes, max_parents)
  model = trainer.model

  def one(key, n_active, x, parent_idx, parent_mask, x_heldout):
    n_active = n_active if padded else None
    result = train.fit_arrays(key, x, parent_idx, parent_mask, trainer=trainer, n_active=n_active)
    args = (model, result)
    post = predict.posterior(*args, x, parent_idx, parent_mask)
    stats = {"log_px": predict.log_prob(*args, x, parent_idx, parent_mask).sum(),
             "entropy": -jnp.sum(post * jnp.log(jnp.clip(post, 1e-30, 1.0))),
             "n_parameters": parameters.count(model, result.params, parent_mask, n_active),
             "heldout_log_px": predict.log_prob(*args, x_heldout, parent_idx, parent_mask).mean()}
    return result, stats

  return model, jax.jit(jax.vmap(one, in_axes=(0, 0, None, None, None, None)))


class _Fitted(NamedTuple):
  cfg: FitConfig
  row: dict
  fit: api.Fit


def fit_candidates(keys, x, adj, cfgs: Sequence[FitConfig], x_heldout=None, *,
                   pad_to: int = 0, threads: int = 1) -> list[_Fitted]:
  """Fit and score ``cfgs`` on ``x`` (data units), one compiled program per group of
  candidates that differ only in K (padded to the group's largest K, or ``pad_to``),
  each fit with ``keys[i]`` (or one key for all); up to ``threads`` of those programs
  run side by side (``concurrency``: the same fits)."""
  jobs, assemble = candidate_jobs(keys, x, adj, cfgs, x_heldout, pad_to=pad_to)
  return assemble(concurrency.run_side_by_side(jobs, threads))


def candidate_jobs(keys, x, adj, cfgs: Sequence[FitConfig], x_heldout=None, *,
                   pad_to: int = 0):
  """``fit_candidates`` as ``(jobs, assemble)``: one job a compiled program (no
  arguments), and ``assemble(the jobs' results in order) -> [_Fitted]`` in the order of
  ``cfgs``; a caller runs the jobs beside others of its own."""
  if not cfgs:
    return [], lambda results: []
  cfgs = [train.without_unused_terms(c, x) for c in cfgs]
  x = jnp.asarray(x, jnp.float32)
  adj = np.asarray(adj)
  idx, mask = graphs.parent_table(jnp.asarray(adj), _max_parents(adj, cfgs))
  order = graphs.topological_order(jnp.asarray(adj))
  held = x if x_heldout is None else jnp.asarray(x_heldout, jnp.float32)
  keys = [keys] * len(cfgs) if not isinstance(keys, (list, tuple)) else list(keys)
  groups: dict = {}
  for i, cfg in enumerate(cfgs):
    groups.setdefault(cfg.replace(n_regimes=0) if pads(cfg) else cfg, []).append(i)
  runs = [(key, part) for key, members in groups.items()
          for part in _buckets(members, [cfgs[i].n_regimes for i in members], pad_to)]

  def run(group_cfg, members):
    ks = [cfgs[i].n_regimes for i in members]
    padded = pads(group_cfg)
    big = group_cfg.replace(n_regimes=max(ks + [pad_to])) if padded else group_cfg
    model, program = _fit_and_score(big, adj.shape[0], idx.shape[1], padded)
    results, stats = program(jnp.stack([keys[i] for i in members]), jnp.asarray(ks, jnp.int32),
                             x, idx, mask, held)
    stats = jax.tree.map(np.asarray, stats)
    fitted = []
    for result, (j, i) in zip(api.unstack(results, len(members)), enumerate(members)):
      api.check_finite(result, f"candidate {describe(cfgs[i])}")
      fit = _unpadded_fit(cfgs[i], model, result, x, idx, mask, order) if padded else \
          _from_result(model, result, x, idx, mask, order)
      row = _row(cfgs[i], {k: float(v[j]) for k, v in stats.items()}, x.shape[0])
      if x_heldout is None:
        row.pop("heldout_log_px")
      if padded:  # (the K fitted together in one program: ``_more_starts`` reuses it)
        row["fitted_with"] = [cfgs[m].n_regimes for m in members]
      fitted.append((i, _Fitted(cfgs[i], row, fit)))
    return fitted

  def assemble(results):
    out = [None] * len(cfgs)
    for i, f in (pair for done in results for pair in done):
      out[i] = f
    return out
  return [functools.partial(run, group_cfg, members) for group_cfg, members in runs], assemble


def pads(cfg: FitConfig) -> bool:
  """Whether fits of ``cfg`` with several K can be one padded program: a free or sparse
  decoder whose extra regimes a learned prior switches off (``model.deactivate_regimes``)
  and whose posterior is exact (an encoder could still send rows there)."""
  return cfg.decoder != "structured" and cfg.prior == "learned" and not cfg.needs_encoder


def _buckets(members: list, ks: list, pad_to: int) -> list:
  """``members`` split into runs of close K (``padding.close_runs``); one run where
  ``pad_to`` fixes the padded size."""
  return [members] if pad_to else padding.close_runs(members, ks)


def _max_parents(adj, cfgs) -> int:
  return graphs.resolve_max_parents(adj, cfgs[0].max_parents)


_from_result = jax.jit(api.from_result, static_argnums=0)


def _unpadded_fit(cfg, padded_model, result, x, idx, mask, order) -> api.Fit:
  """The ``Fit`` of one candidate of a padded batch, with its own K."""
  model = api._trainer(cfg, padded_model.n_nodes, idx.shape[1]).model
  params = model_lib.take_regimes(result.params, cfg.n_regimes, sparse=model.sparse)
  return _from_result(model, result._replace(params=params), x, idx, mask, order)


def _summarise_check(found: dict) -> dict:
  return {"holds": found["holds"], "insufficient": found["insufficient"],
          "largest_gap": found["largest_gap"],
          "regimes": found["regimes"],
          "flagged": [[int(k), int(j)] for k, j in np.argwhere(found["flagged"])]}


def label(row: dict, n_nodes: int) -> str:
  """A candidate as the logs and warnings name it, ``"sparse K=6"``: the single-target
  latent's K is the graph's, N + 1 (its config and row hold 0)."""
  k = n_nodes + 1 if row["decoder"] == "structured" else row["n_regimes"]
  return f"{row['decoder']} K={k}"


def _best(rows: list, criterion: str):
  return max(rows, key=lambda f: f.row[criterion]) if rows else None


class FirstStage(NamedTuple):
  """The choice's first stage (``first_stage``): the first decoder's fits, the best of
  them by BIC and its check, and what the second stage (``finish_choice``) reads."""
  table: list              # ``_Fitted`` of the first decoder: noise families, scale models
  best: object             # the best of them by BIC (a ``_Fitted``)
  check: dict | None       # its shared-mechanism check, summarised (None: none ran)
  context: tuple           # (key, x, adj, base, selection, fitted, log, x_heldout)

  @property
  def holds(self) -> bool:
    return self.check is not None and self.check["holds"]


def choose_model(key, x, adj, base: FitConfig, *, x_heldout=None, log=None,
                 first_restarts: int = 0, **selection) -> ModelChoice:
  """Fit the candidates on ``x`` and choose (host-level; ``selection``: the fields of
  ``Selection``, or ``selection=Selection(...)``): ``finish_choice(first_stage(...))``.

  Three questions, each with its criterion (module doc): the noise family and the
  scale model by BIC on the first decoder (the single-target latent by default; each
  continued from the fit it extends), K of the other decoders by ICL, the latent by
  BIC. With ``screen`` the best first-decoder fit is checked
  (``checks.shared_mechanism_check``): where it holds, the other latents are not fitted.

  ``first_restarts``: starts of the first decoder's candidates (0: ``base.restarts``);
  the others get ``base.restarts`` too unless ``selection.restarts`` is given.
  """
  return finish_choice(first_stage(key, x, adj, base, x_heldout=x_heldout, log=log,
                                   first_restarts=first_restarts, **selection))


def first_stage(key, x, adj, base: FitConfig, *, x_heldout=None, log=None,
                first_restarts: int = 0, **selection) -> FirstStage:
  """The choice's first stage: the first decoder's fit, the noise families and scale
  models each continued from the fit it extends, the best of them by BIC checked where
  ``selection.screen`` (arguments as ``choose_model``)."""
  sel = selection.pop("selection", None) or Selection(**selection)
  adj = np.asarray(adj)
  base = train.without_unused_terms(base, x)
  x = jnp.asarray(x, jnp.float32)
  fitted = _fitter(key, x, adj, x_heldout, log, sel.n_threads)
  table, best, check = _first_latent(x, adj, base, sel, fitted, log, first_restarts)
  return FirstStage(table, best, check, (key, x, adj, base, sel, fitted, log, x_heldout))


def finish_choice(stage: FirstStage) -> ModelChoice:
  """The choice's second stage: where the first stage's check failed (or none ran), the
  other latents' candidates (``_other_latents``); then the choice among the fits that
  reach what the models they contain reach."""
  key, x, adj, base, sel, fitted, log, x_heldout = stage.context
  n = adj.shape[0]
  table, best_first, check = list(stage.table), stage.best, stage.check
  rest = [] if stage.holds else _other_latents(key, x, adj, base, sel, table, fitted, log,
                                               x_heldout)
  table += rest
  failed = nested_failures([f.row for f in table], n, sel.nested_tolerance)
  if stage.holds:
    skipped = [dict(describe(c), why="the best single-target fit's shared mechanisms fit every "
                    "regime (checks.shared_mechanism_check)")
               for c in candidates(base, n, decoders=sel.decoders[1:], noises=sel.noises[:1],
                                   k_candidates=sel.k_candidates,
                                   max_mechanisms=sel.max_mechanisms)]
    finalists = [best_first]
    why = ("the noise family and scale model by BIC; the best fit's shared mechanisms fit "
           "every regime: its latent holds")
  else:
    ok = lambda fs: [f for f in fs if id(f.row) not in failed]
    finalists = [f for f in (_best(ok(table[:len(table) - len(rest)]), "bic"),
                             _best(ok(rest), "icl")) if f is not None]
    skipped = []
    why = ("the noise family and scale model by BIC on the first latent; " +
           ("its best fit's check failed" if check is not None else "no check") +
           ": K by ICL, the latent by BIC")
  for f in table:
    if id(f.row) in failed:
      f.row["failed"] = failed[id(f.row)]
  chosen = _best(finalists, "bic")
  rows = []
  for f in sorted(table, key=lambda f: (f is not chosen, all(f is not g for g in finalists),
                                        -f.row["bic"])):
    rows.append(dict(f.row, finalist=any(f is g for g in finalists), chosen=f is chosen))
  if check is not None:  # whether its flags hold for the chosen fit (a caller need not redo it)
    check = dict(check, of_chosen=chosen is best_first)
  return ModelChoice(chosen.cfg, rows, chosen.fit, check, tuple(skipped), why)


def _fitter(key, x, adj, x_heldout, log, threads: int = 1):
  """``fitted(cfgs, start=None, log_rows=True)``: fit ``cfgs`` on ``x`` from scratch, or
  each continued from ``start`` (a ``_Fitted`` whose model differs only in its noise
  family or scale model: it starts where that fit ended); up to ``threads`` programs
  side by side. Their rows go to ``log`` (in the configs' order) unless ``log_rows`` is
  False."""
  def fitted(cfgs, start=None, log_rows=True):
    if start is None:
      out = fit_candidates(key, x, adj, cfgs, x_heldout, threads=threads)
    else:
      def one(cfg):
        fit = _continued(jax.random.fold_in(key, 5), start.fit, x, cfg)
        return _Fitted(cfg, scores(fit, x, x_heldout), fit)
      out = concurrency.run_side_by_side([functools.partial(one, c) for c in cfgs], threads)
    for f in out if log is not None and log_rows else ():
      log(f.row)
    return out
  return fitted


def noise_and_scale(key, x, adj, base: FitConfig, selection: Selection = Selection()):
  """The default's first stage on the graph ``adj`` without its check: the first
  decoder's fit under each noise family and scale model of ``selection`` (each continued
  from the fit it extends, the best also from scratch). Returns ``(config, fit)`` of the
  best by BIC: the regime model the default would check on this graph
  (``learn.refine``'s E-step)."""
  best = first_stage(key, x, adj, base, first_restarts=base.restarts,
                     selection=dataclasses.replace(selection, screen=False)).best
  return best.cfg, best.fit


def _first_latent(x, adj, base: FitConfig, sel: Selection, fitted, log, first_restarts: int):
  """The body of ``first_stage``: the first decoder's fit, the noise families and scale
  models each continued from the fit it extends, the best of them checked.
  Returns ``(table, best by BIC, the check's summary or None)``."""
  n = adj.shape[0]
  # The first decoder (the single-target latent, the cheapest) is fitted whatever the
  # budget: max_mechanisms keeps the other latents away from hundreds of variables.
  first_cfgs = [c.replace(restarts=first_restarts or base.restarts) for c in
                candidates(base, n, decoders=sel.decoders[:1], noises=sel.noises,
                           k_candidates=sel.k_candidates)]
  table = fitted(first_cfgs[:1])
  # The noise family and the scale model first (questions about densities, by BIC),
  # each continued from the fit it extends; then the check, on the best of them: a
  # mechanism family the plain fit lacks (heteroscedastic noise, heavy tails) would
  # otherwise read as a second change and send the choice to the richer latents.
  # (The other noise families and the first fit's other scale models all start from the
  # first fit: one call, side by side; then the other noise families' scale models.)
  first_scales = _other_scales(table[0].cfg, sel)
  both = fitted(first_cfgs[1:] + first_scales, table[0])
  noise_fits = both[:len(first_cfgs) - 1]
  table += noise_fits + both[len(first_cfgs) - 1:]
  table += [f for nf in noise_fits for f in fitted(_other_scales(nf.cfg, sel), nf)]
  table = _with_a_fresh_start(table, fitted, log)
  best_first = _best(table, "bic")
  check = None
  if sel.screen and checks.applies(best_first.fit.model):
    check = _summarise_check(sel.check(best_first.fit, x))
  return table, best_first, check


def _other_latents(key, x, adj, base: FitConfig, sel: Selection, table: list, fitted, log,
                   x_heldout) -> list:
  """The other decoders' fits of ``finish_choice``, where the first fit's check failed
  (or none ran): their candidates under the first stage's best noise family and scale
  model, the sparse K = N + 1 grown from the single-target fit, failed candidates fitted
  again from a plainer fit, the K beside the best. Returns their ``_Fitted``."""
  n = adj.shape[0]
  opts = dict(k_candidates=sel.k_candidates, max_mechanisms=sel.max_mechanisms)
  # the noise family and the scale model: questions about densities
  noise, scale = (getattr(_best(table, "bic").cfg, a) for a in ("noise", "scale_model"))
  others = candidates(base.replace(restarts=sel.restarts, scale_model=scale), n,
                      decoders=sel.decoders[1:], noises=(noise,), **opts)
  start = next((f for f in table if f.cfg.decoder == "structured" and f.cfg.noise == noise
                and f.cfg.scale_model == scale), None)
  grow = []
  if start is not None and "sparse" in sel.decoders[1:]:
    # The sparse latent with K = N + 1 contains the single-target one: it starts from it
    # (``_grown``), so it begins where the plainer fit ended.
    nested = base.replace(decoder="sparse", noise=noise, scale_model=scale, n_regimes=n + 1,
                          restarts=1)
    if sel.max_mechanisms <= 0 or mechanisms_per_row(nested, n) <= sel.max_mechanisms:
      others = [c for c in others if (c.decoder, c.n_regimes) != ("sparse", n + 1)]
      grow = [functools.partial(_grown, key, start, nested, x, x_heldout)]
  # the grown fit and the other candidates' programs side by side (they share no data)
  jobs, assemble = candidate_jobs(key, x, adj, others, x_heldout)
  done = concurrency.run_side_by_side(grow + jobs, sel.n_threads)
  warm, rest = done[:len(grow)], assemble(done[len(grow):])
  for f in (warm + rest) if log is not None else ():
    log(f.row)
  rest = rest + warm
  # A richer candidate below one it contains failed its fit: it starts again from that
  # one (the choice then reads only fits that reach what their plainer models reach).
  refit = lambda fs: _refit_failures(key, table + fs, n, sel.nested_tolerance, x,
                                     x_heldout, log)[len(table):]
  rest = refit(rest)
  between = _missing_neighbours(rest, n, sel)
  if between:
    rest = refit(rest + fitted(between))
  return rest


def _other_scales(cfg: FitConfig, sel: Selection) -> list:
  """``cfg`` under the other scale models of ``sel``, each to be continued from a fit of
  ``cfg``: a scale that depends on the parents contains the constant one (its head
  starts at 0)."""
  if not scale_can_read_parents(cfg):
    return []
  return [cfg.replace(scale_model=scale) for scale in sel.scales if scale != cfg.scale_model]


def _with_a_fresh_start(table: list, fitted, log=None) -> list:
  """``table`` (the first decoder's fits, the first from scratch, the others continued
  from it) with its best model by BIC, where that one was continued, fitted from scratch
  too: the fit with the higher log p(x) stays (one model, two starts). A continuation
  keeps the plainer fit's assignment, and where the plainer model put the regimes
  elsewhere, it stays there (heteroscedastic development seed 0 of ``vcm_jax.families``:
  the parents-dependent scale continued from the constant one, -11.81 nats a row; from
  scratch, -11.53 and the check held). Only the row that stays goes to ``log`` (the
  table's rows are the candidates the choice reads)."""
  best = _best(table, "bic")
  if best is table[0]:
    return table
  fresh = fitted([best.cfg], log_rows=False)[0]
  if not fresh.row["log_px"] > best.row["log_px"]:
    return table
  if log is not None:
    log(fresh.row)
  return [fresh if f is best else f for f in table]


def _missing_neighbours(fits: list, n_nodes: int, sel: Selection) -> list:
  """The K next to the best by ICL among the free or sparse ``fits`` (one decoder, noise
  and scale) that the grid skipped (``select.default_k``: 2, 3, 4, 6, 8, 12), as
  configs: K is then chosen among every K around the best, and the grid's gaps cost a
  fit only where the choice lands beside one (multi-target development seeds 0 and 1,
  ``experiments.multitarget_check``: five regimes, the grid's K = 4 and 6 at 0.96x and
  0.77x the ceiling; K = 5 at 1.00x both). None where the K were given
  (``selection.k_candidates``): those are the K asked for."""
  if sel.k_candidates:
    return []
  fits = [f for f in fits if pads(f.cfg)]
  failed = nested_failures([f.row for f in fits], n_nodes, sel.nested_tolerance)
  fits = [f for f in fits if id(f.row) not in failed]
  if not fits:
    return []
  best = _best(fits, "icl")
  same = [f for f in fits if (f.cfg.decoder, f.cfg.noise, f.cfg.scale_model) ==
          (best.cfg.decoder, best.cfg.noise, best.cfg.scale_model)]
  ks = {f.cfg.n_regimes for f in same}
  # (the settings of a candidate fitted from scratch: one started from another fit has one start)
  template = next((f.cfg for f in same if "started_from" not in f.row), best.cfg)
  k = best.cfg.n_regimes
  out = [template.replace(n_regimes=j) for j in (k - 1, k + 1)
         if min(ks) < j < max(ks) and j not in ks]
  return [c for c in out if sel.max_mechanisms <= 0
          or mechanisms_per_row(c, n_nodes) <= sel.max_mechanisms]


def _grown(key, plainer: _Fitted, cfg: FitConfig, x, x_heldout) -> _Fitted:
  """Candidate ``cfg`` (a free or sparse latent) fitted from ``plainer``, a fit of a
  model it contains: the single-target latent read as the sparse one, then its regimes
  split up to ``cfg.n_regimes`` (``model.split_regimes``, the gates relaxed to
  +-``GATE_START``), then trained to the stopping rule: it starts near where the
  plainer fit ended."""
  fit, params = plainer.fit, plainer.fit.result.params
  if plainer.cfg.decoder == "structured":
    params = model_lib.sparse_from_structured(params, GATE_START)
  params = model_lib.split_regimes(jax.random.fold_in(key, 8), params, cfg.n_regimes,
                                   sparse=cfg.decoder == "sparse", gate_logit=GATE_START)
  start = dataclasses.replace(fit, result=fit.result._replace(params=params))
  grown = _continued(jax.random.fold_in(key, 6), start, x, cfg)
  row = dict(scores(grown, x, x_heldout),
             started_from=label(describe(plainer.cfg), x.shape[1]))
  return _Fitted(cfg, row, grown)


def _refit_failures(key, table: list, n_nodes: int, tolerance: float, x, x_heldout,
                    log=None) -> list:
  """``table`` with each free or sparse candidate that failed its fit (its ``log p(x)``
  below that of a candidate it contains: ``nested_failures``) fitted again from the best
  such plainer fit (``_grown``), the smallest K first; the refit replaces the failed fit
  where it scores higher. Each candidate is refitted once; what still fails stays
  marked, and the choice passes it over."""
  tried = set()
  while True:
    failed = nested_failures([f.row for f in table], n_nodes, tolerance)
    todo = [f for f in table if id(f.row) in failed and pads(f.cfg) and f.cfg not in tried]
    if not todo:
      return table
    f = min(todo, key=lambda f: f.cfg.n_regimes)
    tried.add(f.cfg)
    plainer = max((p for p in table if nests(f.row, p.row, n_nodes)),
                  key=lambda p: p.row["log_px"])
    grown = _grown(key, plainer, f.cfg, x, x_heldout)
    if log is not None:
      log(grown.row)
    if grown.row["log_px"] > f.row["log_px"]:
      table = [grown if g is f else g for g in table]


def nests(richer: dict, plainer: dict, n_nodes: int) -> bool:
  """Whether candidate ``richer`` contains ``plainer`` (rows of the choice's table): the
  same noise family, and a sparse latent with more regimes than another sparse one, or
  with at least N + 1 (the single-target latent is the sparse one whose gates are
  the identity), or a free latent with more regimes than another free one."""
  if richer["noise"] != plainer["noise"] or richer is plainer:
    return False
  scale = lambda r: r.get("scale_model", "constant")
  if scale(richer) != scale(plainer) and scale(richer) != "parents":
    return False
  if scale(richer) != scale(plainer) and all(richer[a] == plainer[a] for a in
                                             ("decoder", "n_regimes")):
    return True  # the same latent, a scale that depends on the parents
  if richer["decoder"] == "sparse" and plainer["decoder"] == "structured":
    return richer["n_regimes"] >= n_nodes + 1
  return (richer["decoder"] == plainer["decoder"] != "structured"
          and richer["n_regimes"] > plainer["n_regimes"])


def nested_failures(rows: list, n_nodes: int, tolerance: float) -> dict:
  """``{id(row): why}`` for every candidate whose ``log p(x)`` a row is more than
  ``tolerance`` below that of a candidate it contains: its fit stopped short of what
  the plainer model reaches, so it failed, and the choice must not rest on it."""
  out = {}
  for r in rows:
    below = [p for p in rows if nests(r, p, n_nodes) and r["log_px"] < p["log_px"] - tolerance]
    if below:
      p = max(below, key=lambda p: p["log_px"])
      out[id(r)] = (f"log p(x) {r['log_px']:.4f} a row, below the {p['log_px']:.4f} of "
                    f"{label(p, n_nodes)} that it contains: the fit failed")
  return out


def fit_default(key, x, adj, base: FitConfig, selection: Selection = Selection(), *,
                x_heldout=None, log=None, names=None) -> ModelChoice:
  """The default fit (``vcm_jax.fit`` and the own-data command): the choice on at most
  ``selection.max_rows`` rows, then the chosen model's fit on every row of ``x``
  (data units), with ``selection.violated_restarts`` starts at least where the first
  fit's check failed; then the gross-error term continued from it where
  ``base.outlier_fraction > 0`` (kept by BIC), and the run's checks (``diagnose``, the
  yardstick). Returns the ``ModelChoice`` whose ``fit`` is that final fit, with its
  ``warnings`` and ``extra`` (gross errors, yardstick, settings, thresholds)."""
  x = np.asarray(x, np.float32)
  base = train.without_unused_terms(base, x)
  gross = base.outlier_fraction
  # Gross errors come last, from the plain fit (``_gross_error_stage``): a model that
  # starts with them explains a near-deterministic mechanism's regime change as wild
  # cells, and never finds the regime (held-out physical system: ARI 0.24, not 0.80).
  base = base.replace(outlier_fraction=0.0, robust_units=base.robust_units or gross > 0)
  rows = np.arange(len(x))
  if selection.max_rows and len(x) > selection.max_rows:  # the choice on a random subset
    rows = np.sort(np.random.default_rng(seed_of(key)).choice(len(x), selection.max_rows,
                                                            replace=False))
  first_from = functools.partial(first_stage, key, x[rows], adj, selection=selection,
                                 x_heldout=x_heldout, log=log, first_restarts=base.restarts)
  choice, capacity = _mechanisms_by_heldout_likelihood(key, x, adj, base, selection,
                                                       first_from)
  choice = _final_fit(key, x, adj, base, selection, choice, rows, x_heldout)
  extra = {"settings": dataclasses.asdict(selection), "thresholds": thresholds()}
  if capacity is not None:
    extra["mechanism_capacity"] = capacity
  fit, gross_line = choice.fit, None
  if selection.swap_starts:
    fit, extra["swap_starts"] = swap_starts(key, fit, x, selection.nested_tolerance, names)
  if gross > 0:
    _LOG.info("gross errors: the chosen fit continued with a wild cell's share %g", gross)
    fit, extra["gross_errors"], gross_line = _gross_error_stage(key, fit, x, gross)
  # (a reading at one of the fit's censoring bounds is a probability there: the point
  # masses, tied regimes and yardstick below leave such cells or rows out)
  pinned = diagnose.pinned_cells(fit, x)
  warned = list(diagnose.point_masses(x, names, pinned=pinned))
  warned += [gross_line] if gross_line else []
  warned += [f"candidate {label(r, x.shape[1])} noise {r['noise']}: {r['failed']}"
             for r in choice.table if r.get("failed")]
  warned += diagnose.tied_regimes(fit, x, names, pinned=pinned)
  extra["regimes_supported"], line = diagnose.unsupported_regimes(fit, x, names)
  dropped = [d["regime"] for d in extra["regimes_supported"].get("regimes_not_paying", ())]
  if dropped and fit.model.cfg.prior == "learned" and fit.model.encoder is None:
    # (what the test found, acted on: those rows go to the regimes that explain them at
    # the higher BIC; a never-targeted node's regime took 19 of 1837 observational rows,
    # ARI 0.983 -> 0.998, the Bayes ceiling)
    fit = fit.without_regimes(dropped)
    line += f"; the fit drops {'them' if len(dropped) > 1 else 'it'} (prior weight 0)"
  warned += [line] if line else []
  if selection.yardstick:
    _LOG.info("the yardstick: a Gaussian mixture, K by BIC, beside the fit")
    extra["yardstick"], line = _yardstick(key, fit, x, pinned, names)
    warned += [line] if line else []
  check = choice.check
  if check is not None and fit is not choice.fit:
    check = dict(check, of_chosen=False)
  return choice._replace(fit=fit, check=check, warnings=tuple(warned), extra=extra)


def _mechanisms_by_heldout_likelihood(key, x, adj, base: FitConfig, selection: Selection,
                                      first_from) -> tuple[ModelChoice, dict | None]:
  """The choice (``finish_choice(first_from(base))``, ``first_from(base) -> FirstStage``)
  with the mechanisms ``capacity`` prefers on few rows (at most
  ``selection.capacity_max_rows``; MLP mechanisms in ``base``): its first candidate's
  k-fold held-out log p(x) with linear and with MLP mechanisms. Linear mechanisms are
  kept only where their first fit's shared-mechanism check holds: a check that fails
  says a mechanism's law is not linear-Gaussian (heteroscedastic development seed 1 at
  300 rows: the linear fit's check failed, the choice went to a sparse K = 3, ARI 0.15;
  with MLP mechanisms 0.45). Not asked on fewer
  than two rows a fold. Returns ``(choice, the summary or None where the question was
  not asked)``."""
  # (at least two rows in every fold's test rows)
  if not (selection.capacity_max_rows and 2 * selection.capacity_folds <= len(x)
          <= selection.capacity_max_rows and base.mechanism == "mlp"):
    return finish_choice(first_from(base)), None
  first = candidates(base, np.asarray(adj).shape[0], decoders=selection.decoders[:1],
                     noises=selection.noises[:1], k_candidates=selection.k_candidates)[0]
  _LOG.info("mechanisms on %d rows: linear or MLP by %d-fold held-out log p(x)", len(x),
            selection.capacity_folds)
  found = capacity.choose_mechanism(jax.random.fold_in(key, 11), x, adj, first,
                                    selection.capacity_folds, seed_of(key))
  _LOG.info("held-out log p(x) a row: linear %.3f, MLP %.3f",
            found["heldout_log_px"]["linear"], found["heldout_log_px"]["mlp"])
  if found["mechanism"] == "linear":
    linear = first_from(base.replace(mechanism="linear"))
    found["linear_check_holds"] = linear.check is None or linear.holds
    if found["linear_check_holds"]:
      return finish_choice(linear), dict(found, chosen="linear",
                                         why="the higher held-out log p(x)")
    why = "the higher held-out log p(x), but its first fit's check failed"
    _LOG.info("linear mechanisms: their first fit's check failed; MLP mechanisms")
  else:
    why = "the higher held-out log p(x)"
  return finish_choice(first_from(base)), dict(found, chosen="mlp", why=why)


def thresholds() -> dict:
  """The constants the identification, the verdict and the warnings read (the check's
  and the choice's own are ``Selection`` fields), as every run records them."""
  from vcm_jax import baselines, identify
  return {"change_threshold": identify.CHANGE_THRESHOLD, "gate_start": GATE_START,
          "point_mass_share": diagnose.POINT_MASS_SHARE,
          "gross_error_excess": diagnose.GROSS_ERROR_EXCESS,
          "yardstick_margin": baselines.yardstick.MARGIN,
          "free_target_screen_margin": identifiability.SCREEN_MARGIN,
          "free_target_screen_min_rows": identifiability.SCREEN_MIN_ROWS,
          "free_target_screen_full_cost": identifiability.SCREEN_FULL_COST,
          "free_target_screen_max_cost": identifiability.SCREEN_MAX_COST}


def _gross_error_stage(key, fit: api.Fit, x, fraction: float):
  """The chosen fit continued with gross errors (a cell is a Cauchy with probability
  ``fraction``), from its own parameters: kept where its BIC (one parameter more) is
  higher. Returns ``(fit, summary, warning or None)``; the summary has both log p(x)
  and the rows flagged against what the prior expects (``diagnose.gross_error_share``)."""
  s, n = x.shape
  plain_lp = float(fit.log_prob(jnp.asarray(x)).sum())
  cont = _continued(jax.random.fold_in(key, 3), fit, x,
                    fit.model.cfg.replace(outlier_fraction=fraction))
  gross_lp = float(cont.log_prob(jnp.asarray(x)).sum())
  kept = gross_lp - 0.5 * np.log(s) > plain_lp
  scores = np.concatenate([b for _, b in rows_lib.host_blocks(cont.outlier_score, x)])
  share, line = diagnose.gross_error_share(scores, n, fraction)
  summary = {"fraction": fraction, "kept": bool(kept), "log_px_plain": plain_lp / s,
             "log_px_with_gross_errors": gross_lp / s, **share}
  # A model with the term contains the plain one up to its fixed fraction's price a cell.
  price = -n * np.log1p(-fraction)
  if gross_lp / s < plain_lp / s - price - 1e-3:
    summary["failed"] = (f"log p(x) {gross_lp / s:.4f} a row with gross errors, below the "
                         f"plain fit's {plain_lp / s:.4f} that it contains: the fit failed")
  return (cont if kept else fit), summary, (line if kept else None) or summary.get("failed")


def _yardstick(key, fit: api.Fit, x, pinned=None, names=None):
  """A Gaussian mixture, K by BIC, beside the structural fit (``baselines.yardstick``):
  ``(summary, warning or None)``. Rows with a reading at one of the fit's censoring
  bounds (``pinned``: ``[S, N]`` cells, or ``[S]`` rows; found here where None; the
  columns are named, by ``names``, only from cells) are left out of both, as in the
  free-target screen (``identifiability.unpinned_rows``): the fit scores such a cell by
  a tail's probability, the mixture by a density it can make as large as its
  covariance floor allows (the warning then fires on a fit that is the data's own law:
  ``tests/test_yardstick.py``). The mixture, fitted on the rows kept, is a density given
  that no reading is pinned, the fit's a joint one: the mixture is read as "kept with
  the kept share q, then its density" (``log q`` a row), as the screen reads its rival.
  Where rows were left out and fewer than ``identifiability.SCREEN_MIN_ROWS`` are left,
  no comparison, and the warning says so, naming the columns at a bound (a two-valued
  column is in every row: the check of the mechanisms must not vanish unsaid)."""
  from vcm_jax.baselines import yardstick
  every_row = x
  x, kept = identifiability.unpinned_rows(fit, x, pinned, names)
  if "skipped" in kept:
    return kept, ("the yardstick (a Gaussian mixture beside the fit, which warns where "
                  f"the mechanisms or the graph are wrong) was not computed: {kept['skipped']}")
  # A rounded column's readings spread over their rounding cells, for both models (as
  # in the screen): the covariance floor alone left the mixture up to log sqrt(12 /
  # 2 pi) = 0.32 nats a row a rounded column above the readings' law, and it warned on
  # a fit of two 5-level ratings and their child, single-target (0.52 nats a row).
  x = units.dequantised(x, units.rounding_step(every_row))
  found = yardstick.gaussian_mixture_yardstick(jax.random.fold_in(key, 7), x,
                                               resolution_of=every_row)
  found = dict(found, log_px=found["log_px"] + kept["log_share_kept"])
  s = len(x)
  warn = yardstick.compare(found, float(fit.log_prob(jnp.asarray(x)).mean()),
                           n_parameters(fit), s)
  summary = {k: found[k] for k in ("k", "log_px", "n_parameters")}
  return (dict(summary, bic=yardstick.bic(found["log_px"], found["n_parameters"], s), rows=s,
               **kept), (warn["message"] if warn else None))


def _final_fit(key, x, adj, base, selection, choice, rows, x_heldout) -> ModelChoice:
  """The chosen model on every row, with ``selection.violated_restarts`` starts at least
  where the first fit's check failed."""
  violated = choice.check is not None and not choice.check["holds"]
  restarts = max(base.restarts, selection.violated_restarts) if violated else base.restarts
  on_all_rows, more = len(rows) == len(x), choice.config.restarts < restarts
  if on_all_rows and not more:
    return choice
  cfg = choice.config
  why = ": the first fit's check failed" if violated else ""
  _LOG.info("the chosen model (%s, on %d rows) %s on every row (%d)%s",
            ", ".join(f"{k} {v}" for k, v in describe(cfg).items()), len(rows),
            "fitted again" if more else "continued", len(x),
            f" with {restarts} starts{why}" if more else "")
  keep = choice.fit if on_all_rows else _continued(key, choice.fit, x)
  if not on_all_rows and not more:
    final = keep  # the best of the subset's starts, continued on every row
  elif cfg.decoder != "structured" and on_all_rows:  # the candidates' program, more starts
    final = _more_starts(key, x, adj, choice, restarts, keep, x_heldout, selection.n_threads)
  else:
    final = fit_candidates(jax.random.fold_in(key, 1), x, adj,
                           [cfg.replace(restarts=restarts)])[0].fit
    if keep is not None and float(keep.result.restart_log_px.max()) > \
        float(final.result.restart_log_px.max()):
      final = keep
  check = choice.check
  if check is not None and final is not choice.fit:  # the check's flags were another fit's
    check = dict(check, of_chosen=False)
  return choice._replace(fit=final, check=check)


def swap_starts(key, fit: api.Fit, x, tolerance: float, names=None):
  """A single-target ``fit`` continued from each start that exchanges its observational
  regime with a regime k of prior weight above 0 (``model.swap_reference``: k's rows read
  as the observational ones, regime 0's as the intervention on k's node), all in one
  program (a start a restart); the best is kept where its ``log p(x)`` on ``x`` beats the
  fit's by more than ``tolerance`` nats a row. Returns ``(fit, record)``: the record has
  ``log_px`` a row of each start's end (by the node it swapped, named by ``names``), the fit's
  ``fit_log_px``, and ``kept``, the swapped node or None; no record (None) where the fit
  is not single-target with a learned prior and the exact posterior.

  Why: which regime is observational is a local optimum of the fit. On X -> Y with
  do(X) moving X by 4 sd and do(Y) shifting Y (a new-user tour's data, 2000 rows), the
  default's MLP mechanisms fitted Y's shared mechanism through the do(Y) rows near X = 0
  and the do(X) rows near X = 4, and named the do(Y) rows observational under
  "identified"; 16 random restarts all ended there (-3.863 nats a row; the true SCM
  -3.832). Continued from the swapped start, the fit ends at -3.829 with the true
  observational rows, ARI 0.86 -> 0.92. Not in the default (``Selection.swap_starts``):
  on misspecified mechanisms a higher optimum need not be the right reading (held-out
  development seeds: lower ARI on 4 of 8 fits, one observational regime lost)."""
  model = fit.model
  if not (model.structured and model.cfg.prior == "learned" and model.encoder is None):
    return fit, None
  weights = np.asarray(fit.weights)
  nodes = [k - 1 for k in range(1, len(weights)) if weights[k] > 0]
  if not nodes:
    return fit, None
  _LOG.info("swap starts: the observational regime exchanged with each of %d regimes, each "
            "start continued", len(nodes))
  starts = jax.tree.map(lambda *a: jnp.stack(a), *[
      model_lib.swap_reference(fit.result.params, t) for t in nodes])
  _, program = _continue_program(model.cfg.replace(restarts=len(nodes)), model.n_nodes,
                                 fit.parent_idx.shape[1], each=True)
  x = jnp.asarray(x, jnp.float32)
  result = program(jax.random.fold_in(key, 5), starts, fit.result.loc, fit.result.scale, x,
                   fit.parent_idx, fit.parent_mask)
  name = lambda t: f"X{t}" if names is None else str(names[t])
  ends = np.asarray(result.restart_log_px, np.float64)
  record = {"log_px": {name(t): float(v) for t, v in zip(nodes, ends)},
            "fit_log_px": float(fit.score(x)), "kept": None}
  if not np.isfinite(ends).any():
    return fit, record
  swapped = _from_result(model, result, x, fit.parent_idx, fit.parent_mask, fit.order)
  gain = float(swapped.score(x)) - record["fit_log_px"]
  if gain <= tolerance:
    return fit, record
  record["kept"] = name(nodes[int(np.nanargmax(np.where(np.isfinite(ends), ends, -np.inf)))])
  _LOG.info("swap starts: the start that read the rows of the regime that changes %s as "
            "the observational ones ended %.4f nats a row higher: kept", record["kept"], gain)
  return swapped, record


def _continued(key, fit: api.Fit, x, cfg: FitConfig | None = None) -> api.Fit:
  """``fit`` continued on the rows ``x`` (every row, where it was fitted on a subset),
  one start, under ``cfg`` (default its own: another noise or gross-error setting
  with the same parameters)."""
  cfg = (cfg or fit.model.cfg).replace(restarts=1)
  dec = fit.result.params["decoder"]["params"]
  if cfg.scale_model == "parents" and "scale_out" not in dec:  # its head starts at 0: the
    head = jnp.zeros((fit.model.n_nodes, cfg.hidden[-1]))    # same model, a richer family
    params = dict(fit.result.params, decoder={"params": dict(dec, scale_out=head)})
    fit = dataclasses.replace(fit, result=fit.result._replace(params=params))
  model, program = _continue_program(cfg, fit.model.n_nodes, fit.parent_idx.shape[1])
  x = jnp.asarray(x, jnp.float32)
  result = program(jax.random.fold_in(key, 2), fit.result, x, fit.parent_idx, fit.parent_mask)
  api.check_finite(result, f"the chosen fit {describe(cfg)} continued on every row")
  return _from_result(model, result, x, fit.parent_idx, fit.parent_mask, fit.order)


@functools.cache
def _continue_program(cfg: FitConfig, n_nodes: int, max_parents: int, each: bool = False):
  """The model and the compiled continuation: from one fit (``train.continue_fit``) or,
  ``each``, from one start a restart (``train.continue_each``)."""
  trainer = api._trainer(cfg, n_nodes, max_parents)
  step = train.continue_each if each else train.continue_fit
  return trainer.model, jax.jit(functools.partial(step, trainer=trainer))


def _more_starts(key, x, adj, choice: ModelChoice, restarts: int, keep, x_heldout,
                 threads: int = 1) -> api.Fit:
  """More starts of the chosen padded-K model through the candidates' compiled program
  (as many as the program's batch, at least enough for ``restarts``); the best
  ``log p(x)`` among them and ``keep`` wins."""
  cfg = choice.config
  chosen = next((r for r in choice.table if r.get("chosen")), {})
  # the K fitted with it in one program (``fitted_with``); for a candidate started from
  # another fit, the bucket its K would share with those fitted from scratch
  group = chosen.get("fitted_with")
  if not group:
    ks = [r["n_regimes"] for r in choice.table if r["decoder"] == cfg.decoder
          and r["noise"] == cfg.noise and r["scale_model"] == cfg.scale_model
          and ("started_from" not in r or r is chosen)]
    group = next(run for run in _buckets(ks, ks, 0) if cfg.n_regimes in run)
  batch = len(group)
  calls = -(-(restarts - 1) // batch)
  best = keep
  jobs = [functools.partial(  # (one program a call; the calls share no data: side by side)
      fit_candidates, list(jax.random.split(jax.random.fold_in(key, 1 + c), batch)), x, adj,
      [cfg] * batch, x_heldout, pad_to=max(group)) for c in range(calls)]
  for f in (f for fits in concurrency.run_side_by_side(jobs, threads) for f in fits):
    if best is None or float(f.fit.result.restart_log_px.max()) > \
        float(best.result.restart_log_px.max()):
      best = f.fit
  return best
