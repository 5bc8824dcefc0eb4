"""The public entry: ``vcm_jax.fit(x, graph)`` and the ``Fit`` it returns.

``fit`` matches the data's columns and the graph's nodes by name, checks its input,
and runs the default the own-data command runs (``choose.fit_default``: the first
fit, its shared-mechanism check, the model choice where the check fails, the chosen
fit), answering in the data's own units with the choice and the identifiability
verdict on the ``Fit``. A ``config`` given by the user means that one model, no
choice (scikit-learn's convention for fixed hyperparameters). Under it
sits ``fit_graph``, a pure function of ``(key, x, adj)`` that ``jit`` and
``vmap`` take as they are: many fits over keys, or over graphs with the same N,
are one call::

  fits = jax.vmap(lambda k, a: vcm_jax.fit_graph(k, x, a, config=cfg, max_parents=3))(keys, adjs)

A ``Fit`` is a pytree (the batched fits above are one ``Fit`` with a leading axis).
"""
from __future__ import annotations

import functools
import warnings

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from vcm_jax import config as config_lib
from vcm_jax import graphs, identify, inputs, predict, programs, select, train
from vcm_jax.config import FitConfig
from vcm_jax.identify import Identification
from vcm_jax.model import INACTIVE_LOGIT, Model


class FitError(RuntimeError):
  """A fit that failed (no start ended with a finite log p(x)): never returned as a result."""


class FitWarning(UserWarning):
  """A result to read with care: what the default's checks found (``Fit.warnings``)."""


def check_finite(result: train.FitResult, what: str) -> None:
  """Raise ``FitError`` where no start of ``result`` ended with a finite ``log p(x)``
  (``train.finish`` keeps the best finite start; with none it keeps start 0, NaN)."""
  log_px = np.asarray(result.restart_log_px)
  if not np.isfinite(log_px).any():
    raise FitError(f"{what}: every start ended with a non-finite log p(x) "
                   f"({', '.join(map(str, log_px.ravel()))}): no fit to report")


