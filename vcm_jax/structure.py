"""Learning the DAG together with the regimes: structural EM (Friedman 1998).

The regime model's exact posterior ``q(z = k | x_s)`` turns the structure search into
a weighted, fully observed problem. For every node ``j`` and candidate parent set
``P`` the expected complete-data log-likelihood of a linear-Gaussian mechanism
``x_j = b + w . x_P + noise`` is maximised in closed form by weighted least squares:
one *shared* copy on the rows of the regimes that leave ``j`` alone, one *own* copy
per regime that changes ``j`` (``changes[k, j]``). The score decomposes over
families, so the search only reads a cached ``[N, C]`` table:

* ``family_scores(x, weights, changes)``: the table (JAX, vmapped over parent sets);
* ``search(scores)``: the best DAG: exact dynamic programming over subsets
  (Silander & Myllymaki 2006) or hill climbing with tabu steps and restarts (host);
* ``edge_report(scores, adj)``: what each edge is worth and whether the data orient it;
* ``structural_em(fit_regimes, x)``: alternate regimes and graph until neither moves.

References:
  N. Friedman, "The Bayesian structural EM algorithm", UAI 1998.
  T. Silander, P. Myllymaki, "A simple approach for finding the globally optimal
  Bayesian network structure", UAI 2006.
"""
from __future__ import annotations

import functools
import itertools
import math
from typing import Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

_LOG_2PI = math.log(2.0 * math.pi)
MAX_EXACT_NODES = 20  # the DP's tables hold N 2^(N-1) entries: 10^7 at N = 20
AUTO_EXACT_NODES = 12


class FamilyScores(NamedTuple):
  """Decomposable score of every (node, parent set) pair (host arrays).

  ``scores[j, c]`` is the penalised expected log-likelihood of node ``j`` with the
  parents ``parents[j, c]`` (indices, ``-1`` padded); ``-inf`` marks padding. The DAG's
  score is ``sum_j scores[j, c_j]``.
  """
  scores: np.ndarray   # [N, C] float64
  parents: np.ndarray  # [N, C, max_parents] int32, -1 padded
  loglik: np.ndarray   # [N, C] float64, before the penalty
  n_rows: int
  # [N, C] bool: the family's mechanism is additive piecewise linear in its parents (a
  # hinge basis, ``hinge_basis``) rather than linear; None: every family is linear.
  nonlinear: np.ndarray | None = None

  @property
  def n_nodes(self) -> int:
    return self.scores.shape[0]


# --------------------------------------------------------------------------------------
# Family scores.


def parent_sets(n_nodes: int, max_parents: int, candidates=None) -> tuple[np.ndarray, np.ndarray]:
  """All parent sets of every node up to ``max_parents`` (host).

  Args:
    n_nodes: N.
    max_parents: the largest parent set.
    candidates: ``None`` (every other node), an ``[N, N]`` bool array
      (``candidates[i, j]``: ``i`` may be a parent of ``j``) or a sequence of N
      iterables of allowed parents per node. The sets are all subsets of these.

  Returns:
    parents: ``[N, C, max(max_parents, 1)]`` int32, ``-1`` padded; the empty set first.
    valid: ``[N, C]`` bool, False for padding rows (nodes with fewer sets than C).
  """
  n, d = int(n_nodes), int(max_parents)
  if candidates is None:
    allowed = [[i for i in range(n) if i != j] for j in range(n)]
  elif isinstance(candidates, np.ndarray) or hasattr(candidates, "shape"):
    cand = np.asarray(candidates).astype(bool)
    if cand.shape != (n, n):
      raise ValueError(f"candidates must be [N, N] = {(n, n)}, got {cand.shape}")
    allowed = [[i for i in np.flatnonzero(cand[:, j]) if i != j] for j in range(n)]
  else:
    if len(candidates) != n:
      raise ValueError(f"candidates must list the allowed parents of each of the {n} nodes")
    allowed = [sorted({int(i) for i in c if int(i) != j}) for j, c in enumerate(candidates)]
  sets = [[s for size in range(min(d, len(a)) + 1) for s in itertools.combinations(a, size)]
          for a in allowed]
  n_sets = max(len(s) for s in sets)
  width = max(d, 1)
  parents = np.full((n, n_sets, width), -1, np.int32)
  valid = np.zeros((n, n_sets), bool)
  for j, node_sets in enumerate(sets):
    for c, s in enumerate(node_sets):
      parents[j, c, :len(s)] = s
      valid[j, c] = True
  return parents, valid


def standardise(x) -> tuple[np.ndarray, np.ndarray]:
  """``(x - mean) / sd`` per column (host, float64) and the scales (a constant column's
  is 1): the units every family score is computed in."""
  x = np.asarray(x, np.float64)
  scale = x.std(0)
  scale = np.where(scale > 0, scale, 1.0)
  return (x - x.mean(0)) / scale, scale


# Where the hinges of ``hinge_basis`` sit: quantiles of each standardised column.
HINGE_QUANTILES = (0.25, 0.5, 0.75)
# Families with up to this many parents also get the hinge-basis mechanism.
NONLINEAR_PARENTS = 2
HINGE_RIDGE = 1e-4


def hinge_basis(xs, quantiles=HINGE_QUANTILES) -> np.ndarray:
  """``[S, N (1 + M)]``: the columns, then block ``m`` of ``M`` hinge features per column,
  ``max(x_i - t_im, 0)`` at the ``M`` ``quantiles`` ``t_im`` of column ``i``.

  A mechanism linear in these is an additive, continuous, piecewise-linear function of
  its parents, fitted in closed form as the linear one is.

  Each column's hinges are orthonormalised (pooled rows, host float64) against the
  column and one another: the span, and so every fit, is the same, but the float32
  moments stay well conditioned (raw hinges are nearly collinear with the column, and
  the family scores' float32 elimination then returned residual variances at the floor,
  thousands of nats too good). A hinge with nothing left (tied knots, a point mass) is
  zero."""
  xs = np.asarray(xs, np.float64)
  if not len(quantiles):
    return xs
  s, n = xs.shape
  knots = np.quantile(xs, np.asarray(quantiles), axis=0)                # [M, N]
  blocks = np.zeros((len(quantiles), s, n))
  for i in range(n):
    col = xs[:, i] - xs[:, i].mean()
    h = np.maximum(xs[:, i, None] - knots[None, :, i], 0.0)             # [S, M]
    h = h - h.mean(0)
    norm = np.sqrt((col * col).sum())
    if norm > 0:
      h = h - np.outer(col / norm, (col / norm) @ h)
    q, r = np.linalg.qr(h)
    keep = np.abs(np.diag(r)) > 1e-6 * np.sqrt(s)  # the rows' spread: at least 1e-6 sd
    blocks[:, :, i] = (q * keep * np.sqrt(s)).T
  return np.concatenate([xs] + list(blocks), axis=1)


