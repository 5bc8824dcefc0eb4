"""A user's own data and graph: read and check, fit, write the report (DESIGN section 6).

``load`` reads and checks everything before the workdir is touched, so bad input
leaves no partial outputs. The fit is one run of the library's trainer through
the shared checkpointed loop (a runs axis of size 1); the library's regime table
and label metrics make ``assignments.csv``, ``posterior.npy``, ``regimes.json`` and
``metrics.json``. Without a graph file the graph is learned first (``vcm_jax.learn``;
``graph.search=repair`` repairs a given one): ``graph.csv`` and ``graph.png``.
"""
from __future__ import annotations

import json
import os
import time
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from experiments import compilation, loop, plots, writers
from vcm_jax import api, choose, config as fit_config, evaluate, graphs, inputs, io, predict, select
from vcm_jax import sharding
from vcm_jax import identifiability, learn, rows, train, units
from vcm_jax.datasets import load_sachs
from vcm_jax.io.writers import write_graph
from vcm_jax.regime_table import regime_table


class OwnData(NamedTuple):
  names: list
  x: np.ndarray              # [S, N] float32, all rows, data units
  labels: np.ndarray | None  # [S] str
  adj: np.ndarray | None     # [N, N]; None: no graph given (learned)
  train_rows: np.ndarray     # rows the model is fitted on
  test_rows: np.ndarray      # held-out rows (held-out log-likelihood, choice of K)


def load(config) -> OwnData:
  """Read and check the data and graph named by ``config.data``; ``io.InputError`` if bad."""
  d = config.data
  if d.get("dataset"):
    return _shipped(config)
  if not d.path:
    raise io.InputError("no data file: set --config.data.path=FILE")
  table = io.read_data(d.path, labels=d.labels or None)
  adj = io.read_graph(d.graph, table.names) if d.graph else None  # None: learned (run)
  try:  # the checks vcm_jax.fit makes, in the same words
    x = inputs.checked(table.values, None, table.names, what=f"data file {d.path}")
  except ValueError as err:
    raise io.InputError(str(err)) from None
  return OwnData(table.names, x, table.labels, adj, *_split(config, len(x)))


def _shipped(config) -> OwnData:
  """A dataset shipped with vcm_jax (``data.dataset``; today ``sachs``), labels included."""
  if config.data.dataset != "sachs":
    raise io.InputError(f"unknown data.dataset {config.data.dataset!r}; expected sachs")
  sachs = load_sachs()
  return OwnData(list(sachs.names), sachs.values.astype(np.float32), np.asarray(sachs.labels),
                 np.asarray(sachs.adjacency), *_split(config, len(sachs.values)))


def _heldout(data: OwnData):
  """The held-out rows, or None where none are held out (``data.heldout_fraction = 0``)."""
  return data.x[data.test_rows] if len(data.test_rows) else None


def _split(config, n_rows: int):
  """Sorted (fitted rows, held-out rows): ``data.heldout_fraction`` drawn with the seed."""
  return select.heldout_split(config.seed, n_rows, config.data.heldout_fraction)


GRAPH_SEARCHES = ("learn", "repair")


def renumbered(support: dict | None, order) -> dict | None:
  """``diagnose.unsupported_regimes``'s summary with its regimes in regimes.json's ids
  (``order``: new id -> the fit's regime; the observational regime first)."""
  if not support or not support.get("regimes_not_paying"):
    return support
  new_id = {int(fitted): new for new, fitted in enumerate(order)}
  return dict(support, regimes_not_paying=[dict(d, regime=new_id[d["regime"]])
                                           for d in support["regimes_not_paying"]])


def graph_search(config, given: bool) -> str:
  """What happens to the graph: ``learn`` (none given, or ``graph.search=learn``),
  ``repair`` (``graph.search=repair`` on a given graph) or "" (fitted as given). A
  config without a ``graph`` group (an older one) reads as search ""."""
  group = config.get("graph")
  search = str((group.get("search") if group is not None else "") or "")
  if search.lower() == "none":
    search = ""
  if search and search not in GRAPH_SEARCHES:
    raise loop.UserError(f"config: graph.search={search!r} is not one of learn, repair "
                         "('' fits a given graph as given)")
  for key, least in (("max_rounds", 1), ("max_parents", 0)):  # (before any work)
    value = group.get(key) if group is not None else None
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                              or value < least):
      raise loop.UserError(f"config: graph.{key}={value!r} must be an integer >= {least}")
  if not given:
    if search == "repair":
      raise loop.UserError("config: graph.search=repair starts from a graph: set "
                           "--config.data.graph=FILE (or drop graph.search to learn one)")
    return "learn"
  return search


