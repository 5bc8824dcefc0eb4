"""A mixture of linear-Gaussian SCMs on one DAG whose families choose the regimes that
change them: the model the graph is learned with when nobody gives one.

Regime ``k`` has weight ``pi_k``. Node ``j``'s mechanism ``x_j = a + b . x_pa(j) + e``,
``e ~ N(0, s^2)``, has one shared copy and an own copy for each regime ``k`` with
``own[k, j]``. No regime is told which node it targets and a regime may change several
mechanisms, so the model holds single- and multi-target regimes alike.

* ``fit_params``: every copy by weighted least squares under given responsibilities
  (the M-step's parameters, the same fits ``structure.family_scores_free`` scores);
* ``log_joint``: ``log pi_k + log p(x_s | regime k)`` ``[S, K]``, so the posterior and
  ``log p(x)`` are exact;
* ``structural_em``: from a first posterior (a graph-free Gaussian mixture's), alternate
  the M-step (the best DAG and each family's changing regimes,
  ``structure.family_scores_free`` then ``structure.search``) and the exact E-step, and
  keep the round with the best BIC.

Why this model and not the VAE's single-target latent in the loop (the design until
2026-12-02): with regimes that change several nodes, the single-target latent cannot
hold them, and each added edge let it explain a co-shift, so its BIC favoured denser
graphs round after round (development seeds 0-1 of the Faria multi-target setting: the
first graph exact, structural EM then 15 and 14 skeleton errors). Here the E-step and
the M-step read one model, so EM climbs one objective.
"""
from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from vcm_jax import rows, structure

_LOG_2PI = float(np.log(2.0 * np.pi))


class Params(NamedTuple):
  log_pi: jax.Array     # [K]
  intercept: jax.Array  # [K, N]: node j's copy under regime k
  coef: jax.Array       # [K, N, N]: coef[k, j, i], x_i's weight in node j's copy
  var: jax.Array        # [K, N]


@jax.jit
def fit_params(xs, weights, adj, own, nonlinear=None, var_floor=1e-6) -> Params:
  """Each regime's copy of each mechanism, by weighted least squares.

  Args:
    xs: ``[S, N (1 + M)]`` rows (standardised: ``var_floor`` is relative to a column's
      variance), then ``M`` hinge blocks (``structure.hinge_basis``; ``M = 0``: none).
    weights: ``[S, K]`` responsibilities.
    adj: ``[N, N]`` the DAG (``adj[i, j]``: ``i -> j``).
    own: ``[K, N]`` bool, regime ``k`` has its own copy of node ``j``'s mechanism; the
      others share one, fitted on their rows pooled.
    nonlinear: ``[N]`` bool, node ``j``'s mechanism also reads its parents' hinges
      (default none).
    var_floor: the residual variance floor (hard interventions, near-deterministic nodes).
  """
  return _params_from_moments(*structure._regime_moments(xs, weights), adj, own, nonlinear,
                              var_floor)