def basis_ridge(n_nodes: int, n_knots: int) -> np.ndarray:
  """``[N (1 + M)]`` float32: the ridge on each column of ``hinge_basis`` in a fit, none
  on the columns themselves, ``HINGE_RIDGE`` on the hinges.

  Why: a hinge is, within one regime, often an exact linear function of its column (the
  regime's rows all on one side of the knot); the float32 elimination then divided
  round-off by round-off and returned residual variances at the floor (test data of
  ``tests/test_structure.py``: a linear graph's families scored thousands of nats too
  well with hinges). A ridge of ``HINGE_RIDGE`` (the hinges' pooled variance is 1)
  bounds the condition number and shrinks only hinges that explain next to nothing in
  that regime (1e-3 cost the test's bent mechanism 8 nats of 940; 1e-4 under 1)."""
  return np.concatenate([np.zeros(n_nodes), np.full(n_nodes * n_knots, HINGE_RIDGE)]
                        ).astype(np.float32)


def _penalty_per_parameter(penalty, n_rows: int) -> float:
  if isinstance(penalty, str):
    table = {"bic": 0.5 * math.log(max(n_rows, 1)), "aic": 1.0, "none": 0.0}
    if penalty not in table:
      raise ValueError(f"unknown penalty {penalty!r}; expected bic, aic, none or a number")
    return table[penalty]
  return float(penalty)


def _copy_loglik(cov, weight, node, idx, var_floor, ridge=0.0):
  """Maximised weighted log-likelihood of ``x_node`` on the parents ``idx`` (-1 padded)
  from one copy's weighted covariance ``cov`` ``[N, N]`` and weight ``weight``;
  ``ridge`` (per entry of ``idx``) is added to the parents' diagonal."""
  on = idx >= 0
  safe = jnp.where(on, idx, 0)
  both = on[:, None] & on[None, :]
  a = jnp.where(both, cov[safe[:, None], safe[None, :]], jnp.eye(idx.shape[0], dtype=cov.dtype))
  # A tiny relative ridge keeps singular parent sets (a constant or duplicated
  # column within a regime) solvable; it moves the residual by ~1e-7 relative.
  a = a + jnp.diag(1e-7 * jnp.diag(a) + 1e-12 + jnp.where(on, ridge, 0.0))
  b = jnp.where(on, cov[safe, node], 0.0)
  var = jnp.maximum(_schur_complement(a, b, cov[node, node]), var_floor)
  return -0.5 * weight * (_LOG_2PI + jnp.log(var) + 1.0)


def _schur_complement(a, b, c):
  """``c - b' a^-1 b`` for a small symmetric positive definite ``a`` ``[D, D]``: the last
  pivot of Gaussian elimination on ``[[a, b], [b', c]]`` (no pivoting needed: the
  pivots of an SPD matrix are positive), unrolled over the static ``D``.

  Plain arithmetic rather than ``jnp.linalg.solve``: LAPACK's custom call, batched
  inside the free-target search's ``scan`` within ``vmap`` within ``lax.map``, hung
  XLA's CPU runtime now and then (no progress, no CPU use)."""
  m = jnp.block([[a, b[:, None]], [b[None, :], c[None, None]]])
  for i in range(a.shape[0]):
    below = jnp.arange(m.shape[0]) > i
    factor = jnp.where(below, m[:, i] / m[i, i], 0.0)
    m = m - factor[:, None] * jnp.where(below, m[i], 0.0)[None, :]
  return m[-1, -1]


def _regime_moments(xs, weights):
  """Per regime: weight ``[K]``, mean ``[K, N]`` and centred covariance ``[K, N, N]``."""
  w_k = weights.sum(0)
  w_safe = jnp.maximum(w_k, 1e-12)
  mu = (weights.T @ xs) / w_safe[:, None]

  def centred_cov(args):  # two passes (mean, then centred moments): no cancellation
    w, m, tot = args
    xc = xs - m
    return (xc * w[:, None]).T @ xc / tot

  return w_k, mu, jax.lax.map(centred_cov, (weights.T, mu, w_safe))


def _shared_moments(w_k, mu, cov_k, owned):
  """Each node's shared copy: the regimes that do not own it (``owned [K, N]``), pooled
  exactly (within-regime covariances plus the between-regime spread of their means).
  Returns weight ``[N]``, mean ``[N, N]`` and covariance ``[N, N, N]`` (node first)."""
  a_w = jnp.where(owned, 0.0, w_k[:, None])                     # [K, N]
  w_sh = a_w.sum(0)                                             # [N]
  w_sh_safe = jnp.maximum(w_sh, 1e-12)
  mu_sh = (a_w.T @ mu) / w_sh_safe[:, None]                     # [N, N]
  d = mu[None, :, :] - mu_sh[:, None, :]                        # [N(node), K, N]
  cov_sh = (jnp.einsum("kj,kab->jab", a_w, cov_k)
            + jnp.einsum("kj,jka,jkb->jab", a_w, d, d)) / w_sh_safe[:, None, None]
  return w_sh, mu_sh, cov_sh


@jax.jit
def _family_loglik(xs, weights, own, parents, var_floor, min_weight):
  """Per (node, parent set): summed copy log-likelihoods and number of fitted copies.

  xs: [S, N] standardised; weights: [S, K]; own: [N, R] regimes with their own copy
  of each node (-1 padded); parents: [N, C, D]. Returns loglik [N, C], copies [N].
  """
  n = xs.shape[1]
  w_k, mu, cov_k = _regime_moments(xs, weights)                 # [K], [K, N], [K, N, N]
  owned = jnp.zeros((w_k.shape[0], n), bool)
  owned = owned.at[jnp.where(own >= 0, own, 0), jnp.arange(n)[:, None]].max(own >= 0)
  w_sh, _, cov_sh = _shared_moments(w_k, mu, cov_k, owned)

  own_on = own >= 0
  own_safe = jnp.where(own_on, own, 0)
  covs = jnp.concatenate([cov_sh[:, None], cov_k[own_safe]], axis=1)     # [N, 1 + R, N, N]
  copy_w = jnp.concatenate([w_sh[:, None], jnp.where(own_on, w_k[own_safe], 0.0)], axis=1)

  def node_scores(cov_j, w_j, j, sets):
    per_copy = jax.vmap(_copy_loglik, in_axes=(0, 0, None, None, None))
    per_set = jax.vmap(per_copy, in_axes=(None, None, None, 0, None))
    return per_set(cov_j, w_j, j, sets, var_floor).sum(-1)       # [C]

  loglik = jax.vmap(node_scores)(covs, copy_w, jnp.arange(n), parents)
  n_copies = (copy_w > min_weight).sum(-1)
  return loglik, n_copies


