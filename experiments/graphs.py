"""The comparison: a graph learned jointly with the regimes against its rivals:
``python -m experiments.graphs --workdir=DIR [--settings=kumar,faria,n20,sachs]
[--seeds=100,101,102] [--methods=ours,ours_true_graph,ges,pc,gmm_utigsp,...]``.

Settings (``experiments.graph_settings``; ``kumar``, ``faria`` and ``all`` are groups):
Kumar, Shiragur & Uhler's (NeurIPS 2024) linear-Gaussian mixtures, hard and soft; Faria,
Martins & Figueiredo's (CLeaR 2022) family on 10 nodes (linear and MLP mechanisms,
expected edges per node 1 and 2, single- and multi-target regimes); 20 nodes; Sachs.
Each seed draws one data set; every method sees the same pooled rows, unlabelled.

Methods: ``ours``: ``vcm_jax.fit(x, None, key=jax.random.key(seed))``, its graph at
``fit.graph`` and regimes from ``fit.assign(x)`` (recorded "not available" while the
library cannot learn a graph); ``ours_true_graph``: ``vcm_jax.fit(x, true_adj, key=...)``,
the regimes' ceiling (its graph is the truth, so no graph metrics); ``ours_learn``: the
graph search of ``vcm_jax.fit(x)`` alone (``learn.free_target_search`` as
``learn.learn_graph`` calls it, no regime fit after it), its regimes the free-target
model's posterior and K the number of regimes its BIC chose;
``ours_repair_true``: ``vcm_jax.fit(x, true_adj, graph_search="repair")`` (``changes``:
how many edges it changed, 0 is right; seconds against ``ours_true_graph``'s);
``ours_repair_missing``: the same from the true graph less its clearest edge (``clear_edge``:
the largest pooled correlation), ``restored`` 1 where the repair puts it back;
``ours_repair_step_true`` / ``ours_repair_step_missing``: the repair's graph step alone
(``learn.learn_graph`` from that graph, as ``vcm_jax.fit`` calls it, no regime fit after
it; the note says which latent was its E-step); the rivals of
``experiments.graph_rivals`` (GES and PC on pooled rows, Kumar et al.'s mixture then
UT-IGSP, references given the true labels, the empty graph), whose docstring defines
the metrics. A method whose package is missing is recorded "not installed", one that
raises "failed" with its error, and the run goes on.

Writes ``DIR/graphs.json`` (every record, after each one; the records of earlier runs into
the same workdir kept, a rerun of a setting, seed and method replacing its own),
``DIR/graphs.md`` (mean +- sd over the seeds per setting and method: SHD with a reversal or
undirected edge counted 1, SHD2 with it counted 2, skeleton and directed F1, predicted edges (true), ARI and AMI of
the regimes where the method finds regimes, K found (true), seconds) and
``DIR/graphs.png`` (SHD by setting and method).
"""
from __future__ import annotations

import importlib.util
import json
import os
import sys
import time
import traceback

import numpy as np
from absl import flags

import experiments
from experiments import graph_rivals, graph_settings
from vcm_jax.io import writers

OURS = ("ours", "ours_learn", "ours_true_graph", "ours_repair_true", "ours_repair_missing",
        "ours_repair_step_true", "ours_repair_step_missing")
METHODS = OURS + ("ges", "pc", "gmm_utigsp", "gmm_utigsp_oracle_obs", "utigsp_true",
                  "igsp_true", "gies_true", "empty")

_WORKDIR = flags.DEFINE_string("workdir", None, "Where graphs.json, graphs.md, graphs.png go.",
                               required=True)
_SETTINGS = flags.DEFINE_list("settings", ["all"],
                              f"Settings {sorted(graph_settings.SETTINGS)} or groups "
                              f"{sorted(graph_settings.GROUPS)}.")
_SEEDS = flags.DEFINE_list("seeds", ["100", "101", "102"], "Data and fit seeds.")
_METHODS = flags.DEFINE_list("methods", list(METHODS), f"Methods among {list(METHODS)}.")