def _params_from_moments(w_k, mu, cov, adj, own, nonlinear, var_floor, nodes=None) -> Params:
  """``fit_params`` from the responsibilities' moments (``structure._regime_moments``:
  weight ``[K]``, mean ``[K, F]``, covariance ``[K, F, F]``), which do not depend on the
  graph: one set of moments serves every candidate graph under one posterior.
  ``nodes`` ``[M]``: only those nodes' copies (``intercept``, ``coef``, ``var`` ``[K, M, ...]``)."""
  n = adj.shape[0]
  f = mu.shape[1]
  pa = (jnp.asarray(adj) > 0).T                                             # [j, i]
  nl = jnp.zeros(n, bool) if nonlinear is None else jnp.asarray(nonlinear)
  idx = at = jnp.arange(n)  # the nodes' columns, and their rows in the arrays below
  if nodes is not None:
    own, pa, nl, idx = own[:, nodes], pa[nodes], nl[nodes], jnp.asarray(nodes)
    at = jnp.arange(idx.shape[0])
  _, mu_sh, cov_sh = structure._shared_moments(w_k, mu, cov, own)
  m = jnp.where(own[:, :, None], mu[:, None, :], mu_sh[None])               # [K, N, F]
  c = jnp.where(own[:, :, None, None], cov[:, None], cov_sh[None])          # [K, N, F, F]
  reads = jnp.concatenate([pa] + [pa & nl[:, None]] * (f // n - 1), axis=1)  # [j, F]
  eye = jnp.eye(f, dtype=c.dtype)
  a = jnp.where(reads[:, :, None] & reads[:, None, :], c, eye)
  ridge = structure.basis_ridge(n, f // n - 1)
  a = a + eye * (1e-7 * jnp.diagonal(a, axis1=-2, axis2=-1)[..., None] + 1e-12
                 + jnp.where(reads, ridge, 0.0)[..., None])
  b = jnp.where(reads, jnp.transpose(c[:, at, :, idx], (1, 0, 2)), 0.0)     # [K, j, F]
  coef = jnp.where(reads, jnp.linalg.solve(a, b[..., None])[..., 0], 0.0)
  var = jnp.maximum(c[:, at, idx, idx] - (coef * b).sum(-1), var_floor)
  intercept = m[:, at, idx] - (coef * m).sum(-1)
  log_pi = jnp.log(jnp.maximum(w_k, 1e-30) / jnp.sum(w_k))
  return Params(log_pi=log_pi, intercept=intercept, coef=coef, var=var)


@jax.jit
def log_joint(xs, params: Params):
  """``log pi_k + sum_j log N(x_sj | copy (k, j))``: ``[S, K]`` (``xs`` as ``fit_params``)."""
  n = params.var.shape[1]
  return params.log_pi[None] + _copy_terms(xs, xs[:, :n], params.intercept, params.coef,
                                           params.var).sum(-1)


def _copy_terms(xs, x_nodes, intercept, coef, var):
  """``[S, K, M]``: ``log N(x_sj | copy (k, j))`` for ``M`` nodes, their columns ``x_nodes``
  ``[S, M]`` and their copies' ``intercept [K, M]``, ``coef [K, M, F]``, ``var [K, M]``."""
  pred = intercept[None] + jnp.einsum("sf,kjf->skj", xs, coef)
  r = x_nodes[:, None, :] - pred
  return -0.5 * (_LOG_2PI + jnp.log(var)[None] + r * r / var[None])


def n_params(adj, own, nonlinear=None, n_knots: int = 0) -> int:
  """The free parameters: per family ``(w + 2)`` per copy, ``w`` its weights (``|P|``, or
  ``|P| (1 + n_knots)`` with hinges), plus ``K - 1`` regime weights."""
  size = (np.asarray(adj) > 0).sum(0)
  if nonlinear is not None:
    size = np.where(np.asarray(nonlinear), size * (1 + n_knots), size)
  copies = 1 + np.asarray(own).sum(0)
  return int(((size + 2) * copies).sum() + own.shape[0] - 1)


def two_graphs_in_turn(history, tol: float) -> bool:
  """Whether ``structural_em``'s last four rounds are two different graphs in turn, twice,
  the score no higher than two rounds before (by more than ``tol`` nats): a tied edge
  flipped every round, which the rounds left would only go on flipping (a tour: to
  max_rounds every time); the best round is kept."""
  if len(history) < 4:
    return False
  same = lambda i, j: np.array_equal(history[i]["adj"], history[j]["adj"])
  return (not same(-1, -2) and same(-1, -3) and same(-2, -4)
          and history[-1]["log_px"] <= history[-3]["log_px"] + tol)


def structural_em(x, weights, *, start=None, max_rounds: int = 20, max_parents: int = 3,
                  candidates=None, penalty="bic", method: str = "auto", var_floor: float = 1e-6,
                  tol: float = 1e-4, patience: int = 3, param_iters: int = 5,
                  forbidden=None, prune: bool = True, report: bool = True,
                  quantiles=(),
                  nonlinear_parents: int = structure.NONLINEAR_PARENTS,
                  **search_kwargs) -> structure.StructuralEM:
  """Structural EM on the free-target mixture of linear-Gaussian SCMs.

  Round r: the M-step under responsibilities ``q`` (the best DAG under
  ``structure.family_scores_free``'s table, hill climbing from the previous graph above
  ``structure.AUTO_EXACT_NODES``; where a node reaches the table's cap of
  ``max_parents``, its sets with one parent more are scored and the search run again,
  ``structure.grown_at_cap``; each family's changing regimes as the table chose
  them; every copy refitted), then the exact E-step: ``q`` the posterior, ``log p(x)``
  the model's, less ``0.5 log S`` per parameter (BIC). Stops when the graph is the
  previous round's and BIC moved less than ``tol`` per row, when the graph has not
  changed for ``patience`` rounds, or after ``max_rounds``. Where the rounds climbed
  (``method="auto"`` above ``structure.AUTO_EXACT_NODES`` nodes, up to
  ``structure.MAX_EXACT_NODES``), the best round's table is then searched exactly once
  and that graph kept if its BIC is higher (``_exact_polish``).

  Args:
    x: ``[S, N]`` data (standardised inside; scores in the data's units).
    weights: ``[S, K]`` the first responsibilities.
    start: the graph hill climbing starts from in the first round (default empty).
    max_parents, candidates, penalty, var_floor, quantiles, nonlinear_parents:
      ``structure.family_scores_free``'s (each family linear or hinge, as its table chose).
    method, forbidden, search_kwargs: ``structure.search``'s.
    prune: then remove or reverse edges while the model's BIC rises (``_prune``).
    param_iters: parameter EM rounds (graph and change sets fixed) after each M-step.
    report: compute ``structure.edge_report`` of the best graph.

  Returns:
    ``structure.StructuralEM``: the best round's graph, BIC, posterior and changes
    ``[K, N]``; ``history[r]``: ``adj``, ``log_px`` (the BIC), the edges ``added``,
    ``removed`` and ``reversed`` from the previous round.
  """
  x = np.asarray(x, np.float64)
  s, n = x.shape
  e_step = _e_step_of(x, penalty=penalty, var_floor=var_floor, quantiles=quantiles)
  q = np.asarray(weights, np.float64)
  adj = np.zeros((n, n), np.int32) if start is None else (np.asarray(start) > 0).astype(np.int32)
  prev = adj  # (round 0's edges added, removed, reversed: from the start, a repair's given graph)
  history, best = [], None
  for r in range(max_rounds):
    fam, own_table = structure.family_scores_free(x, q, max_parents=max_parents,
                                                  candidates=candidates, penalty=penalty,
                                                  var_floor=var_floor, quantiles=quantiles,
                                                  nonlinear_parents=nonlinear_parents)
    try:
      adj = structure.search(fam, start=adj, forbidden=forbidden, method=method,
                             **search_kwargs)
    except ValueError:  # a node with no finite family: a degenerate posterior
      if best is None:
        raise ValueError("structural EM: no DAG scores finitely under the first "
                         "responsibilities (a degenerate regime posterior)") from None
      history[-1]["stop"] = "no finite DAG under the next responsibilities"
      break
    adj, fam, own_table = _past_the_cap(x, q, fam, own_table, adj, cap=max_parents,
                                        candidates=candidates, penalty=penalty,
                                        var_floor=var_floor, forbidden=forbidden,
                                        method=method, **search_kwargs)
    own, nl = structure.changes_of(fam, own_table, adj), structure.nonlinear_of(fam, adj)
    # A few parameter EM rounds on the graph just chosen: they cost milliseconds where a
    # family table costs seconds, and bring the posterior nearer its fixed point.
    bic, q = e_step(q, adj, own, nl, iters=param_iters)
    entry = dict(round=r, adj=adj, log_px=bic, **structure.edge_diff(prev, adj))
    history.append(entry)
    if best is None or bic > best[1]:
      best = (adj, bic, q, own, fam, own_table)
    if r and np.array_equal(adj, prev) and abs(bic - history[-2]["log_px"]) < tol * s:
      entry["stop"] = "converged"
      break
    # The graph is what the search is for: once it has held for ``patience`` rounds the
    # responsibilities only refine (development seeds: 20+ rounds of < 0.01 nats a row).
    if r >= patience and all(np.array_equal(adj, h["adj"]) for h in history[-patience - 1:]):
      entry["stop"] = f"graph unchanged for {patience} rounds"
      break
    if two_graphs_in_turn(history, tol * s):
      entry["stop"] = "two graphs in turn"
      break
    prev = adj
  if method == "auto" and structure.AUTO_EXACT_NODES < n <= structure.MAX_EXACT_NODES:
    best = _exact_polish(x, e_step, best, cap=max_parents, candidates=candidates,
                         penalty=penalty, var_floor=var_floor, forbidden=forbidden,
                         param_iters=param_iters, history=history, **search_kwargs)
  b_adj, b_score, b_q, b_own, b_fam, b_table = best
  if prune:
    b_adj, b_score, b_q, b_own, _, pruned = _prune(e_step, b_q, b_adj, b_fam, b_table,
                                                   forbidden=forbidden,
                                                   required=search_kwargs.get("required"),
                                                   min_gain=tol * s)
    if pruned:
      history.append(dict(round=len(history), adj=b_adj, log_px=b_score, pruned=pruned,
                          **structure.edge_diff(history[-1]["adj"], b_adj)))
  edges = structure.edge_report(b_fam, b_adj, method=method) if report else []
  return structure.StructuralEM(adj=b_adj, score=b_score, weights=b_q, changes=b_own,
                                history=history, edges=edges, family=b_fam)


def _past_the_cap(x, q, fam, own_table, adj, *, cap, candidates, penalty, var_floor,
                  forbidden, method, **search_kwargs):
  """The search's graph, its table grown past the parent cap where the graph reaches it
  (``structure.grown_at_cap``) and searched again from that graph, until no node at the
  cap lacks a superset or the graph holds."""
  while True:
    grown = structure.grown_at_cap(fam, own_table, adj, x, q, cap=cap, candidates=candidates,
                                   penalty=penalty, var_floor=var_floor)
    if grown is None:
      return adj, fam, own_table
    fam, own_table = grown
    new = structure.search(fam, start=adj, forbidden=forbidden, method=method, **search_kwargs)
    if np.array_equal(new, adj):
      return adj, fam, own_table
    adj = new


def _exact_polish(x, e_step, best, *, cap, candidates, penalty, var_floor, forbidden,
                  param_iters, history, **search_kwargs):
  """The best round's table searched exactly (``structure.search(method="exact")``, grown
  past the cap the same way), kept where the model's BIC is higher: ``best`` or the
  polished ``(adj, BIC, posterior, changes, table, change table)``, a ``history`` entry
  (``exact: True``) where it was kept.

  Where the rounds climb (above ``structure.AUTO_EXACT_NODES``) a node can gather parents
  that only a run of reversals would give back (n = 20 report seed 101 at ccf2538: a root
  took 9), and the DP over subsets, about 1 s at N = 20, is the table's optimum. Once, not
  every round: the DP in every round (tried on development seeds 0 / 1 of the n = 20
  setting) ended seed 1 at a lower BIC and took longer (docs/benchmarks.md)."""
  b_adj, b_score, b_q, b_own, b_fam, b_table = best
  required = search_kwargs.get("required")
  try:
    alt = structure.search(b_fam, method="exact", forbidden=forbidden, required=required)
  except ValueError:  # (the table holds no DAG with the required edges: the rounds' stands)
    return best
  alt, fam, table = _past_the_cap(x, b_q, b_fam, b_table, alt, cap=cap, candidates=candidates,
                                  penalty=penalty, var_floor=var_floor, forbidden=forbidden,
                                  method="exact", **search_kwargs)
  if np.array_equal(alt, b_adj):
    return best
  own = structure.changes_of(fam, table, alt)
  bic, q = e_step(b_q, alt, own, structure.nonlinear_of(fam, alt), iters=param_iters)
  # against the round's graph given the same EM rounds from the same posterior (its
  # ``b_score`` had fewer: the polish must not win by them)
  base, _ = e_step(b_q, b_adj, b_own, structure.nonlinear_of(b_fam, b_adj), iters=param_iters)
  if not bic > max(base, b_score):
    return best
  history.append(dict(round=len(history), adj=alt, log_px=bic, exact=True,
                      **structure.edge_diff(b_adj, alt)))
  return alt, bic, q, own, fam, table


class _EStep(NamedTuple):
  """Parameter EM on the rows ``xs`` (standardised, their hinge basis built, once) and the
  constants that turn its ``log p(x)`` into the BIC in the data's units. Called as
  ``e_step(q, adj, own, nonlinear, iters=1) -> (BIC, posterior)`` (``_e_step``); the
  pruning's screen reads the rows and constants (``_screen``)."""
  xs: jax.Array         # [S, N (1 + knots)] float32
  per_param: float      # the penalty per parameter (BIC: 0.5 log S)
  var_floor: float
  log_scale: float      # sum of the log standardising scales: data units' log p(x)
  n_knots: int

  def __call__(self, q, adj, own, nonlinear, *, iters: int = 1):
    return _e_step(self.xs, q, adj, own, nonlinear, per_param=self.per_param,
                   var_floor=self.var_floor, log_scale=self.log_scale,
                   n_knots=self.n_knots, iters=iters)


def _e_step_of(x, *, penalty="bic", var_floor=1e-6, quantiles=()) -> _EStep:
  """``_EStep`` on the rows ``x`` (data units)."""
  xs, scale = structure.standardise(x)
  xs = jnp.asarray(structure.hinge_basis(xs, quantiles), jnp.float32)
  return _EStep(xs, per_param=structure._penalty_per_parameter(penalty, x.shape[0]),
                var_floor=var_floor, log_scale=float(np.log(scale).sum()),
                n_knots=len(quantiles))


def latent_score(x, weights, adj, own, *, iters: int = 20) -> tuple[float, float]:
  """``(log p(x) a row, BIC)`` of the mixture with the DAG ``adj`` and the change sets
  ``own [K, N]`` held, after ``iters`` rounds of parameter EM from the responsibilities
  ``weights [S, K]`` (a given latent scored in this family)."""
  x = np.asarray(x, np.float64)
  adj, own = np.asarray(adj).astype(np.int32), np.asarray(own, bool)
  bic, _ = _e_step_of(x)(np.asarray(weights, np.float64), adj, own,
                         np.zeros(adj.shape[0], bool), iters=iters)
  penalty = structure._penalty_per_parameter("bic", x.shape[0]) * n_params(adj, own)
  return float((bic + penalty) / x.shape[0]), float(bic)


def _e_step(xs, q, adj, own, nonlinear, *, per_param, var_floor, log_scale, n_knots,
            iters: int = 1):
  """``iters`` rounds of parameter EM on a fixed graph, change sets and mechanism kinds
  from ``q``: ``(BIC in the data's units, the posterior)``."""
  for _ in range(iters):
    params = fit_params(xs, jnp.asarray(q, jnp.float32), jnp.asarray(adj), jnp.asarray(own),
                        jnp.asarray(nonlinear), var_floor)
    lj = np.asarray(log_joint(xs, params), np.float64)
    lj = np.where(np.isnan(lj), -np.inf, lj)
    top = lj.max(1, keepdims=True)
    if not np.isfinite(top).all():  # a row no regime explains: this fit has failed
      return -np.inf, q
    log_px = float((top[:, 0] + np.log(np.exp(lj - top).sum(1))).sum()) - xs.shape[0] * log_scale
    q = np.exp(lj - top)
    q /= q.sum(1, keepdims=True)
  return log_px - per_param * n_params(adj, own, nonlinear, n_knots), q


# Of a pruning pass's removals and reversals, this many (the best after one round of
# parameter EM, ``_screen``) are judged with all of ``_prune``'s rounds. Measured with
# every candidate judged, on development seeds 0-2 of Kumar et al.'s soft shifts, 0 of
# their hard ones, 0-1 of Faria et al.'s linear and 0 of their MLP settings (16-39
# candidates a pass) and seed 0 of our generator at N = 30 (85-99): the one taken was
# never below 5th by the one-round score. Judging every candidate was 57% of the graph
# search at 20000 x 30 (954 of 1666 s).
PRUNE_SCREEN = 16


def _prune(e_step, q, adj, fam, own_table, *, forbidden=None, required=None, iters: int = 3,
           screen: int = PRUNE_SCREEN, min_gain: float = 0.0):
  """Greedy removals and reversals of edges judged by the model's own BIC (after
  ``iters`` rounds of parameter EM from ``q`` on each candidate graph, the current graph
  given the same rounds), the best taken while one gains more than ``min_gain`` nats and
  leads to a graph not held before. Where a pass has more than ``screen`` candidates (0:
  never), those with the best BIC after one round (``_screen``) are the ones judged.

  Why: the M-step maximises the expected complete-data score under ``q``, and soft,
  overlapping regimes can hold it at a graph with extra edges whose log p(x) is below
  the graph without them (development seeds 1-2 of Kumar et al.'s soft shifts: the
  true graph, refitted from the same posterior, 42 nats above the search's)."""
  n = adj.shape[0]
  forbidden = np.zeros((n, n), bool) if forbidden is None else np.asarray(forbidden) > 0
  required = np.zeros((n, n), bool) if required is None else np.asarray(required) > 0
  own = structure.changes_of(fam, own_table, adj)
  nl = structure.nonlinear_of(fam, adj)
  q_cur, done, held = q, [], {adj.tobytes()}
  while True:
    # The current graph given the rounds each candidate is given, from the same posterior:
    # a candidate judged against the previous pass's score gained those rounds' EM
    # progress too, and a reversal the data cannot orient was taken, undone and taken
    # again for that progress alone (development seed 0 of our generator at N = 30: 34
    # passes of 0.02-0.7 nats). Against a fair baseline such an edge gains rounding
    # (1e-4 nats, Faria et al.'s linear setting, development seed 1), hence ``min_gain``
    # (structural EM's convergence tolerance) and no graph held twice.
    current, q_next = e_step(q_cur, adj, own, nl, iters=iters)
    best, cands = None, []
    for i, j in zip(*np.nonzero(adj)):
      if required[i, j]:
        continue
      for kind in ("removed", "reversed"):
        cand = adj.copy()
        cand[i, j] = 0
        if kind == "reversed":
          if forbidden[j, i]:
            continue
          cand[j, i] = 1
          if not structure.is_dag(cand):
            continue
        if cand.tobytes() in held:  # (a reversal the data cannot orient, undone: a cycle)
          continue
        try:
          c_own = structure.changes_of(fam, own_table, cand)
        except ValueError:  # a parent set outside the table
          continue
        cands.append((cand, c_own, structure.nonlinear_of(fam, cand), (kind, int(i), int(j))))
    if screen and len(cands) > screen:
      first = _screen(e_step, q_cur, adj, own, nl, cands)
      kept = np.sort(np.argsort(-first, kind="stable")[:screen])  # (in the order above)
      cands = [cands[t] for t in kept]
    for cand, c_own, c_nl, change in cands:
      score, c_q = e_step(q_cur, cand, c_own, c_nl, iters=iters)
      if score > current + min_gain and (best is None or score > best[0]):
        best = (score, cand, c_q, c_own, c_nl, change)
    if best is None:
      return adj, current, q_next, own, nl, done
    _, adj, q_cur, own, nl, change = best
    done.append(change)
    held.add(adj.tobytes())


def _screen(e_step, q, adj, own, nonlinear, cands) -> np.ndarray:
  """Each candidate ``(graph, own, nonlinear, (kind, i, j))``'s BIC after one round of
  parameter EM from ``q``: ``e_step(q, graph, own, nonlinear)``'s, to float32 rounding.
  The moments under ``q`` are the same for every graph and a candidate's families differ
  from ``adj``'s at ``i`` and ``j`` only, so each candidate refits and rescores those two
  on the current graph's log-joint; a candidate costs ``[S, K, 2]``, not ``[S, K, N]``."""
  if not cands:
    return np.empty(0)
  xs = e_step.xs
  moments = _moments(xs, jnp.asarray(q, jnp.float32))
  base = _params_jit(*moments, jnp.asarray(adj), jnp.asarray(own), jnp.asarray(nonlinear),
                     e_step.var_floor)
  base_lj = log_joint(xs, base)
  # Every candidate in one call (no host round trip each): the list padded with copies of
  # its first to a power of two (one compiled program per size, not per pass), mapped
  # in chunks whose [S, K] intermediates stay near ``SCREEN_ELEMENTS`` each.
  size = 1 << (len(cands) - 1).bit_length()
  padded = list(cands) + [cands[0]] * (size - len(cands))
  stack = lambda part: jnp.asarray(np.stack([np.asarray(c[part]) for c in padded]))
  nodes = jnp.asarray([[i, j] for *_, (_, i, j) in padded], jnp.int32)
  chunk = rows.rows_per_block(base_lj.size, most=size, budget=SCREEN_ELEMENTS)
  log_px = np.asarray(_screen_log_px(xs, moments, base_lj, base, (stack(0), stack(1), stack(2)),
                                     e_step.var_floor, nodes, chunk), np.float64)[:len(cands)]
  out = np.array([lp - xs.shape[0] * e_step.log_scale
                  - e_step.per_param * n_params(cand, c_own, c_nl, e_step.n_knots)
                  for lp, (cand, c_own, c_nl, _) in zip(log_px, cands)])
  return np.where(np.isnan(out), -np.inf, out)


# The screen's chunk: candidates whose [S, K] intermediates hold about this many floats
# (32 MB each). Larger than ``rows.BLOCK_ELEMENTS``: at S = 10000, K = 42 and 61
# candidates (N = 20), chunks of 19 took 0.64 s a screen, one at a time 0.90 s.
SCREEN_ELEMENTS = 1 << 23


@functools.partial(jax.jit, static_argnums=7)
def _screen_log_px(xs, moments, base_lj, base: Params, cands, var_floor, nodes, chunk: int):
  """``_two_node_log_px`` of each stacked candidate ``(adj [C, N, N], own [C, K, N],
  nonlinear [C, N])`` with its ``nodes [C, 2]``: ``[C]``, ``chunk`` candidates at a time."""
  one = lambda c: _two_node_log_px(xs, moments, base_lj, base, c[:3], var_floor, c[3])
  return jax.lax.map(one, (*cands, nodes), batch_size=chunk)


_moments = jax.jit(structure._regime_moments)
_params_jit = jax.jit(_params_from_moments)


@jax.jit
def _two_node_log_px(xs, moments, base_lj, base: Params, cand, var_floor, nodes):
  """``log p(x)`` (standardised units) of ``cand`` ``(adj, own, nonlinear)``, whose
  families differ at ``nodes`` only from those of the graph with parameters ``base`` and
  log-joint ``base_lj`` ``[S, K]``, under the same ``moments``.

  (One linear solve in the program, as in ``fit_params``: with the base's copies refitted
  here too, two solves in one program hung XLA's CPU runtime, no progress and no CPU use,
  as LAPACK's batched custom calls have before; see ``structure._schur_complement``.)"""
  p = _params_from_moments(*moments, *cand, var_floor, nodes)
  terms = lambda ic, cf, v: _copy_terms(xs, xs[:, nodes], ic, cf, v).sum(-1)
  lj = (base_lj - terms(base.intercept[:, nodes], base.coef[:, nodes], base.var[:, nodes])
        + terms(p.intercept, p.coef, p.var))
  return jax.nn.logsumexp(jnp.where(jnp.isnan(lj), -jnp.inf, lj), axis=1).sum()
