"""Rivals for the learned graph, run as their authors meant them, and the graph metrics.

Every rival is ``fn(x, data, seed) -> Result`` (``data`` a ``graph_settings.Data``; only
the references read its labels or targets) and returns an adjacency: ``adj[i, j] = 1``
for ``i -> j``, and ``adj[i, j] = adj[j, i] = 1`` for an undirected edge of a CPDAG
(an essential graph). ``RIVALS`` names them:

* ``ges``: causal-learn's GES on the pooled rows, ``local_score_BIC`` (lambda 0.5: the
  plain BIC); a CPDAG.
* ``pc``: causal-learn's PC on the pooled rows, Fisher-z, alpha 0.05 (stable, the
  default orientation rules); a CPDAG (an edge PC leaves bidirected counts as undirected).
* ``gmm_utigsp``: the pipeline of Kumar, Shiragur & Uhler (NeurIPS 2024;
  github.com/BigBang0072/mixture_mec, ``mixture_solver.py``): scikit-learn's
  ``GaussianMixture`` (full covariances) on the pooled rows for K = 1 .. ``k_max``, K by
  BIC (their code also offers BIC; its default picks K where the log-likelihood gain
  drops below 7%); then UT-IGSP (causaldag) with one setting per component, each
  component's rows drawn from its fitted Gaussian (``S // K`` rows each, as they do),
  partial-correlation CI tests and Gaussian invariance tests, both at alpha 1e-3 (theirs).
  UT-IGSP needs an observational setting: here, blind, the largest component stands in
  for it (with balanced regimes, as in both papers' data, that is a guess among equals).
  Regimes: the mixture's labels. A DAG.
* ``gmm_utigsp_oracle_obs``: the same as their code runs it: UT-IGSP's observational
  setting is ``S // K`` true observational rows, in place of the component holding most
  of them (a reference: it reads the true labels of the observational rows).
* ``utigsp_true``: UT-IGSP on the rows grouped by their true labels (true observational
  regime as the base; targets unknown): their "oracle" line, a reference. A DAG.
* ``igsp_true``: IGSP given the true labels and targets, a reference. A DAG.
* ``gies_true``: GIES (the ``gies`` package, Gaussian BIC) given the true labels and
  targets, a reference; an I-essential graph (may hold undirected edges).
* ``empty``: no edges.

Metrics (``graph_metrics``): the truth is a DAG. Per unordered pair, ``shd`` adds 1 for
a missing edge, an extra edge, or a wrong orientation, an undirected predicted edge
compared as a reversal (so it costs 1 where the truth has that edge); ``shd2`` counts a
reversal (and an undirected edge on a true one) as 2 (a missing plus an extra edge).
``f1_skeleton``: F1 of the adjacencies, orientation ignored; ``f1_directed``: F1 of the
directed edges, an undirected edge predicted but never right; ``edges``: predicted
adjacent pairs, ``undirected`` how many of them are undirected.
"""
from __future__ import annotations

import hashlib
import random
import time
from typing import Callable, NamedTuple

import numpy as np


class Result(NamedTuple):
  adj: np.ndarray                  # [N, N] int; both directions = undirected
  labels: np.ndarray | None = None  # [S] regimes the method found, if it finds regimes
  k: int | None = None             # number of regimes found
  note: str = ""
  extra_seconds: float = 0.0      # time of work reused from a cache (the mixture's fits)


# --- metrics ---------------------------------------------------------------------------

def pair_states(adj) -> np.ndarray:
  """Per pair ``i < j`` (upper-triangle order): 0 none, 1 ``i -> j``, 2 ``j -> i``, 3 undirected."""
  a = np.asarray(adj) != 0
  iu = np.triu_indices(a.shape[0], k=1)
  fwd, bwd = a[iu], a.T[iu]
  return np.where(fwd & bwd, 3, np.where(fwd, 1, np.where(bwd, 2, 0)))


def graph_metrics(true_adj, pred_adj) -> dict:
  """SHD (reversal 1), SHD (reversal 2), skeleton and directed F1, edge counts."""
  t, p = pair_states(true_adj), pair_states(pred_adj)
  if np.any(t == 3):
    raise ValueError("the true graph must be a DAG (it has an edge in both directions)")
  true_e, pred_e = t > 0, p > 0
  missing = np.sum(true_e & ~pred_e)
  extra = np.sum(~true_e & pred_e)
  wrong = np.sum(true_e & pred_e & (p != t))  # reversed or undirected
  tp_skel = np.sum(true_e & pred_e)
  tp_dir = np.sum(true_e & (p == t))

  def f1(tp):
    denom = true_e.sum() + pred_e.sum()
    return 1.0 if denom == 0 else float(2 * tp / denom)

  return {"shd": int(missing + extra + wrong), "shd2": int(missing + extra + 2 * wrong),
          "f1_skeleton": f1(tp_skel), "f1_directed": f1(tp_dir), "edges": int(pred_e.sum()),
          "undirected": int(np.sum(p == 3)), "true_edges": int(true_e.sum())}