METRICS = ("shd", "shd2", "f1_skeleton", "f1_directed", "edges", "undirected", "true_edges",
           "ari", "ami")


def clear_edge(data: graph_settings.Data) -> tuple[int, int]:
  """The true edge whose endpoints' pooled correlation is the largest in size: the
  one a repair from a graph missing it must restore (``ours_repair_missing``)."""
  corr = np.abs(np.corrcoef(np.asarray(data.x, np.float64), rowvar=False))
  edges = np.argwhere(np.asarray(data.adj) != 0)
  i, j = edges[np.argmax(corr[edges[:, 0], edges[:, 1]])]
  return int(i), int(j)


def run_ours(method: str, data: graph_settings.Data, seed: int) -> dict:
  import jax
  import vcm_jax
  if method == "ours_learn":
    from vcm_jax import learn
    found, tried = learn.free_target_search(
        jax.random.fold_in(jax.random.key(seed), 1), np.asarray(data.x, np.float32),
        max_parents=learn.search_max_parents(data.x.shape[1]))
    return {"adj": found.adj, "labels": found.weights.argmax(1), "k": found.weights.shape[1],
            "note": "K tried (BIC): " + ", ".join(f"{t['k']} ({t['bic']:.0f})" for t in tried)}
  if method.startswith("ours_repair_step"):
    return _repair_step(method, data, seed)
  graph, search, dropped = None, None, None
  if method != "ours":
    graph, dropped = _given(data, missing=method == "ours_repair_missing")
  if method.startswith("ours_repair"):
    search = "repair"
  try:
    fit = vcm_jax.fit(data.x, graph, key=jax.random.key(seed), graph_search=search)
  except ValueError as err:
    if "a graph is needed" in str(err):
      return {"status": "not available", "note": str(err)}
    raise
  out = {"labels": np.asarray(fit.assign(data.x)), "k": int(fit.n_regimes)}
  if search == "repair":
    return dict(out, **_repaired(fit.graph, fit.graph_learning.get("changes", []), dropped))
  if method == "ours_true_graph":
    out["note"] = "graph given (the truth): no graph metrics"
    return out
  learned = getattr(fit, "graph", None)
  if learned is None:
    out.update(status="no graph", note="the Fit has no .graph")
    return out
  out["adj"] = (np.asarray(learned) != 0).astype(int)
  return out


def _given(data: graph_settings.Data, missing: bool):
  """The graph a fit is given: the true one, or (``missing``) less its clearest edge;
  ``(adjacency, the dropped edge or None)``."""
  graph = (np.asarray(data.adj) != 0).astype(int)
  dropped = clear_edge(data) if missing else None
  if dropped is not None:
    graph[dropped] = 0
  return graph, dropped


def _repaired(adj, changes: list, dropped, note: str = "") -> dict:
  """A repair's record: its graph, how many changes, whether the dropped edge is back."""
  out = {"adj": (np.asarray(adj) != 0).astype(int), "changes": len(changes), "note": note}
  if dropped is not None:
    out["restored"] = int(out["adj"][dropped])
    out["note"] = f"given the true graph less X{dropped[0]} -> X{dropped[1]}" + \
        (f"; {note}" if note else "")
  return out


def _repair_step(method: str, data: graph_settings.Data, seed: int) -> dict:
  import jax
  from vcm_jax import config, learn
  given, dropped = _given(data, missing=method == "ours_repair_step_missing")
  found = learn.learn_graph(jax.random.key(seed), np.asarray(data.x, np.float32),
                            config.data_default(), start=given)
  return _repaired(found["adjacency"], found["changes"], dropped,
                   f"E-step: {found['repair']['latent']} ({found['repair']['why']})")