@struct.dataclass
class Fit:
  """A fitted model and what it identified; methods take and return data units."""
  result: train.FitResult
  identification: Identification
  parent_idx: jax.Array   # [N, D] parent table
  parent_mask: jax.Array  # [N, D]
  order: jax.Array        # [N] a topological order
  model: Model = struct.field(pytree_node=False)
  names: tuple | None = struct.field(pytree_node=False, default=None)  # the N column names
  choice: object = struct.field(pytree_node=False, default=None)   # choose.ModelChoice
  verdict: dict | None = struct.field(pytree_node=False, default=None)  # identifiability
  # What the default's checks found wrong, one line each (``diagnose``); also issued as
  # Python warnings by ``fit``.
  warnings: tuple = struct.field(pytree_node=False, default=())
  # How the graph was learned or repaired (``learn.learn_graph``); None: given.
  graph_learning: dict | None = struct.field(pytree_node=False, default=None)

  def __repr__(self) -> str:
    """One line (the arrays are the fields; ``describe()`` reads them out)."""
    cfg = self.model.cfg
    what = (f"{cfg.decoder} latent, K = {self.n_regimes}, {cfg.noise} noise, {cfg.mechanism} "
            f"mechanisms, {self.model.n_nodes} nodes")
    obs = self.identification.observational
    if isinstance(obs, jax.core.Tracer) or np.ndim(obs):
      return f"Fit({what}; a batch or a traced fit)"
    verdict = "" if self.verdict is None else f", verdict {self.verdict['verdict']}"
    return f"Fit({what}; observational regime {int(obs)}{verdict}; fit.describe() for more)"

  @property
  def graph(self) -> np.ndarray:
    """``[N, N]`` the DAG the fit used (``graph[i, j] = 1``: i -> j), learned or given."""
    one = self._one()
    return np.asarray(graphs.table_adjacency(one.parent_idx, one.parent_mask)).astype(int)

  @property
  def edges(self) -> list[tuple]:
    """The DAG's edges ``(source, target)`` by name (``X0``, ``X1``... without names)."""
    names = self.names or tuple(f"X{j}" for j in range(self.model.n_nodes))
    return [(names[i], names[j]) for i, j in zip(*np.nonzero(self.graph))]

  @property
  def config(self) -> FitConfig:
    """The fitted model's settings (the chosen candidate's, where a choice was made)."""
    return self.model.cfg

  @property
  def n_iter(self) -> int:
    """Training steps the kept start ran (scikit-learn's ``n_iter_``)."""
    return int(self._one().result.steps_used)

  @property
  def converged(self) -> bool:
    """Whether the kept start stopped by the stopping rule (its log p(x) stopped
    improving) before the step cap; always False without the rule
    (``stop_tolerance = 0`` runs the steps it is given)."""
    return bool(self._one().result.stopped)

  def score(self, x) -> float:
    """Mean ``log p(x)`` per row, data units (scikit-learn's ``score``)."""
    return float(np.mean(np.asarray(self.log_prob(x), np.float64)))

  def n_parameters(self) -> int:
    """Free parameters, counted as the model choice counts them (``choose``)."""
    from vcm_jax import choose
    return choose.n_parameters(self)

  def bic(self, x) -> float:
    """``log L - 0.5 log(S) * n_parameters`` on rows ``x`` (higher is better; note
    scikit-learn's ``bic`` is -2 times this): the model choice's (``choose.scores``)."""
    from vcm_jax import choose
    return choose.scores(self, self._rows(x))["bic"]

  def icl(self, x) -> float:
    """``bic(x)`` minus the entropy of the regime posterior (higher is better)."""
    from vcm_jax import choose
    return choose.scores(self, self._rows(x))["icl"]

  def _rows(self, x):
    """``x`` as the fit's ``[S, N]`` float32 columns (a DataFrame's by name), checked
    (``inputs.query_rows``); traced values (a query inside ``jit`` or ``vmap``) as they are."""
    from vcm_jax import inputs, named
    if isinstance(x, jax.core.Tracer):
      return x
    if self.names is not None and named.is_frame(x):  # a DataFrame: its columns by name
      missing = [n for n in self.names if n not in set(x.columns)]
      if missing:
        raise ValueError(f"x lacks the fitted column(s) {', '.join(map(repr, missing))}")
      x = x[list(self.names)].to_numpy()
    if self.result.loc.ndim > 1:  # a batch of fits, queried outside vmap: _one says so
      return jnp.asarray(x, jnp.float32)
    return jnp.asarray(inputs.query_rows(x, self.model.n_nodes, self.names))

  @property
  def target_names(self) -> list[tuple]:
    """Per regime, the names of its targets (``()`` for the observational one)."""
    names = self.names or tuple(f"X{j}" for j in range(self.model.n_nodes))
    return [tuple(names[j] for j in t) for t in self.targets]

  def describe(self) -> str:
    """A few lines a person reads: the model, the choice, the regimes, the verdict."""
    cfg = self.config
    lines = [f"{cfg.decoder} latent, K = {self.n_regimes}, {cfg.noise} noise, {cfg.mechanism} "
             f"mechanisms; {self.n_iter} steps ({'converged' if self.converged else 'step cap'})"]
    learned = self.graph_learning
    if learned is not None:
      how = {"learn": "learned", "repair": "repaired"}.get(learned.get("search"), "learned")
      lines.append(f"graph: {how} by structural EM, {len(self.edges)} "
                   f"edge{'' if len(self.edges) == 1 else 's'} "
                   f"({', '.join(f'{a} -> {b}' for a, b in self.edges[:8])}"
                   f"{', ...' if len(self.edges) > 8 else ''}); fit.graph_learning for the "
                   "rounds, gains and orientations")
      undecided = [f"{e['source']} - {e['target']}" for e in learned.get("edges", ())
                   if not e["oriented"]]
      if undecided:
        lines.append(f"  orientation undecided by the data: {', '.join(undecided)}")
    if self.choice is not None:
      lines.append(f"chosen: {self.choice.why}")
      for row in self.choice.table:
        # (the structured latent's K is the graph's, N + 1: its config holds 0)
        k = row["n_regimes"] if row["decoder"] != "structured" else self.model.n_nodes + 1
        lines.append(f"  {'*' if row['chosen'] else ' '} {row['decoder']:10s} K={k:<3d}"
                     f" {row['noise']:9s} {row.get('scale_model', 'constant'):8s} "
                     f"BIC {row['bic']:12.1f}  ICL {row['icl']:12.1f}")
    weights = np.asarray(self.weights)
    empty = {k for k in (self.verdict or {}).get("regimes_not_paying", ()) if weights[k] == 0}
    for k, targets in enumerate(self.target_names):
      what = "observational" if k == self.observational else "targets " + ", ".join(
          map(str, targets))
      lines.append(f"regime {k}: weight {weights[k]:.3f}, {what}"
                   + (" (does not pay for its parameters: empty)" if k in empty
                      else ""))
    if self.verdict is not None:
      lines.append(f"identifiability: {self.verdict['verdict']} ({self.verdict['why']})")
    else:  # a config= fit: one model as given, no choice, no check, no verdict
      lines.append("identifiability: not judged (one model as given: "
                   "vcm_jax.identifiability.of_fit(fit, x) judges it)")
    return "\n".join(lines)

  @property
  def n_regimes(self) -> int:
    return self.model.n_categories

  def without_regimes(self, regimes) -> "Fit":
    """This fit with ``regimes`` (ids) given prior weight 0, the others' weights
    renormalised in proportion (a learned prior only): no row is theirs, and ``log_prob``,
    ``posterior`` and ``assign`` are those of the mixture without them. Their mechanisms
    and ids stay (``sample`` still draws from them). The observational regime stays."""
    self._one()
    drop = sorted({int(k) for k in regimes})
    if not drop:
      return self
    if self.model.cfg.prior != "learned" or self.model.encoder is not None:
      raise ValueError("only the regimes of a learned prior under the exact posterior can be "
                       f"dropped (this fit: prior {self.model.cfg.prior!r}, posterior "
                       f"{self.model.cfg.posterior!r})")
    if any(not 0 <= k < self.n_regimes for k in drop) or self.observational in drop:
      raise ValueError(f"regimes {drop}: ids must be in 0..{self.n_regimes - 1} and not the "
                       f"observational regime ({self.observational})")
    logits = self.result.params["prior_logits"].at[jnp.asarray(drop)].set(INACTIVE_LOGIT)
    params = dict(self.result.params, prior_logits=logits)
    return self.replace(result=self.result._replace(params=params))

  @property
  def weights(self) -> jax.Array:
    """``[K]`` the fitted regime probabilities ``p(z)``."""
    return jnp.exp(self.model.log_prior(self.result.params))

  def _one(self) -> "Fit":
    if self.result.loc.ndim > 1:
      raise ValueError("this Fit holds a batch of fits (from vmap): query it inside jax.vmap, "
                       "e.g. jax.vmap(lambda f, x: f.posterior(x))(fits, x)")
    return self

  def posterior(self, x) -> jax.Array:
    """``[S, K]`` regime probabilities (the recipe's posterior: exact by default)."""
    self._one()
    return _jitted(predict.posterior)(self.model, self.result, self._rows(x),
                                      self.parent_idx, self.parent_mask)

  def assign(self, x) -> jax.Array:
    """``[S]`` the most probable regime of each sample."""
    return jnp.argmax(self.posterior(x), axis=-1).astype(jnp.int32)

  def log_prob(self, x) -> jax.Array:
    """``[S]`` exact ``log p(x)`` of the fitted mixture, in data units."""
    self._one()
    return _jitted(predict.log_prob)(self.model, self.result, self._rows(x),
                                     self.parent_idx, self.parent_mask)

  # scikit-learn's names for the same answers (a GaussianMixture user's first calls)
  def predict(self, x) -> np.ndarray:
    """``assign(x)`` as a NumPy array (scikit-learn's ``predict``)."""
    return np.asarray(self.assign(x))

  def predict_proba(self, x) -> np.ndarray:
    """``posterior(x)`` as a NumPy array (scikit-learn's ``predict_proba``)."""
    return np.asarray(self.posterior(x))

  def score_samples(self, x) -> np.ndarray:
    """``log_prob(x)`` as a NumPy array (scikit-learn's ``score_samples``)."""
    return np.asarray(self.log_prob(x))

  def regime_log_likelihoods(self, x) -> jax.Array:
    """``[S, K]`` ``log p(x | regime k)`` of the fitted mechanisms, in data units (their
    logsumexp under the prior is ``log_prob``)."""
    self._one()
    return _jitted(predict.regime_log_likelihoods)(self.model, self.result, self._rows(x),
                                                   self.parent_idx, self.parent_mask)

  def outlier_score(self, x) -> jax.Array:
    """``[S]`` probability that a row's most suspect cell is a gross error (needs
    ``outlier_fraction > 0`` in the config; 0 otherwise)."""
    self._one()
    return _jitted(predict.outlier_score)(self.model, self.result, self._rows(x),
                                          self.parent_idx, self.parent_mask)

  def sample(self, key, n: int, regime: int = 0) -> jax.Array:
    """``[n, N]`` samples from regime ``regime``, in data units."""
    self._one()
    concrete = not isinstance(regime, jax.core.Tracer) and np.ndim(regime) == 0
    if concrete and (not np.issubdtype(np.asarray(regime).dtype, np.integer)
                     or not 0 <= int(regime) < self.n_regimes):
      raise ValueError(f"regime={regime} is not a regime id of this fit (0..{self.n_regimes - 1})")
    if not (isinstance(n, (int, np.integer)) and not isinstance(n, bool) and n >= 0):
      raise ValueError(f"n={n!r} must be a number of samples (an integer >= 0)")
    regimes = jnp.full((n,), regime, jnp.int32)
    return _jitted(predict.sample, 1)(as_key(key), self.model, self.result, regimes,
                                      self.parent_idx, self.parent_mask, self.order)

  @property
  def observational(self) -> int:
    """Id of the observational regime (host; inside jit use ``identification.observational``)."""
    return int(self._one().identification.observational)

  @property
  def targets(self) -> list[tuple[int, ...]]:
    """Per regime, the tuple of target node indices (``()`` for the observational one);
    host-side: inside jit use ``identification.changed``, ``[K, N]``."""
    changed = np.asarray(self._one().identification.changed)
    return [tuple(int(j) for j in np.flatnonzero(row)) for row in changed]