def _learn_graph(config, cfg, data: OwnData, search: str, workdir: str) -> dict:
  """``learn.learn_graph`` on the fitted rows (from the given graph for ``repair``),
  learned once and kept in ``graph_learning.json`` for a resumed run; writes
  ``graph.csv``. Returns the learning's record with ``adjacency`` an array."""
  path = os.path.join(workdir, "graph_learning.json")
  if os.path.exists(path):
    with open(path) as f:
      learned = json.load(f)
    logging.info("graph: learned by an earlier run of this workdir (%s)", path)
  else:
    group = config.get("graph")
    read = lambda key, default: default if group is None else group.get(key, default)
    start = data.adj if search == "repair" else None
    logging.info("graph: %s by structural EM on %d rows", "learning" if start is None else
                 "repairing the given graph", len(data.train_rows))
    learned = learn.learn_graph(jax.random.key(config.seed), data.x[data.train_rows], cfg,
                                start=start, names=data.names,
                                max_parents=int(read("max_parents", 0)) or cfg.max_parents,
                                max_rounds=int(read("max_rounds", 6)))
    learned = dict(learned, search=search, adjacency=np.asarray(learned["adjacency"]).tolist())
    if "changes" not in learned and data.adj is not None:  # learned with a graph given
      learned["changes"] = graphs.named_changes(data.adj, learned["adjacency"], data.names)
    if sharding.is_primary():
      io.write_json_atomic(path, learned)
  learned["adjacency"] = np.asarray(learned["adjacency"], np.int32)
  if sharding.is_primary():
    write_graph(os.path.join(workdir, "graph.csv"), learned["adjacency"], data.names)
  _log_graph_learning(learned)
  return learned


def _log_graph_learning(learned: dict) -> None:
  arrows = lambda pairs: ", ".join(f"{a} -> {b}" for a, b in pairs)
  for r in learned["rounds"]:
    moves = "; ".join(f"{kind} {arrows(r[kind])}" for kind in ("added", "removed", "reversed")
                      if r.get(kind))
    if r["round"] == 0:  # the start: its edges are no move of the search
      free_target = (learned.get("repair") or {}).get("latent") == "free-target"
      moves = "the start: " + (
          "the Gaussian mixture's graph" if learned.get("search") == "learn" else
          "the first M-step from the free-target posterior, the given graph seeding it"
          if free_target else "the given graph")
    logging.info("graph search round %d: regime model BIC %.1f, %d edges%s%s", r["round"],
                 r["bic"], r["n_edges"], f"; {moves}" if moves else "",
                 f"; stop: {r['stop']}" if r.get("stop") else "")
  refined = learned.get("refined")
  if refined and refined["rounds"]:
    best = max(refined["rounds"], key=lambda r: r["bic"])
    if refined["kept"]:
      verdict = "kept"
    elif "check_holds" in refined:  # (asked only where a graph other than the search's won)
      verdict = "not kept: the regime model's check fails on it"
    else:
      verdict = "not kept: its BIC is no higher"
    e_step = refined.get("e_step", {})
    logging.info("graph refined by structural EM under the regime model's posterior (%s noise, "
                 "%s scale): BIC %.1f on the search's graph, best round %.1f (%d edges): %s",
                 e_step.get("noise"), e_step.get("scale_model"), refined["start_bic"],
                 best["bic"], best["n_edges"], verdict)
  if learned.get("repair"):
    logging.info("graph repair with the %s latent: %s", learned["repair"]["latent"],
                 learned["repair"]["why"])
  changes = learned.get("changes")
  if changes is not None:
    if not changes:
      logging.info("graph: no change from the given graph")
    for c in changes:
      gain = c.get("gain")
      said = (f" (score gain {gain:.1f})" if gain is not None else
              f" (score gain not measured alone: {c['gain_not_measured']})"
              if c.get("gain_not_measured") else "")
      logging.info("graph change from the given graph: %s %s -> %s%s", c["change"], c["source"],
                   c["target"], said)
  open_ended = [e for e in learned["edges"] if not e["oriented"]]
  listed = ", ".join(f"{e['source']} -> {e['target']}" for e in learned["edges"][:40])
  logging.info("graph: %d edge%s (%s%s)%s", len(learned["edges"]),
               "" if len(learned["edges"]) == 1 else "s", listed,
               ", ..." if len(learned["edges"]) > 40 else "", "" if not open_ended else
               f"; orientation undecided by the data: "
               f"{', '.join(e['source'] + ' - ' + e['target'] for e in open_ended)}")