def run_rival(method: str, data: graph_settings.Data, seed: int) -> dict:
  package = graph_rivals.PACKAGES.get(method)
  if package is not None and importlib.util.find_spec(package) is None:
    return {"status": "not installed", "note": f"the {package} package is not installed"}
  result = graph_rivals.RIVALS[method](data.x, data, seed)
  return {"adj": result.adj, "labels": result.labels, "k": result.k, "note": result.note,
          "extra_seconds": result.extra_seconds}


def run_one(setting: str, data: graph_settings.Data, seed: int, method: str) -> dict:
  record = {"setting": setting, "seed": seed, "method": method, "status": "ok", "note": "",
            "rows": int(data.x.shape[0]), "nodes": int(data.x.shape[1]),
            "k_true": data.n_regimes, "true_edges": int(np.sum(data.adj != 0))}
  start = time.perf_counter()
  try:
    out = (run_ours if method in OURS else run_rival)(method, data, seed)
  except Exception as err:  # a rival that breaks is a record, not the end of the run
    out = {"status": "failed", "note": f"{type(err).__name__}: {err}"}
    traceback.print_exc()
  record["seconds"] = time.perf_counter() - start + out.pop("extra_seconds", 0.0)
  record["status"] = out.get("status", "ok")
  record["note"] = out.get("note", "")
  if out.get("adj") is not None:
    record.update(graph_rivals.graph_metrics(data.adj, out["adj"]))
    record["adjacency"] = np.asarray(out["adj"]).tolist()
  if out.get("labels") is not None:
    record.update(graph_rivals.regime_metrics(data.labels, out["labels"]))
    if data.bayes_labels is not None:  # the Bayes ceiling beside the ARI
      record["bayes_ari"] = graph_rivals.regime_metrics(data.labels, data.bayes_labels)["ari"]
  if out.get("k") is not None:
    record["k_found"] = int(out["k"])
  for key in ("changes", "restored"):
    if key in out:
      record[key] = out[key]
  return record


def _mean_sd(values, fmt) -> str:
  values = [v for v in values if v is not None]
  if not values:
    return "-"
  if len(values) == 1:
    return format(values[0], fmt)
  return f"{format(np.mean(values), fmt)} ± {format(np.std(values, ddof=1), fmt)}"


COLUMNS = [("SHD", "shd", ".1f"), ("SHD2", "shd2", ".1f"), ("F1 skel", "f1_skeleton", ".2f"),
           ("F1 dir", "f1_directed", ".2f"), ("edges", "edges", ".1f"),
           ("undir", "undirected", ".1f"), ("ARI", "ari", ".3f"), ("ceiling", "bayes_ari", ".3f"),
           ("AMI", "ami", ".3f"),
           ("K found", "k_found", ".1f"), ("changes", "changes", ".1f"),
           ("restored", "restored", ".2f"), ("seconds", "seconds", ".1f")]


def table(records: list) -> str:
  lines = ["| setting | method | runs | " + " | ".join(h for h, _, _ in COLUMNS)
           + " | true edges | true K | status |",
           "|" + "---|" * (len(COLUMNS) + 6)]
  keys = []
  for r in records:
    if (r["setting"], r["method"]) not in keys:
      keys.append((r["setting"], r["method"]))
  for setting, method in keys:
    rows = [r for r in records if r["setting"] == setting and r["method"] == method]
    ok = [r for r in rows if r["status"] == "ok" or r["status"] == "no graph"]
    status = sorted({r["status"] for r in rows} - {"ok"})
    cells = [_mean_sd([r.get(key) for r in ok], fmt) for _, key, fmt in COLUMNS]
    if method == "ours_true_graph":
      cells[:6] = ["given"] * 6
    lines.append(f"| {setting} | {method} | {len(ok)}/{len(rows)} | " + " | ".join(cells)
                 + f" | {rows[0]['true_edges']} | {rows[0]['k_true']} | "
                 + (", ".join(status) or "ok") + " |")
  return "\n".join(lines)