def family_scores(x, weights, changes, *, max_parents: int = 3, candidates=None,
                  penalty="bic", var_floor: float = 1e-6,
                  min_copy_weight: float = 0.5) -> FamilyScores:
  """Expected complete-data score of every node's linear-Gaussian mechanism for every
  candidate parent set, under given regime responsibilities.

  For node ``j`` and parent set ``P``: one shared copy of ``x_j = b + w . x_P + e`` on
  the rows weighted by ``sum_{k: not changes[k, j]} weights[:, k]``, and one own copy
  per regime ``k`` with ``changes[k, j]`` on the rows weighted by ``weights[:, k]``.
  Each copy is fitted by weighted least squares and contributes
  ``-0.5 W (log(2 pi sigma^2) + 1)``, ``sigma^2`` its weighted residual variance
  floored at ``var_floor`` times the column's variance (near-deterministic data, hard
  interventions); the penalty is ``per_param (|P| + 2)`` per copy whose weight exceeds
  ``min_copy_weight`` rows (``bic``: ``per_param = 0.5 log S``).

  Everything comes from one weighted covariance per regime (two-pass, centred), pooled
  exactly into each node's shared copy, then an ``|P| x |P|`` solve per parent set and
  copy, vmapped. Columns are standardised inside and the scores returned in the data's
  units: rescaling column ``j`` by ``a`` (and shifting it) changes node ``j``'s scores by
  the same ``-S log|a|`` for every parent set, so the search is unaffected.

  Args:
    x: ``[S, N]`` data.
    weights: ``[S, K]`` regime responsibilities (rows summing to 1).
    changes: ``[K, N]`` bool, regime ``k`` has its own copy of mechanism ``j``.
    max_parents: the largest parent set.
    candidates: see ``parent_sets``.
    penalty: ``bic``, ``aic``, ``none`` or a cost per parameter.
    var_floor: the residual-variance floor, relative to the column's variance.
    min_copy_weight: copies with less weight than this are not charged.

  Returns:
    ``FamilyScores``.
  """
  x = np.asarray(x, np.float64)
  weights = np.asarray(weights, np.float64)
  changes = np.asarray(changes).astype(bool)
  s, n = x.shape
  if weights.shape[0] != s or changes.shape != (weights.shape[1], n):
    raise ValueError(f"shapes disagree: x {x.shape}, weights {weights.shape}, "
                     f"changes {changes.shape} (expected [K, N] = [{weights.shape[1]}, {n}])")
  parents, valid = parent_sets(n, max_parents, candidates)
  xs, scale = standardise(x)
  r = max(int(changes.sum(0).max()), 1)
  own = np.full((n, r), -1, np.int32)
  for j in range(n):
    ks = np.flatnonzero(changes[:, j])
    own[j, :len(ks)] = ks
  loglik, n_copies = _family_loglik(jnp.asarray(xs, jnp.float32), jnp.asarray(weights, jnp.float32),
                                    jnp.asarray(own), jnp.asarray(parents),
                                    jnp.float32(var_floor), jnp.float32(min_copy_weight))
  loglik = np.asarray(loglik, np.float64) - weights.sum() * np.log(scale)[:, None]
  size = (parents >= 0).sum(-1)
  cost = _penalty_per_parameter(penalty, s) * np.asarray(n_copies)[:, None] * (size + 2)
  scores = np.where(valid, loglik - cost, -np.inf)
  return FamilyScores(scores=scores, parents=parents, loglik=np.where(valid, loglik, -np.inf),
                      n_rows=s)


# Candidates of a greedy step scored again exactly (``_free_family_scores``).
RESCORED = 4


@jax.jit
def _free_family_scores(xs, weights, parents, per_param, var_floor, ridge, nodes=None):
  """Per (node, parent set): the penalised score with the changing regimes chosen, and
  those regimes ``[N, C, K]``. See ``family_scores_free``. ``nodes``: the node of each
  row of ``parents`` (default ``0 .. N - 1``; ``grown_at_cap`` scores a few nodes)."""
  w_k, mu, cov = _regime_moments(xs, weights)
  k = w_k.shape[0]
  d = parents.shape[-1]

  def family(node, idx):
    # The family's own coordinates (its parents, then the node): every pooled
    # covariance below is (D + 1) x (D + 1), whatever N is.
    sub = jnp.concatenate([jnp.where(idx >= 0, idx, node), node[None]])
    c_sub = cov[:, sub[:, None], sub[None, :]]                            # [K, D+1, D+1]
    m_sub = mu[:, sub]                                                    # [K, D+1]
    local = jnp.where(idx >= 0, jnp.arange(d), -1)
    copy = functools.partial(_copy_loglik, node=d, idx=local, var_floor=var_floor,
                             ridge=ridge[jnp.maximum(idx, 0)])
    own_ll = jax.vmap(lambda c, w: copy(c, w))(c_sub, w_k)               # [K]
    n_par = per_param * ((idx >= 0).sum() + 2)

    def shared(own):  # the shared copy's weight, mean and centred covariance (two passes)
      a = jnp.where(own, 0.0, w_k)
      tot = jnp.maximum(a.sum(), 1e-12)
      mean = (a @ m_sub) / tot
      dm = m_sub - mean
      return a.sum(), mean, (jnp.einsum("k,kab->ab", a, c_sub)
                             + jnp.einsum("k,ka,kb->ab", a, dm, dm)) / tot

    def score(own, pooled_weight, pooled):
      return (copy(pooled, pooled_weight) + jnp.where(own, own_ll, 0.0).sum()
              - n_par * (1 + own.sum()))

    def without(weight, mean, cov, j):
      """The shared copy's moments with regime ``j`` taken out, from the current ones
      (centred at the current mean: a downdate in O(D^2), not a pass over K regimes)."""
      rest = weight - w_k[j]
      safe = jnp.maximum(rest, 1e-12)
      d = m_sub[j] - mean
      e = -w_k[j] * d / safe  # the new mean less the current one
      cov = (weight * cov - w_k[j] * (c_sub[j] + jnp.outer(d, d))) / safe - jnp.outer(e, e)
      return rest, cov

    def exact_score(own):
      moments = shared(own)
      return score(own, moments[0], moments[2]), moments

    def step(carry, _):
      """Greedy forward: the regime whose own copy gains most gets its copy. Every
      candidate is ranked by a downdate of the shared copy; the few ranked first are
      scored again from the regimes' moments (two passes) and the best of those is
      taken, so the choice is the exact scores' but where the ranking's rounding
      (about 1e-7 of a moment) hides the best behind more than ``RESCORED`` others, no
      rounding accumulates over the steps, and a score in the table is exact."""
      own, current, weight, mean, cov = carry
      cand = jnp.eye(k, dtype=bool) | own[None]
      rest, covs = jax.vmap(lambda j: without(weight, mean, cov, j))(jnp.arange(k))
      ranked = jnp.where(own, -jnp.inf, jax.vmap(score)(cand, rest, covs))
      top = jnp.sort(jax.lax.top_k(ranked, min(RESCORED, k))[1])  # (ties: the first regime)
      exacts, moments = jax.vmap(exact_score)(cand[top])
      exacts = jnp.where(own[top], -jnp.inf, exacts)
      pick = jnp.argmax(exacts)
      taken, exact = cand[top[pick]], exacts[pick]
      moments = jax.tree.map(lambda a: a[pick], moments)
      better = exact > current
      keep = lambda new, old: jnp.where(better, new, old)
      return (keep(taken, own), keep(exact, current),
              *(keep(a, b) for a, b in zip(moments, (weight, mean, cov)))), None

    none = jnp.zeros(k, bool)
    start = shared(none)
    (own, best_score, *_), _ = jax.lax.scan(
        step, (none, score(none, start[0], start[2]), *start), None, length=k - 1)
    return best_score, own

  nodes = jnp.arange(parents.shape[0]) if nodes is None else nodes
  return jax.lax.map(lambda a: jax.vmap(functools.partial(family, a[0]))(a[1]),
                     (nodes, parents))