def _choose_k(config, cfg, data: OwnData, max_parents: int, workdir: str) -> dict | None:
  """The free decoder's K when it is not given: chosen once, kept for a resumed run."""
  if cfg.decoder == "structured" or cfg.n_regimes:
    return None
  path = os.path.join(workdir, "k_selection.json")
  if os.path.exists(path):
    with open(path) as f:
      return json.load(f)
  sel = select.choose_n_regimes(jax.random.key(config.seed), data.x[data.train_rows], data.adj,
                                config=cfg, max_parents=max_parents,
                                x_heldout=_heldout(data))
  out = {"n_regimes": sel.n_regimes,
         "heldout_log_px": {str(k): v for k, v in sel.heldout_log_px.items()}}
  if sharding.is_primary():
    io.write_json_atomic(path, out)
  logging.info("chose K = %d by held-out log p(x): %s", sel.n_regimes, out["heldout_log_px"])
  return out


def selection_of(config) -> choose.Selection | None:
  """The model choice's settings from ``config.selection``; None: one model as given."""
  sel = config.get("selection")
  if sel is None or not sel.decoders:
    return None
  try:
    return choose.Selection.from_config(sel)
  except ValueError as err:
    raise loop.UserError(f"config: {err}") from None


def _fit_default(config, cfg, selection, data: OwnData, x_train):
  """``choose.fit_default`` (what ``vcm_jax.fit`` runs) on the training rows:
  ``(fit, the choice's summary, the check's flags of the fit or None)``."""
  n = len(data.names)
  short = lambda row: (f"{choose.label(row, n)} noise {row['noise']} scale "
                       f"{row.get('scale_model', 'constant')}")

  def say(row):
    held = (f", held-out log p(x) {row['heldout_log_px']:.4f}" if "heldout_log_px" in row
            else "")
    again = f", fitted again from {row['started_from']}" if "started_from" in row else ""
    logging.info("candidate %s: BIC %.1f, ICL %.1f%s%s", short(row), row["bic"], row["icl"],
                 held, again)

  choice = choose.fit_default(jax.random.key(config.seed), x_train, data.adj, cfg, selection,
                              x_heldout=_heldout(data), log=say, names=data.names)
  for line in choice.warnings:
    logging.warning("%s", line)
  check = choice.check
  if check is not None:
    logging.info("shared-mechanism check of the first fit: %s", "holds" if check["holds"]
                 else f"fails in regimes {check['regimes']} (largest gap "
                 f"{check['largest_gap']:.3f} nats a row)")
  runner = choice.table[1] if len(choice.table) > 1 else None
  logging.info("chose %s (BIC %.1f, ICL %.1f)%s", short(choice.table[0]),
               choice.table[0]["bic"], choice.table[0]["icl"], "" if runner is None else
               f"; runner-up {short(runner)} (BIC {runner['bic']:.1f}, ICL {runner['icl']:.1f})")
  return choice.fit, choice.summary(), choice.misfit_flags(len(data.names))


def _max_parents(adj, cfg) -> int:
  """The parent-table width for ``adj`` (``graphs.resolve_max_parents``); a bad
  ``model.max_parents`` is the user's one-line error."""
  try:
    return graphs.resolve_max_parents(adj, cfg.max_parents)
  except ValueError as err:
    raise loop.UserError(f"config: {err}") from None