def plot(records: list, path: str) -> None:
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  settings = list(dict.fromkeys(r["setting"] for r in records))
  methods = [m for m in dict.fromkeys(r["method"] for r in records)
             if any(r["method"] == m and r.get("shd") is not None for r in records)]
  if not methods:
    return
  width = 0.8 / len(methods)
  fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(settings) * max(1, len(methods) / 4)), 4))
  for i, method in enumerate(methods):
    means, sds = [], []
    for s in settings:
      v = [r["shd"] for r in records if r["setting"] == s and r["method"] == method
           and r.get("shd") is not None]
      means.append(np.mean(v) if v else np.nan)
      sds.append(np.std(v, ddof=1) if len(v) > 1 else 0.0)
    ax.bar(np.arange(len(settings)) + (i - (len(methods) - 1) / 2) * width, means, width,
           yerr=sds, label=method, capsize=2)
  ax.set_xticks(np.arange(len(settings)))
  ax.set_xticklabels(settings, rotation=30, ha="right")
  ax.set_ylabel("SHD (reversal or undirected = 1)")
  ax.legend(fontsize=7, ncol=2)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


CONVENTIONS = (
    "adj[i, j] = 1: i -> j; an undirected (CPDAG) edge is adj[i, j] = adj[j, i] = 1. SHD: per "
    "pair, a missing or extra edge or a wrong orientation costs 1, an undirected predicted "
    "edge compared as a reversal; SHD2: a reversal (or undirected edge on a true edge) costs "
    "2. F1 skeleton: adjacencies; F1 directed: directed edges, an undirected one never right. "
    "ARI/AMI: the regimes a method finds against the true ones (the references are given "
    "the true labels: none). Seconds: wall time of the method on the "
    "2-core CPU machine unless said otherwise.")


def main(argv):
  del argv
  experiments.configure_jax()
  try:
    settings = graph_settings.expand(_SETTINGS.value)
  except ValueError as err:  # an unknown setting, named
    raise experiments.BadFlag(str(err)) from None
  experiments.names_known(_METHODS.value, METHODS, "methods")
  seeds = experiments.seeds_of(_SEEDS.value)
  os.makedirs(_WORKDIR.value, exist_ok=True)
  json_path = os.path.join(_WORKDIR.value, "graphs.json")
  # Records of earlier runs into this workdir are kept (a rerun of the same setting, seed
  # and method replaces its record): a run of one more method or seed adds to the table.
  earlier = experiments.earlier_output(
      json_path, lambda d: isinstance(d["records"], list) and all(
          {"setting", "seed", "method"} <= set(r) for r in d["records"]), {"records": []})
  records, descriptions = earlier["records"], earlier.get("settings", {})
  key = lambda r: (r["setting"], r["seed"], r["method"])
  for setting in settings:
    for seed in seeds:
      data = graph_settings.make(setting, seed)
      descriptions[setting] = data.description
      for method in _METHODS.value:
        record = run_one(setting, data, seed, method)
        print(json.dumps({k: v for k, v in record.items() if k != "adjacency"}), flush=True)
        records = [r for r in records if key(r) != key(record)] + [record]
        writers.write_json_atomic(json_path, {"conventions": CONVENTIONS,
                                              "settings": descriptions,
                                              "command": sys.argv[1:], "records": records})
  command = "python -m experiments.graphs " + " ".join(sys.argv[1:])
  text = (f"# Graphs learned with the regimes against rivals\n\n`{command}` (and the "
          "records of earlier runs into this workdir)\n\n"
          f"{table(records)}\n\n{CONVENTIONS}\n\nSettings:\n\n"
          + "".join(f"* {s}: {d}\n" for s, d in descriptions.items()))
  writers.write_text_atomic(os.path.join(_WORKDIR.value, "graphs.md"), text)
  plot(records, os.path.join(_WORKDIR.value, "graphs.png"))
  print(table(records))


if __name__ == "__main__":
  experiments.run_main(main)