def family_scores_free(x, weights, *, max_parents: int = 3, candidates=None, penalty="bic",
                       var_floor: float = 1e-6, quantiles=(),
                       nonlinear_parents: int = NONLINEAR_PARENTS
                       ) -> tuple[FamilyScores, np.ndarray]:
  """``family_scores`` when nobody says which regimes change which mechanism: each family
  (node ``j``, parent set ``P``) chooses its own changing regimes by its penalised score.

  Greedy forward selection per family: from no own copies, give an own copy to the
  regime that raises the family's score most (its own weighted least-squares fit, the
  shared copy refitted exactly on the regimes left), while that raises it. A family
  pays ``per_param (|P| + 2)`` per copy, the shared one included. Under a wrong
  orientation an intervention shows up in more families (the target's children, read
  as its parents, shift too), so the penalty orients the edges that an intervention
  touches: the interventional-equivalence information that the pooled rows lack.

  Families with 1 to ``nonlinear_parents`` parents are also scored with a mechanism
  linear in ``hinge_basis`` (``|P| (1 + M)`` weights per copy, ``M = len(quantiles)``);
  the better of the two scores (penalty included) is the family's, and
  ``FamilyScores.nonlinear`` says which. On linear data the hinges gain about
  ``chi2_M / 2`` nats per parent and copy against a cost of ``M`` times the per-parameter
  penalty, so the linear mechanism stays.

  Off by default, by measurement: on development seeds 0-1 of Faria et al.'s MLP
  setting (the graph search from the same mixture starts) the hinges gave SHD 5 / 4
  against 7 / 2 for linear families, at twice the time; from the true labels, seed 1 went
  from SHD 1 to 5. Additive hinges misfit a two-parent MLP, while the reversed
  families, one parent each, fit flexibly: the score stops being equivalent across the
  orientations that only the interventions should decide.

  This is the structure search's first step when the regimes come from a graph-free
  model (``mixture_scm.structural_em``); ``family_scores`` scores a
  posterior whose targets are known.

  Args:
    x: ``[S, N]`` data.
    weights: ``[S, K]`` regime responsibilities.
    max_parents, candidates, penalty, var_floor: as ``family_scores``.
    quantiles: the hinges' knots (``hinge_basis``, e.g. ``HINGE_QUANTILES``); empty (the
      default): linear families only.
    nonlinear_parents: the largest parent set given the hinge mechanism too.

  Returns:
    ``(FamilyScores, changes [N, C, K] bool)``: the table and each family's regimes.
  """
  x = np.asarray(x, np.float64)
  weights = np.asarray(weights, np.float64)
  s, n = x.shape
  if weights.shape[0] != s:
    raise ValueError(f"shapes disagree: x {x.shape}, weights {weights.shape}")
  parents, valid = parent_sets(n, max_parents, candidates)
  xs, scale = standardise(x)
  per_param = _penalty_per_parameter(penalty, s)
  w32 = jnp.asarray(weights, jnp.float32)
  scores, own = _free_family_scores(jnp.asarray(xs, jnp.float32), w32, jnp.asarray(parents),
                                    jnp.float32(per_param), jnp.float32(var_floor),
                                    jnp.zeros(n, jnp.float32))
  scores, own = np.array(scores, np.float64), np.array(own)
  size = (parents >= 0).sum(-1)
  width = size.astype(np.float64)                                   # weights per copy
  nonlinear = np.zeros((n, parents.shape[1]), bool)
  m = len(quantiles)
  sel = valid & (size >= 1) & (size <= nonlinear_parents)
  if m and sel.any():
    # The hinge variants, on a table of their own (only the small parent sets: the
    # variant's greedy costs (1 + M)^3 times a linear one's per copy).
    cols = [np.flatnonzero(sel[j]) for j in range(n)]
    width_nl = max(len(c) for c in cols)
    pick = np.stack([np.pad(c if len(c) else np.zeros(1, int), (0, width_nl - max(len(c), 1)),
                            mode="edge") for c in cols])
    base = np.take_along_axis(parents, pick[..., None], 1)[..., :nonlinear_parents]
    expanded = np.concatenate([np.where(base >= 0, base + b * n, -1) for b in range(m + 1)], -1)
    nl_scores, nl_own = _free_family_scores(
        jnp.asarray(hinge_basis(xs, quantiles), jnp.float32), w32, jnp.asarray(expanded),
        jnp.float32(per_param), jnp.float32(var_floor), jnp.asarray(basis_ridge(n, m)))
    nl_scores, nl_own = np.asarray(nl_scores, np.float64), np.asarray(nl_own)
    jj, ii = np.nonzero(np.arange(width_nl)[None] < np.array([len(c) for c in cols])[:, None])
    cc = pick[jj, ii]                                    # each hinge entry's table column
    better = nl_scores[jj, ii] > np.where(np.isnan(scores[jj, cc]), -np.inf, scores[jj, cc])
    jj, ii, cc = jj[better], ii[better], cc[better]
    nonlinear[jj, cc] = True
    scores[jj, cc] = nl_scores[jj, ii]
    own[jj, cc] = nl_own[jj, ii]
    width = np.where(nonlinear, size * (1.0 + m), width)
  scores, loglik, own = _in_data_units(scores, own, valid, weights.sum() * np.log(scale),
                                       per_param, width)
  return (FamilyScores(scores=scores, parents=parents, loglik=loglik, n_rows=s,
                       nonlinear=nonlinear), own)


def _in_data_units(scores, own, valid, shift, per_param, width):
  """``_free_family_scores``'s output as the table holds it: each row's scores less its
  node's ``shift`` (total weight times its log scale: the data's units), padding and NaN
  (a degenerate copy) ``-inf``, own copies of padding dropped, and the log-likelihood
  before the penalty of ``per_param (width + 2)`` per copy. ``(scores, loglik, own)``."""
  own = np.asarray(own) & valid[..., None]
  scores = np.asarray(scores, np.float64) - np.asarray(shift)[:, None]
  scores = np.where(valid & ~np.isnan(scores), scores, -np.inf)
  return scores, scores + per_param * (width + 2) * (1 + own.sum(-1)), own