def run(config, workdir: str) -> dict:
  """Fit a user's data and graph; write assignments.csv, posterior.npy, regimes.json,
  metrics.json, plots; a graph learned or repaired first (``graph_search``): graph.csv,
  graph.png.

  After training, memory is that of the data, one ``[S, K]`` float32 posterior and
  ``[K, N]`` tables: rows are scored in blocks (``regime_table``).
  """
  start, compiled = time.time(), compilation.Counter()
  if jax.process_count() > 1:
    raise loop.UserError("own data is fitted in one process (one run; mesh.data splits its "
                         "batch over this host's devices); drop --distributed")
  cfg = fit_config.coerce(config)
  try:
    data = load(config)
  except io.InputError as err:
    raise loop.UserError(str(err)) from None
  search = graph_search(config, data.adj is not None)  # before the workdir is touched
  if search == "":
    max_parents = _max_parents(data.adj, cfg)
  n = len(data.names)
  if config.data.get("dataset"):
    inputs = {"dataset": config.data.dataset}
  else:
    inputs = {"data": loop.file_hash(config.data.path)}
    if config.data.graph:
      inputs["graph"] = loop.file_hash(config.data.graph)
  loop.prepare_workdir(config, workdir, inputs)
  logging.info("backend %s, %d device(s); %d rows x %d variables (%d fitted, %d held out); %s",
               jax.default_backend(), jax.device_count(), len(data.x), n,
               len(data.train_rows), len(data.test_rows),
               "no graph given" if data.adj is None else f"{int(data.adj.sum())} edges given")
  given, learned = data.adj, None
  if search:  # the learned graph is the run's graph from here on
    learned = _learn_graph(config, cfg, data, search, workdir)
    data = data._replace(adj=learned["adjacency"])
    max_parents = _max_parents(data.adj, cfg)
  selection_cfg = selection_of(config)
  x_train = jnp.asarray(data.x[data.train_rows])
  model_selection, selection, misfit = None, None, None
  if selection_cfg is not None:  # the default: vcm_jax.fit's own code path
    fit, model_selection, misfit = _fit_default(config, cfg, selection_cfg, data, x_train)
    result, log = fit.result, _history_writer(fit, config, workdir)
    cfg = fit.config
    if sharding.is_primary():
      io.write_json_atomic(os.path.join(workdir, "model_selection.json"), model_selection)
  else:  # one model as given: the checkpointed, resumable loop
    selection = _choose_k(config, cfg, data, max_parents, workdir)
    if selection is not None:
      cfg = cfg.replace(n_regimes=selection["n_regimes"])
    trainer = train.make_trainer(cfg, n_nodes=n, max_parents=max_parents)
    fit, result, log = _train(config, trainer, data, x_train, max_parents, workdir)
  selected = model_selection or {}
  report, extras = regime_table(fit, x_train, data.x, data.names, shared_misfit=misfit,
                                misfit_confirmed=selected.get("misfit_confirmed", True))
  if selection_cfg is not None and selection_cfg.free_target_screen:  # as vcm_jax.fit does
    report["identifiability"] = identifiability.free_target_screen(
        jax.random.key(config.seed), fit, x_train, report["identifiability"], names=data.names)
  report["identifiability"] = identifiability.given_support(
      report["identifiability"], renumbered(selected.get("regimes_supported"), extras["order"]))
  if learned is not None:  # (as vcm_jax.fit does)
    learned = learn.given_support(learned, selected.get("regimes_supported"))
    if "orientations_withdrawn" in learned:
      logging.info("graph: no edge's orientation stands: %s", learned["orientations_withdrawn"])
    report["identifiability"] = identifiability.given_graph(report["identifiability"], learned)
  outlier = None
  if cfg.outlier_fraction > 0:  # rows no regime explains: a gross error in some cell
    outlier = np.concatenate([b for _, b in rows.host_blocks(fit.outlier_score, data.x)])
  heldout = heldout_elbo = None  # data.heldout_fraction = 0: every row fitted
  x_test = _heldout(data)
  if x_test is not None:
    x_test = jnp.asarray(x_test)
    heldout = float(fit.log_prob(x_test).mean())
    heldout_elbo = float(jax.jit(predict.elbo, static_argnums=0)(
        fit.model, result, x_test, fit.parent_idx, fit.parent_mask).mean())
  wall = time.time() - start
  compile_stats = compiled.read()
  summary = {
      "n_rows": len(data.x), "n_variables": n, "n_fitted": len(data.train_rows),
      "n_heldout": len(data.test_rows), "n_regimes": report["n_regimes"],
      "n_empty_regimes": report["n_empty"], "elbo": float(result.train_elbo),
      "train_log_px": float(result.restart_log_px.max()),
      "steps_used": int(result.steps_used), "stopped_by_rule": bool(result.stopped),
      "heldout_loglik": heldout, "heldout_elbo": heldout_elbo,
      "mean_posterior_probability": float(extras["probability"].mean(dtype=np.float64)),
      "multi_target_regimes": [r["id"] for r in report["regimes"] if len(r["targets"]) > 1],
      "identifiability": report["identifiability"]["verdict"],
      "compilation": compile_stats,
      "warnings": list((model_selection or {}).get("warnings", [])),
  }
  if learned is not None:
    summary["graph_learning"] = {k: learned[k] for k in ("search", "rounds", "edges", "changes",
                                                         "repair", "refined", "reoriented",
                                                         "max_parents", "score",
                                                         "orientations_withdrawn")
                                 if k in learned}
  if outlier is not None:
    summary["n_outlier_rows"] = int(np.sum(outlier > 0.5))
  if selection is not None:
    summary["k_selection"] = selection
  if model_selection is not None:
    summary["model_selection"] = model_selection
  if data.labels is not None:
    summary["labels"] = evaluate.label_metrics(data.labels, extras["assigned"],
                                               extras["target_idx"], data.names)
  payload = {"summary": summary, "wall_seconds": wall, "config": config.to_dict(),
             "backend": jax.default_backend()}
  if sharding.is_primary():
    targets = ["+".join(r["targets"]) for r in report["regimes"]]
    io.write_assignments(os.path.join(workdir, "assignments.csv"), extras["posterior"], targets,
                         outlier=outlier)
    io.write_npy_atomic(os.path.join(workdir, "posterior.npy"), extras["posterior"])
    io.write_json_atomic(os.path.join(workdir, "regimes.json"), report)
    io.write_json_atomic(os.path.join(workdir, "metrics.json"), payload)
    if config.plots:
      plots.write_own_data(workdir, log.rows(), report, extras)
      if learned is not None:
        plots.graph(os.path.join(workdir, "graph.png"), data.adj, data.names, given=given,
                    edges=learned["edges"])
  ident = report["identifiability"]
  logging.info("identifiability: %s (%s)%s", ident["verdict"], ident["why"],
               "" if not ident["suspected_missing_edges"] else
               f"; suspected missing edges {ident['suspected_missing_edges']}")
  if "skipped" in ident.get("free_target_rival", {}):
    logging.info("free-target screen skipped: %s", ident["free_target_rival"]["skipped"])
  logging.info("compiled %d programs (%.1f s getting programs: compiling or reading the "
               "cache), %d read from the persistent cache", compile_stats["programs_compiled"],
               compile_stats["compile_seconds"], compile_stats["cache_hits"])
  labels = summary.get("labels")
  logging.info("trained %d steps (%s)", summary["steps_used"],
               "the stopping rule: log p(x) stopped improving" if summary["stopped_by_rule"]
               else f"the cap, train.num_steps={config.train.num_steps}")
  logging.info("%d regimes (%d empty)%s%s; %.1f s", report["n_regimes"], report["n_empty"],
               "" if heldout is None else f"; held-out log-likelihood {heldout:.4f}",
               "" if labels is None else f"; labels: ARI {labels['ari']:.4f}, target accuracy "
               f"{labels['target_accuracy']:.4f}", wall)
  return payload


