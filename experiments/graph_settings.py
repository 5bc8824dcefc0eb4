"""Data for the graph comparison (``experiments.graphs``): pooled rows of unknown regimes,
with the true DAG, labels and targets that only the scoring (and the references) see.

Every generator is a function of ``seed`` alone (numpy's ``default_rng(seed)``) and
returns a ``Data``: ``x`` float32 ``[S, N]``, ``adj`` int ``[N, N]`` (``adj[i, j] = 1``:
``i -> j``), ``labels`` int ``[S]`` (regime 0 is the observational one), ``targets``
(per regime, the tuple of intervened nodes; ``()`` for regime 0). Rows are split as
evenly as the total allows over the regimes (both papers give every regime the same
number of rows) and shuffled.

Settings (``SETTINGS``; ``GROUPS`` expands ``kumar``, ``faria``, ``all``):

* ``kumar_hard`` / ``kumar_soft``: Kumar, Shiragur & Uhler (NeurIPS 2024), "Learning
  mixtures of unknown causal interventions", as their code generates it
  (github.com/BigBang0072/mixture_mec, ``scm_module.py``): a linear-Gaussian SCM, weights
  ``+-U(0.5, 1.0)``, noise ``N(0, 1)`` on every node, an Erdos-Renyi DAG (each pair of
  the hidden order an edge with probability 0.8 here; their sweep used 0.1-1.0 on 6
  nodes), n = 8, every node targeted once plus the observational regime (K = 9), 8000
  rows in all. ``hard``: their ``do`` intervention, the node's parents cut and its value
  set to ``N(1, 1e-9)``. ``soft``: the mechanism kept and a mean shift of
  ``+-U(2, 3)`` (random sign) added to the node's noise (our choice: their code has no
  soft intervention; a shift the size of their do value, 1, leaves the regimes nearly
  inseparable). Their code keeps the hidden order fixed (a lower-triangular matrix);
  here the nodes are permuted, so column order is not a topological order.
* ``faria_{linear,mlp}_e{1,2}_{single,multi}``: Faria, Martins & Figueiredo (CLeaR 2022),
  "Differentiable causal discovery under latent interventions", as their data code does
  it (github.com/goncalorafaria/causaldiscovery-latent-interventions,
  ``causaldiscover/utils/data_utils.py`` with PyCausal's ``problems.py``): n = 10, an ER
  DAG with ``e`` expected edges per node (edge probability ``2 e / (n - 1)``, as in
  DCDI), 10000 rows. Noise of node j: ``N(b_j, (0.4 a_j)^2)``, ``a_j ~ U(1, 1.4)``,
  ``b_j ~ N(0, 0.3^2)``; a root is its noise, any other node is ``f_j(pa_j) + 0.2
  noise_j``. ``linear``: ``f_j`` a sum of ``+-U(0.25, 1)`` times each parent; ``mlp``:
  two ReLU layers of 8 units (weights ``N(0, 1)``, biases ``+-U(0.05, 1.5)``) then a
  ``+-U(0.25, 1)`` sum. Interventions are perfect and stochastic: a target's value is
  drawn from ``N(+-U(2, 4), 0.1^2)`` (one mean per regime and target). ``single``:
  every node targeted once (K = 11); ``multi``: 20 regimes of 1-4 targets each (K = 21).
  The pooled rows are standardized (as theirs are) and the nodes permuted.
* ``n20``: the Faria linear family at n = 20, ``e = 2``, single-target (K = 21), 10000
  rows (the row count is our choice).
* ``sachs``: ``vcm_jax.datasets.load_sachs()`` (5846 cells, log values, 11 proteins),
  labels from its conditions, the 17-arc consensus graph; the same rows every seed.
"""
from __future__ import annotations

from typing import Callable, NamedTuple

import numpy as np

from vcm_jax import graphs


class Data(NamedTuple):
  x: np.ndarray          # [S, N] float32
  adj: np.ndarray        # [N, N] int, adj[i, j] = 1 for i -> j
  labels: np.ndarray     # [S] int, 0 = observational
  targets: list          # [K] tuples of node indices, () for regime 0
  names: list            # [N] column names
  description: str
  bayes_labels: np.ndarray | None = None  # [S] the exact posterior's regimes, true SCM

  @property
  def n_regimes(self) -> int:
    return len(self.targets)