def as_key(key):
  """A PRNG key from ``key``: a key as it is, an integer as its seed, None as seed 0;
  anything else a one-line ``ValueError``."""
  if key is None:
    return jax.random.key(0)
  if isinstance(key, (int, np.integer)) and not isinstance(key, bool):
    return jax.random.key(int(key))
  if isinstance(key, jax.Array) and (jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key)
                                     or (key.dtype == jnp.uint32 and key.shape[-1:] == (2,))):
    return key
  if isinstance(key, np.ndarray) and key.dtype == np.uint32 and key.shape[-1:] == (2,):
    return jnp.asarray(key)  # (a raw key brought to the host)
  if (isinstance(key, (np.ndarray, jax.Array)) and key.ndim == 0
      and jax.dtypes.issubdtype(key.dtype, np.integer)):  # a 0-d integer array: its seed
    return jax.random.key(int(key))
  raise ValueError(f"key must be a JAX PRNG key (jax.random.key(0)) or an integer seed; got "
                   f"{type(key).__name__}")


@functools.cache
def _jitted(fn, model_argnum: int = 0):
  return jax.jit(fn, static_argnums=model_argnum)


def fit_graph(key, x, adj, *, config: FitConfig, max_parents: int) -> Fit:
  """Fit raw data ``x: [S, N]`` on the DAG ``adj: [N, N]`` (pure: jit- and vmap-safe).

  ``config`` and ``max_parents`` (at least the largest in-degree) are static; the
  free decoder needs ``config.n_regimes`` set (``fit`` chooses it when it is 0).
  Concrete inputs are checked (a one-line ``ValueError``): ``adj`` a DAG whose
  in-degrees fit ``max_parents``, ``x`` finite numbers with a column per node (taken as
  float32), ``key`` a PRNG key or an integer seed, ``config`` a ``FitConfig`` or a dict
  of its fields; traced ones, under ``jit`` or ``vmap``, cannot be. Concrete inputs are
  fitted by one compiled program, ``fit``'s own (cached for ``config`` and ``max_parents``).
  """
  if not isinstance(config, FitConfig):  # (a dict of its fields, as ``fit`` takes)
    config = config_lib.coerce(config)
  if not isinstance(key, jax.core.Tracer):
    key = as_key(key)
  if not isinstance(adj, jax.core.Tracer):
    adj = np.asarray(adj)
    graphs.validate_dag(adj)
    adj = jnp.asarray(adj)
  if not isinstance(x, jax.core.Tracer):
    x = jnp.asarray(inputs.checked(x, adj.shape[-1]))
  if not any(isinstance(a, jax.core.Tracer) for a in (key, x, adj)):
    # Concrete inputs, checked: the fit as one compiled program (``fit``'s own), not
    # op by op (eagerly, each of a fit's some 800 small operations compiled alone: 11 s).
    graphs.check_max_parents(adj, max_parents)  # (``validate_dag`` checked the rest)
    return _jit_fit_graph(config, max_parents)(key, x, adj.astype(jnp.float32))
  n = x.shape[-1]
  trainer = _trainer(config, n, max_parents)
  idx, mask = graphs.parent_table(adj, max_parents)
  result = train.fit_arrays(key, x, idx, mask, trainer=trainer)
  return from_result(trainer.model, result, x, idx, mask, graphs.topological_order(adj))