def regime_metrics(true_labels, labels) -> dict:
  from sklearn.metrics import adjusted_mutual_info_score, adjusted_rand_score
  return {"ari": float(adjusted_rand_score(true_labels, labels)),
          "ami": float(adjusted_mutual_info_score(true_labels, labels))}


# --- conversions -----------------------------------------------------------------------

def from_causallearn(graph) -> np.ndarray:
  """causal-learn's endpoint matrix (``G.graph``) as an adjacency.

  ``graph[j, i] = 1, graph[i, j] = -1``: ``i -> j``; ``-1, -1``: ``i -- j``; ``1, 1``
  (a conflict PC may leave): counted as undirected.
  """
  g = np.asarray(graph)
  n = g.shape[0]
  adj = np.zeros((n, n), int)
  for i in range(n):
    for j in range(i + 1, n):
      a, b = g[i, j], g[j, i]
      if a == 0 and b == 0:
        continue
      if a == -1 and b == 1:
        adj[i, j] = 1
      elif a == 1 and b == -1:
        adj[j, i] = 1
      else:
        adj[i, j] = adj[j, i] = 1
  return adj


def from_arcs(arcs, n: int) -> np.ndarray:
  adj = np.zeros((n, n), int)
  for i, j in arcs:
    adj[int(i), int(j)] = 1
  return adj


def _seed_all(seed: int) -> None:
  """UT-IGSP and IGSP draw their starting orders from ``random`` and ``numpy.random``."""
  random.seed(seed)
  np.random.seed(seed % 2**32)


# --- rivals ------------------------------------------------------------------------------

def empty(x, data=None, seed=0) -> Result:
  n = np.asarray(x).shape[1]
  return Result(np.zeros((n, n), int))


def ges(x, data=None, seed=0) -> Result:
  from causallearn.search.ScoreBased.GES import ges as cl_ges
  record = cl_ges(np.asarray(x, np.float64), score_func="local_score_BIC")
  return Result(from_causallearn(record["G"].graph))


def pc(x, data=None, seed=0, alpha: float = 0.05) -> Result:
  from causallearn.search.ConstraintBased.PC import pc as cl_pc
  cg = cl_pc(np.asarray(x, np.float64), alpha, "fisherz", show_progress=False)
  return Result(from_causallearn(cg.G.graph))


def _utigsp(obs, others, n, seed, alpha=1e-3, alpha_inv=1e-3):
  """UT-IGSP (causaldag) on observational rows ``obs`` and a list of interventional
  row blocks; returns the DAG's adjacency and the targets it names per block."""
  from causaldag import (MemoizedCI_Tester, MemoizedInvarianceTester, gauss_invariance_suffstat,
                         gauss_invariance_test, partial_correlation_suffstat,
                         partial_correlation_test, unknown_target_igsp)
  ci = MemoizedCI_Tester(partial_correlation_test, partial_correlation_suffstat(obs), alpha=alpha)
  inv = MemoizedInvarianceTester(gauss_invariance_test, gauss_invariance_suffstat(obs, others),
                                 alpha=alpha_inv)
  _seed_all(seed)
  dag, targets = unknown_target_igsp([dict(known_interventions=[]) for _ in others],
                                     set(range(n)), ci, inv)
  return from_arcs(dag.arcs, n), [sorted(int(t) for t in ts) for ts in targets]


_GMM_CACHE: dict = {}  # the last choice, shared by the two gmm_utigsp variants


def choose_gmm(x, k_max: int, seed: int):
  """``GaussianMixture`` fits for K = 1 .. k_max: the one of lowest BIC, all BICs, the
  fits' seconds, and whether they were reused (the same rows, K range and seed)."""
  key = (hashlib.sha1(np.ascontiguousarray(x).tobytes()).hexdigest(), x.shape, k_max, seed)
  cached = key in _GMM_CACHE
  if not cached:
    _GMM_CACHE.clear()
    start = time.perf_counter()
    gm, bics = _choose_gmm(x, k_max, seed)
    _GMM_CACHE[key] = (gm, bics, time.perf_counter() - start)
  return (*_GMM_CACHE[key], cached)


def _choose_gmm(x, k_max: int, seed: int):
  from sklearn.mixture import GaussianMixture
  best, bics = None, {}
  for k in range(1, k_max + 1):
    gm = GaussianMixture(n_components=k, covariance_type="full", random_state=seed).fit(x)
    bics[k] = float(gm.bic(x))
    if best is None or bics[k] < bics[best.n_components]:
      best = gm
  return best, bics