def grown_at_cap(fam: FamilyScores, own, adj, x, weights, *, cap: int, candidates=None,
                 penalty="bic", var_floor: float = 1e-6):
  """``family_scores_free``'s table and changes ``own [N, C, K]`` grown past the parent
  cap where ``adj`` reaches it: for each node with ``cap`` or more parents, every set
  of its parents plus one more allowed node (``candidates``, see ``parent_sets``) that
  the table lacks, scored the same way (linear families). ``None`` where there are none.

  Why: the table holds sets of at most ``cap`` parents, and a node with more true
  parents settles for its best ``cap`` of them, or a wrong set that stands in for the
  rest. Growing only where the graph reaches the cap costs a few sets a node where a
  wider table would cost every set of the larger size (on our generator at N = 20,
  development seed 1: nodes with 5, 6 and 7 parents under a cap of 4)."""
  adj = np.asarray(adj) > 0
  x = np.asarray(x, np.float64)
  weights = np.asarray(weights, np.float64)
  n, width = adj.shape[0], fam.parents.shape[-1]
  cand = (np.ones((n, n), bool) if candidates is None
          else np.asarray(candidates).astype(bool)) & ~np.eye(n, dtype=bool)
  masks, current = _parent_masks(fam.parents), _masks_of(adj)
  extra = []
  for j in range(n):
    pa = np.flatnonzero(adj[:, j])
    have = set(masks[j][np.isfinite(fam.scores[j])].tolist())
    base = current[j]
    extra.append([] if len(pa) < cap else
                 [sorted([*pa.tolist(), int(i)]) for i in np.flatnonzero(cand[:, j] & ~adj[:, j])
                  if base | (1 << int(i)) not in have])
  if not any(extra):
    return None
  # Few shapes: only the nodes that grow are scored, their count padded to a power of
  # two; as many sets a node as the most candidates a node has, the width twice the cap
  # (powers of two). A search grows the table several times a round and each new shape
  # is a compile of about 2 s, where scoring a few nodes' sets takes 25-260 ms (n = 20,
  # development seed 0: 58 growths a search, 38.5 s, most of it compiling; 40-45 s at
  # the shapes each growth needed, or with every node a row).
  rows = [j for j in range(n) if extra[j]]
  size = 1 << (max(int(cand.sum(0).max()), 1) - 1).bit_length()
  need = max(len(s) for j in rows for s in extra[j])
  d_new = max(2 * cap, 1 << (need - 1).bit_length())
  n_rows = 1 << (len(rows) - 1).bit_length()
  parents = np.full((n_rows, size, d_new), -1, np.int32)
  valid = np.zeros((n_rows, size), bool)
  nodes = np.full(n_rows, rows[0], np.int32)
  for r, j in enumerate(rows):
    nodes[r] = j
    for c, s in enumerate(extra[j]):
      parents[r, c, :len(s)] = s
      valid[r, c] = True
  xs, scale = standardise(x)
  per_param = _penalty_per_parameter(penalty, x.shape[0])
  scored, scored_own = _free_family_scores(jnp.asarray(xs, jnp.float32),
                                           jnp.asarray(weights, jnp.float32),
                                           jnp.asarray(parents), jnp.float32(per_param),
                                           jnp.float32(var_floor), jnp.zeros(n, jnp.float32),
                                           jnp.asarray(nodes))
  scored, loglik, scored_own = _in_data_units(scored, scored_own, valid,
                                              weights.sum() * np.log(scale)[nodes], per_param,
                                              (parents >= 0).sum(-1))
  # back to one row a node (the others' rows padding), at the merged table's width
  wide = max(width, d_new)
  real = np.arange(len(rows))
  scores, new_loglik = np.full((n, size), -np.inf), np.full((n, size), -np.inf)
  scores[rows], new_loglik[rows] = scored[real], loglik[real]
  new_own = np.zeros((n, size, scored_own.shape[-1]), bool)
  new_own[rows] = scored_own[real]
  new_parents = np.full((n, size, wide), -1, np.int32)
  new_parents[rows, :, :d_new] = parents[real]
  pad = lambda a: np.pad(a, ((0, 0), (0, 0), (0, wide - a.shape[-1])), constant_values=-1)
  nonlinear = (np.zeros(fam.scores.shape, bool) if fam.nonlinear is None else fam.nonlinear)
  grown = FamilyScores(scores=np.concatenate([fam.scores, scores], 1),
                       parents=np.concatenate([pad(fam.parents), new_parents], 1),
                       loglik=np.concatenate([fam.loglik, new_loglik], 1), n_rows=fam.n_rows,
                       nonlinear=np.concatenate([nonlinear, np.zeros((n, size), bool)], 1))
  return grown, np.concatenate([np.asarray(own), new_own], 1)


def _parent_masks(parents) -> np.ndarray:
  """``[..., C]`` int64 bit masks of the ``-1``-padded parent sets ``[..., C, D]``."""
  parents = np.asarray(parents)
  return np.where(parents >= 0, np.left_shift(np.int64(1), np.maximum(parents, 0)), 0).sum(-1)


def family_index(fam: FamilyScores, adj) -> np.ndarray:
  """``[N]``: the column of ``fam``'s table holding each node's parent set in ``adj``; a
  ``ValueError`` names a node whose parents the table lacks."""
  adj = np.asarray(adj) > 0
  masks = _parent_masks(fam.parents)                                                # [N, C]
  want = np.array(_masks_of(adj), np.int64)                                         # [N]
  hit = (masks == want[:, None]) & np.isfinite(fam.scores)
  missing = np.flatnonzero(~hit.any(1))
  if missing.size:
    raise ValueError(f"node {missing[0]}'s parents {np.flatnonzero(adj[:, missing[0]]).tolist()} "
                     "are not in the family table")
  return hit.argmax(1)


def nonlinear_of(fam: FamilyScores, adj) -> np.ndarray:
  """``[N]`` bool: which of ``adj``'s families the table gave the hinge mechanism."""
  n = fam.scores.shape[0]
  if fam.nonlinear is None:
    return np.zeros(n, bool)
  return fam.nonlinear[np.arange(n), family_index(fam, adj)]


def changes_of(fam: FamilyScores, own, adj) -> np.ndarray:
  """``[K, N]``: the regimes that change each node's mechanism in ``adj``'s families, as
  ``family_scores_free`` chose them (``own [N, C, K]``)."""
  n = fam.scores.shape[0]
  return np.asarray(own)[np.arange(n), family_index(fam, adj)].T


# --------------------------------------------------------------------------------------
# Families as bit masks; constraints.


def _base_tables(fam: FamilyScores):
  """Per node: ``{parent bit mask: (score, c)}`` of the finite families (Python ints as
  masks, so any N works)."""
  tables = []
  for j in range(fam.n_nodes):
    table = {}
    for c in np.flatnonzero(np.isfinite(fam.scores[j])):
      m = sum(1 << int(p) for p in fam.parents[j, c] if p >= 0)
      if m not in table or fam.scores[j, c] > table[m][0]:
        table[m] = (float(fam.scores[j, c]), int(c))
    tables.append(table)
  return tables