def _train(config, trainer, data: OwnData, x_train, max_parents: int, workdir: str):
  """The checkpointed, resumable training loop: ``(fit, result, metric writer)``."""
  try:
    mesh = sharding.make_mesh(runs=1, data=config.mesh.data, num_runs=1,
                              num_samples=len(data.train_rows))
  except ValueError as err:
    raise loop.UserError(f"config: {err}") from None
  idx, mask = graphs.parent_table(jnp.asarray(data.adj), max_parents)
  # A runs axis of one: the loop, checkpoints and metrics are the synthetic runs' own.
  state = sharding.shard_runs(jax.jit(jax.vmap(trainer.init, in_axes=(0, None, None, None)))(
      jax.random.key(config.seed)[None], x_train, idx, mask), mesh)
  xs = sharding.shard_runs_and_samples(
      jax.vmap(units.to_standard, in_axes=(None, 0, 0))(x_train, state.loc, state.scale), mesh)
  state, log = loop.train_loop(loop.jit_run_steps(trainer), state, xs, idx[None], mask[None],
                               config, workdir)
  one = jax.tree.map(lambda a: a[0], state)
  result = jax.jit(trainer.finish)(one, xs[0], idx, mask)
  del xs, state, one  # the standardised copy of the rows: not needed from here on
  fit = jax.jit(api.from_result, static_argnums=0)(trainer.model, result, x_train, idx, mask,
                                                   graphs.topological_order(jnp.asarray(data.adj)))
  return fit, result, log


def _history_writer(fit, config, workdir: str):
  """metrics.jsonl from a finished fit's per-step history (its steps used)."""
  log = writers.MetricWriter(workdir, write=sharding.is_primary())
  used = int(fit.result.steps_used)
  history = {k: np.asarray(v)[:used] for k, v in fit.result.history.items()}
  log.write_history(0, history, config.train.log_every, last_step=used - 1)
  log.close()
  return log