def gmm_utigsp(x, data=None, seed=0, k_max: int | None = None,
               oracle_obs: bool = False) -> Result:
  """Kumar et al.'s pipeline; ``oracle_obs``: as their code runs it, the true
  observational rows as UT-IGSP's base (``S // K`` of them) in place of the component
  that holds most of them; else, blind, the largest component is the base."""
  x = np.asarray(x, np.float64)
  n = x.shape[1]
  if k_max is None:  # theirs: n + 1 (one regime per node and the observational one)
    k_max = max(n + 1, data.n_regimes if data is not None else 0)
  gm, _, gmm_seconds, cached = choose_gmm(x, k_max, seed)
  k = gm.n_components
  labels = gm.predict(x)
  rng = np.random.default_rng(seed)
  per = len(x) // k
  blocks = [rng.multivariate_normal(gm.means_[c], gm.covariances_[c], size=per) for c in range(k)]
  if oracle_obs:
    x_obs, obs_k, _ = _groups(x, data)
    true_obs = data.labels == obs_k
    obs = int(np.bincount(labels[true_obs], minlength=k).argmax())
    base = x_obs[true_obs][:per]
  else:
    obs = int(np.argmax(gm.weights_))
    base = blocks[obs]
  others = [b for c, b in enumerate(blocks) if c != obs]
  if not others:
    return Result(np.zeros((n, n), int), labels, k,
                  "one component: UT-IGSP has no interventional setting; empty graph",
                  gmm_seconds if cached else 0.0)
  adj, targets = _utigsp(base, others, n, seed)
  return Result(adj, labels, k, f"observational = component {obs}; targets found {targets}",
                gmm_seconds if cached else 0.0)


def gmm_utigsp_oracle_obs(x, data, seed=0) -> Result:
  return gmm_utigsp(x, data, seed, oracle_obs=True)


def _groups(x, data):
  x = np.asarray(x, np.float64)
  obs = next(k for k, t in enumerate(data.targets) if len(t) == 0)
  return x, obs, [x[data.labels == k] for k in range(data.n_regimes)]


def utigsp_true(x, data, seed=0) -> Result:
  x, obs, blocks = _groups(x, data)
  others = [b for k, b in enumerate(blocks) if k != obs]
  adj, targets = _utigsp(blocks[obs], others, x.shape[1], seed)
  return Result(adj, note=f"given the true labels; targets found {targets}")


def igsp_true(x, data, seed=0, alpha=1e-3, alpha_inv=1e-3) -> Result:
  from causaldag import (MemoizedCI_Tester, MemoizedInvarianceTester, gauss_invariance_suffstat,
                         gauss_invariance_test, igsp, partial_correlation_suffstat,
                         partial_correlation_test)
  x, obs, blocks = _groups(x, data)
  n = x.shape[1]
  ks = [k for k in range(data.n_regimes) if k != obs]
  ci = MemoizedCI_Tester(partial_correlation_test, partial_correlation_suffstat(blocks[obs]),
                         alpha=alpha)
  inv = MemoizedInvarianceTester(gauss_invariance_test,
                                 gauss_invariance_suffstat(blocks[obs], [blocks[k] for k in ks]),
                                 alpha=alpha_inv)
  _seed_all(seed)
  dag = igsp([dict(interventions=list(data.targets[k])) for k in ks], set(range(n)), ci, inv)
  return Result(from_arcs(dag.arcs, n), note="given the true labels and targets")


def gies_true(x, data, seed=0) -> Result:
  import gies
  x, _, blocks = _groups(x, data)
  estimate, _ = gies.fit_bic(blocks, [list(t) for t in data.targets])
  return Result((np.asarray(estimate) != 0).astype(int), note="given the true labels and targets")


RIVALS: dict[str, Callable[..., Result]] = {
    "ges": ges, "pc": pc, "gmm_utigsp": gmm_utigsp,
    "gmm_utigsp_oracle_obs": gmm_utigsp_oracle_obs, "utigsp_true": utigsp_true,
    "igsp_true": igsp_true, "gies_true": gies_true, "empty": empty}
# The package each rival needs (the harness records "not installed" when it is missing).
PACKAGES = {"ges": "causallearn", "pc": "causallearn", "gmm_utigsp": "causaldag",
            "gmm_utigsp_oracle_obs": "causaldag", "utigsp_true": "causaldag",
            "igsp_true": "causaldag", "gies_true": "gies"}
# Given the true labels (all of them, or the observational rows only).
REFERENCES = ("gmm_utigsp_oracle_obs", "utigsp_true", "igsp_true", "gies_true")