def _constrain(tables, forbidden=None, required=None):
  """The families that use no forbidden parent and contain every required one
  (``[N, N]`` bool, ``[i, j]`` for the edge ``i -> j``); untouched nodes share tables."""
  n = len(tables)
  if forbidden is None and required is None:
    return tables
  forbidden = np.zeros((n, n), bool) if forbidden is None else np.asarray(forbidden) > 0
  required = np.zeros((n, n), bool) if required is None else np.asarray(required) > 0
  out = list(tables)
  for j in range(n):
    bad = sum(1 << int(i) for i in np.flatnonzero(forbidden[:, j]))
    need = sum(1 << int(i) for i in np.flatnonzero(required[:, j]))
    if bad or need:
      out[j] = {m: v for m, v in tables[j].items() if not m & bad and m & need == need}
  return out


def _masks_of(adj) -> list[int]:
  adj = np.asarray(adj) > 0
  return [sum(1 << int(i) for i in np.flatnonzero(adj[:, j])) for j in range(adj.shape[0])]


def _adjacency_of(masks: Sequence[int], n: int) -> np.ndarray:
  adj = np.zeros((n, n), np.int32)
  for j, m in enumerate(masks):
    for i in range(n):
      if m >> i & 1:
        adj[i, j] = 1
  return adj


def graph_score(fam: FamilyScores, adj) -> float:
  """Sum of the family scores of ``adj`` (``-inf`` when a family is not in the table)."""
  tables = _base_tables(fam)
  total = 0.0
  for j, m in enumerate(_masks_of(adj)):
    if m not in tables[j]:
      return -math.inf
    total += tables[j][m][0]
  return total


def _reach(adj: np.ndarray) -> np.ndarray:
  """``reach[i, j]``: a directed path of length >= 1 from i to j."""
  r = adj > 0
  while True:
    nxt = r | ((r.astype(np.int32) @ r.astype(np.int32)) > 0)
    if (nxt == r).all():
      return r
    r = nxt


def is_dag(adj) -> bool:
  """Whether the 0/1 adjacency ``adj`` has no directed cycle (no node reaches itself)."""
  return not np.diag(_reach(np.asarray(adj))).any()


# --------------------------------------------------------------------------------------
# Exact search.


def _compress(m: np.ndarray, j: int) -> np.ndarray:
  """Bit mask over all N nodes (bit j clear) -> mask over the N - 1 others."""
  return (m & ((1 << j) - 1)) | ((m >> (j + 1)) << j)


def _exact(tables, n: int):
  """Silander-Myllymaki: best parents of j within every subset U of the others, then
  the best sink of every subset of nodes. Returns (masks per node, score)."""
  if n > MAX_EXACT_NODES:
    raise ValueError(f"exact search is limited to {MAX_EXACT_NODES} nodes; got {n} (use hill)")
  half = 1 << (n - 1)
  best_in, arg_in = [], []
  for j, table in enumerate(tables):
    best = np.full(half, -np.inf)
    arg = np.full(half, -1, np.int64)
    if table:
      masks = np.fromiter(table.keys(), np.int64, len(table))
      vals = np.array([v[0] for v in table.values()])
      comp = _compress(masks, j)
      best[comp] = vals
      arg[comp] = masks
    for b in range(n - 1):  # max over subsets, one bit at a time
      bv, av = best.reshape(-1, 2, 1 << b), arg.reshape(-1, 2, 1 << b)
      take = bv[:, 0] > bv[:, 1]
      bv[:, 1] = np.where(take, bv[:, 0], bv[:, 1])
      av[:, 1] = np.where(take, av[:, 0], av[:, 1])
    best_in.append(best)
    arg_in.append(arg)
  full = 1 << n
  total = np.full(full, -np.inf)
  total[0] = 0.0
  sink = np.full(full, -1, np.int64)
  everything = np.arange(full, dtype=np.int64)
  popcount = np.zeros(full, np.int64)
  for b in range(n):
    popcount += (everything >> b) & 1
  for size in range(1, n + 1):
    layer = everything[popcount == size]
    layer_best = np.full(layer.shape, -np.inf)
    layer_sink = np.full(layer.shape, -1, np.int64)
    for j in range(n):
      has = ((layer >> j) & 1).astype(bool)
      rest = layer[has] ^ (1 << j)
      val = total[rest] + best_in[j][_compress(rest, j)]
      cur = layer_best[has]
      better = val > cur
      layer_best[has] = np.where(better, val, cur)
      layer_sink[has] = np.where(better, j, layer_sink[has])
    total[layer] = layer_best
    sink[layer] = layer_sink
  if not np.isfinite(total[full - 1]):
    raise ValueError("no DAG satisfies the constraints within the parent-set table")
  masks = [0] * n
  s = full - 1
  while s:
    j = int(sink[s])
    rest = s ^ (1 << j)
    masks[j] = int(arg_in[j][_compress(np.int64(rest), j)])
    s = rest
  return masks, float(total[full - 1])


# --------------------------------------------------------------------------------------
# Hill climbing.


class _Climber:
  """Greedy edge additions, removals and reversals on cached family scores, with a
  tabu walk past local optima (never revisiting a graph) and perturbed restarts."""

  def __init__(self, tables, n, rng):
    self.tables, self.n, self.rng = tables, n, rng

  def _deltas(self, masks, cur, j):
    """Rows for node j: gain of adding / removing each parent i."""
    add = np.full(self.n, -np.inf)
    rem = np.full(self.n, -np.inf)
    table, m = self.tables[j], masks[j]
    for i in range(self.n):
      if i == j:
        continue
      other = m ^ (1 << i)
      if other in table:
        (rem if m >> i & 1 else add)[i] = table[other][0] - cur[j]
    return add, rem

  def _moves(self, adj, add, rem):
    """Gains ``[3, N, N]`` (add i->j, remove i->j, reverse i->j), -inf when invalid."""
    reach = _reach(adj)
    edge = adj > 0
    g_add = np.where(~edge & ~reach.T, add, -np.inf)
    g_rem = np.where(edge, rem, -np.inf)
    other_path = (edge.astype(np.int32) @ reach.astype(np.int32)) > 0
    g_rev = np.where(edge & ~other_path, rem + add.T, -np.inf)
    return np.stack([g_add, g_rem, g_rev])

  @staticmethod
  def _apply(masks, kind, i, j):
    masks = list(masks)
    if kind == 0:
      masks[j] |= 1 << i
    elif kind == 1:
      masks[j] &= ~(1 << i)
    else:
      masks[j] &= ~(1 << i)
      masks[i] |= 1 << j
    return masks

  def climb(self, masks, tabu_steps: int, max_steps: int):
    n = self.n
    cur = np.array([self.tables[j][masks[j]][0] for j in range(n)])
    add, rem = np.zeros((n, n)), np.zeros((n, n))
    for j in range(n):
      add[:, j], rem[:, j] = self._deltas(masks, cur, j)
    best_masks, best_score = list(masks), cur.sum()
    seen = {tuple(masks)}
    stale = 0
    for _ in range(max_steps):
      gains = self._moves(_adjacency_of(masks, n), add, rem)
      order = np.argsort(-gains, axis=None, kind="stable")
      move = None
      for flat in order:
        g = gains.flat[flat]
        if not np.isfinite(g):
          break
        kind, i, j = (int(v) for v in np.unravel_index(flat, gains.shape))
        nxt = self._apply(masks, kind, i, j)
        if tuple(nxt) not in seen:
          move = (g, nxt, (i, j))
          break
      if move is None:
        break
      g, masks, touched = move
      seen.add(tuple(masks))
      for j in set(touched):
        cur[j] = self.tables[j][masks[j]][0]
      for j in set(touched):
        add[:, j], rem[:, j] = self._deltas(masks, cur, j)
      score = cur.sum()
      if score > best_score + 1e-9:
        best_masks, best_score, stale = list(masks), score, 0
      else:
        stale += 1
        if stale > tabu_steps:
          break
    return best_masks, float(best_score)

  def perturb(self, masks, n_moves: int):
    n = self.n
    for _ in range(n_moves):
      cur = np.array([self.tables[j][masks[j]][0] for j in range(n)])
      add, rem = np.zeros((n, n)), np.zeros((n, n))
      for j in range(n):
        add[:, j], rem[:, j] = self._deltas(masks, cur, j)
      ok = np.argwhere(np.isfinite(self._moves(_adjacency_of(masks, n), add, rem)))
      if not len(ok):
        break
      kind, i, j = (int(v) for v in ok[self.rng.integers(len(ok))])
      masks = self._apply(masks, kind, i, j)
    return masks