def from_result(model: Model, result: train.FitResult, x, parent_idx, parent_mask, order) -> Fit:
  """A ``Fit`` from a finished ``FitResult`` (for callers that run the steps
  themselves): identifies the regimes on the training data ``x`` (data units)."""
  mean, scale, msd = predict.regime_mechanisms(model, result, x, parent_idx, parent_mask,
                                               msd=True)
  sizes = predict.posterior(model, result, x, parent_idx, parent_mask).mean(0)
  changed = model.gates_on(result.params) if model.sparse else None
  ident = identify.identify_regimes(mean, scale, sizes, structured=model.structured,
                                    changed=changed, msd=msd)
  return Fit(result, ident, parent_idx, parent_mask, order, model)


@functools.cache
def _trainer(cfg: FitConfig, n_nodes: int, max_parents: int) -> train.Trainer:
  return train.make_trainer(cfg, n_nodes=n_nodes, max_parents=max_parents)


@functools.cache
def _jit_fit_graph(cfg: FitConfig, max_parents: int):
  return jax.jit(functools.partial(fit_graph, config=cfg, max_parents=max_parents))


@functools.cache
def jit_fit_batch(cfg: FitConfig, max_parents: int, in_axes: tuple):
  """``(key, x, adj) -> Fit`` batched along ``in_axes`` (``jax.vmap``'s, one entry for
  each of the three): one compiled program for ``cfg``'s fits."""
  return jax.jit(jax.vmap(functools.partial(fit_graph, config=cfg, max_parents=max_parents),
                          in_axes=in_axes))