def er_dag(rng: np.random.Generator, n: int, p: float) -> np.ndarray:
  """Each pair of a hidden random order an edge with probability ``p``; ``[N, N]`` int."""
  upper = np.triu(rng.random((n, n)) < p, k=1).astype(int)
  perm = rng.permutation(n)  # node perm[r] takes rank r of the hidden order
  adj = np.zeros((n, n), int)
  adj[np.ix_(perm, perm)] = upper
  return adj


def split_rows(rows: int, k: int) -> np.ndarray:
  """``rows`` split over ``k`` regimes as evenly as possible: ``[k]`` sizes."""
  return np.array([rows // k + (i < rows % k) for i in range(k)])


def _signed(rng, shape, low, high):
  return rng.choice([-1.0, 1.0], shape) * rng.uniform(low, high, shape)


def _pack(rng, blocks, labels, adj, targets, description, standardize=False) -> Data:
  x = np.concatenate(blocks)
  labels = np.concatenate(labels)
  idx = rng.permutation(len(x))
  x, labels = x[idx], labels[idx]
  if standardize:
    x = (x - x.mean(0)) / x.std(0)
  names = [f"X{j}" for j in range(adj.shape[0])]
  return Data(x.astype(np.float32), adj.astype(int), labels.astype(int),
              [tuple(int(j) for j in sorted(t)) for t in targets], names, description)


# --- Kumar, Shiragur & Uhler (NeurIPS 2024) ------------------------------------------

def kumar(seed: int, variant: str = "hard", *, n: int = 8, p: float = 0.8, rows: int = 8000,
          do_value: float = 1.0, do_var: float = 1e-9, shift_low: float = 2.0,
          shift_high: float = 3.0) -> Data:
  """Linear Gaussian SCM, every node targeted once (see the module docstring)."""
  if variant not in ("hard", "soft"):
    raise ValueError(f"unknown variant {variant!r}; expected hard or soft")
  rng = np.random.default_rng(seed)
  adj = er_dag(rng, n, p)
  w = adj * _signed(rng, (n, n), 0.5, 1.0)
  shift = _signed(rng, (n,), shift_low, shift_high)
  order = graphs.kahn_order(adj)
  targets = [()] + [(j,) for j in range(n)]
  blocks, labels = [], []
  for k, size in enumerate(split_rows(rows, n + 1)):
    eps = rng.normal(size=(size, n))
    x = np.zeros((size, n))
    for j in order:
      if k == j + 1 and variant == "hard":
        x[:, j] = do_value + np.sqrt(do_var) * eps[:, j]
      else:
        x[:, j] = x @ w[:, j] + eps[:, j] + (shift[j] if k == j + 1 else 0.0)
    blocks.append(x)
    labels.append(np.full(size, k))
  what = ("do(X_j = 1), variance 1e-9" if variant == "hard"
          else f"mean shift +-U({shift_low:g}, {shift_high:g})")
  data = _pack(rng, blocks, labels, adj, targets,
               f"Kumar et al. 2024: n={n}, ER p={p}, linear Gaussian, {what}, K={n + 1}, "
               f"{rows} rows")
  # The Bayes ceiling: each row's most probable regime under the true SCM and the true
  # regime sizes (the rows as stored, float32).
  x = data.x.astype(np.float64)
  mean, scale = x @ w, np.ones(n)
  log_lik = np.empty((len(x), n + 1))
  for k in range(n + 1):
    m, sd = mean.copy(), scale.copy()
    if k and variant == "hard":
      m[:, k - 1], sd[k - 1] = do_value, np.sqrt(do_var)
    elif k:
      m[:, k - 1] += shift[k - 1]
    log_lik[:, k] = (-0.5 * ((x - m) / sd) ** 2 - np.log(sd)).sum(1)
  prior = np.log(split_rows(rows, n + 1) / rows)
  return data._replace(bayes_labels=(log_lik + prior).argmax(1))


# --- Faria, Martins & Figueiredo (CLeaR 2022) -----------------------------------------

def _relu(v):
  return np.maximum(v, 0.0)


def faria(seed: int, mechanism: str = "linear", e: float = 1.0, multi: bool = False, *,
          n: int = 10, rows: int = 10000, hidden: int = 8) -> Data:
  """Faria et al.'s synthetic family (see the module docstring)."""
  if mechanism not in ("linear", "mlp"):
    raise ValueError(f"unknown mechanism {mechanism!r}; expected linear or mlp")
  rng = np.random.default_rng(seed)
  adj = er_dag(rng, n, min(1.0, 2.0 * e / (n - 1)))
  order = graphs.kahn_order(adj)
  noise_a = rng.uniform(1.0, 1.4, n)
  noise_b = rng.normal(0.0, 0.3, n)
  lin = adj * _signed(rng, (n, n), 0.25, 1.0)
  # Per node: two ReLU layers of ``hidden`` units on its parents, then a signed sum.
  mlp = []
  for j in range(n):
    pa = np.flatnonzero(adj[:, j])
    mlp.append((pa, rng.normal(size=(len(pa), hidden)), _signed(rng, hidden, 0.05, 1.5),
                rng.normal(size=(hidden, hidden)), _signed(rng, hidden, 0.05, 1.5),
                _signed(rng, hidden, 0.25, 1.0)))

  if multi:
    targets = [()] + [tuple(rng.choice(n, rng.integers(1, (n + 2) // 3 + 1), replace=False))
                      for _ in range(2 * n)]
  else:
    targets = [()] + [(j,) for j in range(n)]
  blocks, labels = [], []
  for k, size in enumerate(split_rows(rows, len(targets))):
    noise = noise_b + 0.4 * noise_a * rng.normal(size=(size, n))
    means = {int(j): rng.choice([-1.0, 1.0]) * rng.uniform(1.0, 2.0) * 2.0 for j in targets[k]}
    x = np.zeros((size, n))
    for j in order:
      if j in means:
        x[:, j] = rng.normal(means[j], 0.1, size)
        continue
      pa, w1, b1, w2, b2, out = mlp[j]
      if len(pa) == 0:
        x[:, j] = noise[:, j]
      elif mechanism == "linear":
        x[:, j] = x @ lin[:, j] + 0.2 * noise[:, j]
      else:
        h = _relu(_relu(x[:, pa] @ w1 + b1) @ w2 + b2)
        x[:, j] = h @ out + 0.2 * noise[:, j]
    blocks.append(x)
    labels.append(np.full(size, k))
  kind = "multi-target (1-4)" if multi else "single-target"
  return _pack(rng, blocks, labels, adj, targets,
               f"Faria et al. 2022: n={n}, ER e={e:g} (p={min(1.0, 2.0 * e / (n - 1)):.3f}), "
               f"{mechanism}, perfect stochastic {kind}, K={len(targets)}, {rows} rows, "
               "standardized", standardize=True)


# --- Sachs -----------------------------------------------------------------------------

def sachs(seed: int = 0) -> Data:
  """The Sachs flow-cytometry data (5846 cells), the same every seed."""
  del seed
  from vcm_jax.datasets import load_sachs
  d = load_sachs()
  index = {name: j for j, name in enumerate(d.names)}
  regimes = ["observational"] + sorted(set(d.labels) - {"observational"})
  code = {r: k for k, r in enumerate(regimes)}
  targets = [tuple(sorted(index[t] for t in (d.targets[r] or ()))) for r in regimes]
  labels = np.array([code[r] for r in d.labels])
  return Data(np.asarray(d.values, np.float32), np.asarray(d.adjacency, int), labels, targets,
              list(d.names), d.description)


def _faria(mechanism, e, multi):
  return lambda seed: faria(seed, mechanism, e, multi)


SETTINGS: dict[str, Callable[[int], Data]] = {
    "kumar_hard": lambda seed: kumar(seed, "hard"),
    "kumar_soft": lambda seed: kumar(seed, "soft"),
    **{f"faria_{m}_e{e}_{'multi' if multi else 'single'}": _faria(m, float(e), multi)
       for m in ("linear", "mlp") for e in (1, 2) for multi in (False, True)},
    "n20": lambda seed: faria(seed, "linear", 2.0, False, n=20),
    "sachs": sachs,
}
GROUPS = {"kumar": [s for s in SETTINGS if s.startswith("kumar")],
          "faria": [s for s in SETTINGS if s.startswith("faria")],
          "all": list(SETTINGS)}


def expand(names) -> list[str]:
  """Setting names with groups expanded, in order, without repeats (at least one)."""
  if not names:
    raise ValueError(f"no setting given; expected some of {sorted(SETTINGS)} or a group "
                     f"{sorted(GROUPS)}")
  out = []
  for name in names:
    for s in GROUPS.get(name, [name]):
      if s not in SETTINGS:
        raise ValueError(f"unknown setting {s!r}; expected one of {sorted(SETTINGS)} or a group "
                         f"{sorted(GROUPS)}")
      if s not in out:
        out.append(s)
  return out


def make(name: str, seed: int) -> Data:
  return SETTINGS[name](seed)