def _repair(masks, tables):
  """Make every family feasible by keeping the best-scoring feasible subset of it
  (subsets of a DAG's families stay acyclic)."""
  out = []
  for j, m in enumerate(masks):
    if m in tables[j]:
      out.append(m)
      continue
    subsets = [(v[0], k) for k, v in tables[j].items() if k & ~m == 0]
    if not subsets:
      raise ValueError(f"node {j}: no feasible parent set within the start graph's")
    out.append(max(subsets)[1])
  return out


def _hill(tables, n, start, *, restarts, tabu_steps, seed, max_steps):
  rng = np.random.default_rng(seed)
  climber = _Climber(tables, n, rng)
  masks = _repair(_masks_of(start), tables)
  best_masks, best_score = climber.climb(masks, tabu_steps, max_steps)
  for _ in range(restarts):
    kicked = climber.perturb(list(best_masks), max(2, n // 2))
    masks, score = climber.climb(kicked, tabu_steps, max_steps)
    if score > best_score + 1e-9:
      best_masks, best_score = masks, score
  return best_masks, best_score


def _search(tables, *, start, forbidden, required, method, restarts, tabu_steps, seed,
            max_steps):
  n = len(tables)
  tables = _constrain(tables, forbidden, required)
  if method == "auto":
    method = "exact" if n <= AUTO_EXACT_NODES else "hill"
  if method == "exact":
    return _exact(tables, n)
  if method != "hill":
    raise ValueError(f"unknown method {method!r}; expected auto, exact or hill")
  start = np.zeros((n, n), np.int32) if start is None else np.asarray(start)
  if required is not None:
    start = np.where(np.asarray(required) > 0, 1, start)
  if forbidden is not None:
    start = np.where(np.asarray(forbidden) > 0, 0, start)
  if not is_dag(start):
    raise ValueError("start graph (with the required edges) has a cycle")
  return _hill(tables, n, start, restarts=restarts, tabu_steps=tabu_steps, seed=seed,
               max_steps=max_steps)


def search(fam: FamilyScores, *, start=None, forbidden=None, required=None, method: str = "auto",
           restarts: int = 3, tabu_steps: int = 10, seed: int = 0,
           max_steps: int = 10_000, return_score: bool = False):
  """The best-scoring DAG under the decomposable score ``fam`` (host NumPy).

  Args:
    fam: ``family_scores``'s table.
    start: ``[N, N]`` graph hill climbing starts from (default empty).
    forbidden: ``[N, N]`` bool, edges ``i -> j`` never used.
    required: ``[N, N]`` bool, edges every candidate graph contains.
    method: ``exact`` (dynamic programming over subsets, Silander & Myllymaki 2006;
      ``N <= 20``, memory ``N 2^(N-1)``), ``hill`` (greedy additions, removals and
      reversals from ``start`` with ``tabu_steps`` non-improving steps that never
      revisit a graph and ``restarts`` perturbed restarts from the best graph) or
      ``auto`` (exact for ``N <= 12``).
    restarts, tabu_steps, seed, max_steps: hill climbing only.
    return_score: also return the graph's score.

  Returns:
    ``[N, N]`` int32 adjacency (``adj[i, j] = 1``: ``i -> j``), and its score when asked.
  """
  masks, score = _search(_base_tables(fam), start=start, forbidden=forbidden, required=required,
                         method=method, restarts=restarts, tabu_steps=tabu_steps, seed=seed,
                         max_steps=max_steps)
  adj = _adjacency_of(masks, fam.n_nodes)
  return (adj, score) if return_score else adj


# --------------------------------------------------------------------------------------
# Edges.


def _without_path(adj: np.ndarray, i: int, j: int) -> np.ndarray:
  """``adj`` less every edge on a directed path from i to j."""
  reach = _reach(adj)
  from_i = reach[i].copy()
  from_i[i] = True
  to_j = reach[:, j].copy()
  to_j[j] = True
  return np.where(from_i[:, None] & to_j[None, :], 0, adj)


def flipped(adj, i: int, j: int) -> np.ndarray:
  """``adj`` with ``i -> j`` reversed, less every other path from i to j (which the
  reversal would close into a cycle): a DAG."""
  removed = (np.asarray(adj) > 0).astype(np.asarray(adj).dtype)
  removed[i, j] = 0
  out = _without_path(removed, i, j)
  out[j, i] = 1
  return out


def edge_report(fam: FamilyScores, adj, *, method: str = "auto", tol: float = 1.0,
                **search_kwargs) -> list[dict]:
  """What every edge of ``adj`` is worth under the score ``fam``.

  For each edge ``i -> j``:
    * ``gain``: score of ``adj`` minus the best score of graphs with neither ``i -> j``
      nor ``j -> i``;
    * ``reverse_gain``: score of ``adj`` minus the best score of graphs that contain
      ``j -> i`` instead;
    * ``local_gain`` / ``local_reverse_gain``: the same for the single removal or
      reversal of the edge in ``adj`` (``nan`` when the reversal makes a cycle or leaves
      the table);
    * ``reversed_graph``: that best graph with ``j -> i``;
    * ``decided``: ``reverse_gain > tol`` (nats). Markov-equivalent graphs score the same
      on observational data, so an edge the data cannot orient has ``reverse_gain ~ 0``;
      an intervention on either endpoint orients it.

  "Best" is the exact optimum (``method='exact'``, the default up to 12 nodes) or a hill
  climb from ``adj`` with the edge removed or reversed (``hill``). When ``adj`` is not the
  optimum itself the gains may be negative.
  """
  n = fam.n_nodes
  adj = (np.asarray(adj) > 0).astype(np.int32)
  if method == "auto":
    method = "exact" if n <= AUTO_EXACT_NODES else "hill"
  tables = _base_tables(fam)
  masks = _masks_of(adj)
  for j in range(n):
    if masks[j] not in tables[j]:
      raise ValueError(f"node {j}'s parents {np.flatnonzero(adj[:, j]).tolist()} are not in the "
                       "family table (more than max_parents, or outside the candidates)")
  base = sum(tables[j][masks[j]][0] for j in range(n))
  reach = _reach(adj)
  report = []
  for i, j in zip(*np.nonzero(adj)):
    i, j = int(i), int(j)
    none = np.zeros((n, n), bool)
    cut = none.copy()
    cut[i, j] = cut[j, i] = True
    flip_forbid = none.copy()
    flip_forbid[i, j] = True
    flip_need = none.copy()
    flip_need[j, i] = True
    removed = adj.copy()
    removed[i, j] = 0
    flip = flipped(adj, i, j)
    kwargs = dict(method=method, **search_kwargs)
    _, without = _search(tables, start=removed, forbidden=cut, required=None,
                         **_search_defaults(kwargs))
    rev_masks, reversed_ = _search(tables, start=flip, forbidden=flip_forbid,
                                   required=flip_need, **_search_defaults(kwargs))
    local = base - tables[j][masks[j]][0] + tables[j].get(masks[j] & ~(1 << i), (np.nan,))[0]
    pa_i = masks[i] | (1 << j)
    other_path = bool(((adj[i] > 0) & reach[:, j]).any())
    local_rev = np.nan
    if not other_path and pa_i in tables[i]:
      local_rev = (local - tables[i][masks[i]][0] + tables[i][pa_i][0])
    report.append(dict(edge=(i, j), gain=base - without, reverse_gain=base - reversed_,
                       local_gain=base - local, local_reverse_gain=base - local_rev,
                       decided=bool(base - reversed_ > tol),
                       reversed_graph=_adjacency_of(rev_masks, n)))
  return report


def _search_defaults(kwargs):
  out = dict(method="auto", restarts=0, tabu_steps=5, seed=0, max_steps=10_000)
  out.update(kwargs)
  return out


def missing_edges(fam: FamilyScores, adj, *, top: int = 5) -> list[dict]:
  """The single edge additions to ``adj`` that keep it acyclic and would gain most,
  best first: ``[{'edge': (i, j), 'gain': ...}]`` (positive gains only)."""
  n = fam.n_nodes
  adj = (np.asarray(adj) > 0).astype(np.int32)
  tables = _base_tables(fam)
  masks = _masks_of(adj)
  reach = _reach(adj)
  out = []
  for j in range(n):
    cur = tables[j][masks[j]][0]
    for i in range(n):
      if i == j or adj[i, j] or reach[j, i]:
        continue
      other = masks[j] | (1 << i)
      if other in tables[j] and tables[j][other][0] > cur:
        out.append(dict(edge=(i, j), gain=tables[j][other][0] - cur))
  return sorted(out, key=lambda e: -e["gain"])[:top]


# --------------------------------------------------------------------------------------
# Structural EM.


class StructuralEM(NamedTuple):
  adj: np.ndarray           # [N, N] the best graph by the regime model's score
  score: float              # its penalised log p(x)
  weights: np.ndarray       # [S, K] its regime posterior
  changes: np.ndarray       # [K, N]
  history: list             # one dict per fitted graph
  edges: list               # edge_report of the best graph under its own posterior
  family: "FamilyScores"     # the family scores under that posterior


def edge_diff(old: np.ndarray, new: np.ndarray) -> dict:
  """The edges of ``new`` against ``old``: ``{"added", "removed", "reversed"}``, each a
  list of ``(source, target)`` pairs (a reversed edge as it was in ``old``)."""
  old, new = old > 0, new > 0
  rev = old & new.T & ~new
  added = new & ~old & ~rev.T
  removed = old & ~new & ~rev
  pairs = lambda m: [(int(i), int(j)) for i, j in zip(*np.nonzero(m))]
  return dict(added=pairs(added), removed=pairs(removed), reversed=pairs(rev))


def structural_em(fit_regimes: Callable, x, *, start=None, max_rounds: int = 6,
                  max_parents: int = 3, candidates=None, penalty="bic", method: str = "auto",
                  forbidden=None, tol: float = 1e-6, report: bool = True,
                  free_targets: bool = False, **search_kwargs) -> StructuralEM:
  """Structural EM: alternate the regime fit on the current graph and the graph search
  under that fit's posterior.

  Round r: ``weights, changes, log_px = fit_regimes(adj)`` (``log_px``: the regime
  model's penalised log p(x), higher is better); ``family_scores(x, weights, changes)``;
  ``search`` (hill climbing starts from the current graph). Stops when the proposed graph
  was fitted before, when ``log_px`` does not improve by ``tol`` on the previous round,
  or after ``max_rounds`` fits.

  Args:
    fit_regimes: ``adj [N, N] -> (weights [S, K], changes [K, N], log_px)``.
    x: ``[S, N]`` data, as ``family_scores`` reads it.
    start: the first graph (default empty).
    max_parents, candidates, penalty: ``family_scores``'s.
    method, forbidden, search_kwargs: ``search``'s.
    report: compute ``edge_report`` of the best graph.

  Returns:
    ``StructuralEM``; ``history[r]``: ``adj``, ``log_px``, the edges ``added``,
    ``removed`` and ``reversed`` from the previous round's graph (round 0's: from the
    start, none), and ``proposal_score``,
    the family score of the next graph under this round's posterior.
  """
  x = np.asarray(x)
  n = x.shape[1]
  adj = np.zeros((n, n), np.int32) if start is None else (np.asarray(start) > 0).astype(np.int32)
  history, seen = [], set()
  best = None
  prev_adj = adj  # (round 0 is the start scored: no edge added, removed or reversed)
  for r in range(max_rounds):
    seen.add(adj.tobytes())
    weights, changes, log_px = fit_regimes(adj)
    log_px = float(log_px)
    entry = dict(round=r, adj=adj, log_px=log_px, **edge_diff(prev_adj, adj))
    history.append(entry)
    if history[:-1] and log_px <= history[-2]["log_px"] + tol:
      entry["stop"] = "score did not improve"
      break
    if free_targets:
      fam, _ = family_scores_free(x, weights, max_parents=max_parents, candidates=candidates,
                                  penalty=penalty)
    else:
      fam = family_scores(x, weights, changes, max_parents=max_parents, candidates=candidates,
                          penalty=penalty)
    if best is None or log_px > best[1]:
      best = (adj, log_px, np.asarray(weights), np.asarray(changes), fam)
    proposal, score = search(fam, start=adj, forbidden=forbidden, method=method,
                             return_score=True, **search_kwargs)
    entry["proposal_score"] = score
    if proposal.tobytes() in seen:
      entry["stop"] = "graph repeats"
      break
    prev_adj, adj = adj, proposal
  b_adj, b_score, b_w, b_c, b_fam = best
  edges = edge_report(b_fam, b_adj, method=method) if report else []
  return StructuralEM(adj=b_adj, score=b_score, weights=b_w, changes=b_c, history=history,
                      edges=edges, family=b_fam)