def jit_fit_graphs(cfg: FitConfig, max_parents: int):
  """``(key, x, adjs [G, N, N]) -> Fit`` batched over G graphs: one compiled program for
  ``cfg``'s fit on each graph, one key (``learn.reorient``'s judge)."""
  return jit_fit_batch(cfg, max_parents, (None, None, 0))


@functools.partial(jax.jit, static_argnums=1)
def unstack(tree, n: int) -> list:
  """The ``n`` slices of ``tree``'s leading axis (a batch of fits), in one program:
  sliced eagerly, each leaf of each fit compiled a program of its own."""
  return [jax.tree.map(lambda a: a[j], tree) for j in range(n)]


def fit(x, graph=None, key=None, config=None, *, names=None, selection=None,
        graph_search: str | None = None) -> Fit:
  """Fit the regimes of ``x: [S, N]`` (data units) on a known, doubted or unknown DAG.

  Args:
    x: samples pooled from the regimes: an ``[S, N]`` array, or a pandas DataFrame
      whose columns name the variables.
    graph: the DAG: an ``[N, N]`` 0/1 adjacency (``graph[i, j] = 1`` for ``i -> j``,
      in the column order), a ``networkx.DiGraph``, an edge list of ``(source,
      target)`` pairs, a dict of children lists (``{"A": ["B", "C"]}``), or a named
      adjacency (a DataFrame). Named nodes are matched to the data's names, in any
      order (``vcm_jax.named``).
    key: a PRNG key, or an integer seed (default ``jax.random.key(0)``).
    config: ``None``: the default (``config.data_default()`` and the model choice,
      ``choose.fit_default``); a ``FitConfig``, a dict of its fields or an experiment
      config with ``model`` and ``train`` groups: that one model, no choice.
    names: the column names of an array ``x`` (a DataFrame brings its own).
    selection: the choice's settings (``choose.Selection``) for the default.
    graph_search: ``None``: learn the graph when none is given, else fit it as given
      (``"none"``); ``"learn"``: learn it (the given graph, if any, is ignored);
      ``"repair"``: start from the given graph and add, remove or reverse edges where
      the data support it (``vcm_jax.learn``). The learned graph is ``fit.graph``; how
      it was found, every edge's score gain and whether the data orient it:
      ``fit.graph_learning``.

  Returns:
    a ``Fit``; with the default, ``fit.choice`` (candidates, scores, what was chosen
    and why) and ``fit.verdict`` (identifiability) are set.

  Raises:
    ValueError: with one line naming the problem (a cycle, a bad cell, a name that
      does not match, an unknown key).
  """
  from vcm_jax import choose, identifiability, inputs, named

  from vcm_jax import learn
  values, adj, names = named.as_arrays(x, graph, names)
  search = graph_search or ("learn" if adj is None else "none")
  if search not in ("none", "learn", "repair"):
    raise ValueError(f"graph_search={graph_search!r} is not one of learn, repair, none")
  if search == "none" and adj is None:
    raise ValueError("graph_search='none' fits a given graph: give one (or learn it: "
                     "graph_search='learn')")
  if search == "repair" and adj is None:
    raise ValueError("graph_search='repair' starts from a graph: give one")
  x = inputs.checked(values, None if adj is None else adj.shape[0], names)
  if adj is not None:
    graphs.validate_dag(adj, None if names is None else [str(n) for n in names])
  key = as_key(key)
  learned = None
  programs.release_if_crowded()  # (many fits in one process: the memory maps they hold)
  if search != "none":
    learned = dict(learn.learn_graph(key, x, config_lib.data_default(),
                                     start=adj if search == "repair" else None, names=names),
                   search=search)
    if "changes" not in learned and adj is not None:  # learned beside a given graph
      learned["changes"] = graphs.named_changes(
          adj, learned["adjacency"], names or [f"X{j}" for j in range(adj.shape[0])])
    adj = learned["adjacency"]
    programs.release_if_crowded()
  if config is None:
    if selection is not None and not isinstance(selection, choose.Selection):
      selection = choose.Selection.from_config(dict(selection))
    choice = choose.fit_default(key, x, adj, config_lib.data_default(),
                                selection or choose.Selection(), names=names)
    verdict = identifiability.of_fit(choice.fit, x, names, misfit_confirmed=choice.misfit_confirmed,
                                     misfit=choice.misfit_flags(adj.shape[0]))
    if (selection or choose.Selection()).free_target_screen:
      verdict = identifiability.free_target_screen(key, choice.fit, x, verdict, names=names)
    verdict = identifiability.given_support(verdict, choice.extra.get("regimes_supported"))
    if learned is not None:
      learned = learn.given_support(learned, choice.extra.get("regimes_supported"))
      verdict = identifiability.given_graph(verdict, learned)
    for line in choice.warnings:
      warnings.warn(line, FitWarning, stacklevel=2)
    return choice.fit.replace(names=names, choice=choice, verdict=verdict,
                              warnings=choice.warnings, graph_learning=learned)
  if selection is not None:
    raise ValueError("selection= chooses among models; with config= one model is fitted as "
                     "given (drop one of them)")
  cfg = train.without_unused_terms(config_lib.coerce(config), x)
  max_parents = graphs.resolve_max_parents(adj, cfg.max_parents)
  if cfg.decoder != "structured" and cfg.n_regimes == 0:
    k_select, key = jax.random.split(key)
    cfg = cfg.replace(n_regimes=select.choose_n_regimes(
        k_select, x, jnp.asarray(adj), config=cfg, max_parents=max_parents).n_regimes)
  out = _jit_fit_graph(cfg, max_parents)(key, jnp.asarray(x), jnp.asarray(adj, jnp.float32))
  check_finite(out.result, f"the {cfg.decoder} fit")
  return out.replace(names=names, graph_learning=learned)
