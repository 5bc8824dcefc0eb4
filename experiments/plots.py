"""PNG plots a person reads at the end of a run (synthetic or own data)."""
from __future__ import annotations

import os

import numpy as np

from vcm_jax import graphs


class _Pyplot:
  """matplotlib.pyplot (the Agg backend: files, no display), imported at the first plot:
  importing it costs 0.4 s of every command's start-up on this machine, runs with
  ``plots=False`` and the CLI's one-line errors included."""

  def __getattr__(self, name):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as pyplot
    return getattr(pyplot, name)


plt = _Pyplot()


def training_curves(path, rows):
  steps = [r["step"] for r in rows]
  keys = [k for k in ("loss", "elbo", "log_px", "expected_loglik", "kl", "beta") if k in rows[0]]
  fig, axes = plt.subplots(1, len(keys), figsize=(3.2 * len(keys), 3))
  for ax, key in zip(np.atleast_1d(axes), keys):
    ax.plot(steps, [r[key] for r in rows])
    ax.set_title(key)
    ax.set_xlabel("step")
  fig.suptitle("training (mean over runs and restarts; standardised units)")
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


def confusion(path, table, run=0):
  fig, ax = plt.subplots(figsize=(5, 4.5))
  im = ax.imshow(np.log1p(table), cmap="viridis")
  ax.set_xlabel("inferred regime (0 = observational, k = node k-1)")
  ax.set_ylabel("true regime")
  ax.set_title(f"held-out confusion, run {run} (log1p counts)")
  fig.colorbar(im, ax=ax)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


def mechanisms(path, details):
  pairs = [("learned_shift", "true_shift", "mean shift of the intervened state"),
           ("learned_noise_scale", "true_noise_scale", "observational noise scale"),
           ("learned_int_scale", "true_int_scale", "intervened noise scale")]
  fig, axes = plt.subplots(1, 3, figsize=(12, 3.8))
  for ax, (learned, true, title) in zip(axes, pairs):
    t, l = np.ravel(details[true]), np.ravel(details[learned])
    ax.scatter(t, l, s=8)
    lo, hi = min(t.min(), l.min()), max(t.max(), l.max())
    ax.plot([lo, hi], [lo, hi], "k--", lw=1)
    ax.set_xlabel("true")
    ax.set_ylabel("learned")
    ax.set_title(title)
  fig.suptitle("learned against true mechanisms (all runs and nodes, data units)")
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


def confidence(path, probability):
  fig, ax = plt.subplots(figsize=(5, 3.5))
  ax.hist(np.ravel(probability), bins=40, range=(0, 1))
  ax.set_xlabel("posterior probability of the assigned regime")
  ax.set_ylabel("held-out samples (all runs)")
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


def write_all(workdir, rows, details):
  if rows:
    training_curves(os.path.join(workdir, "training_curves.png"), rows)
  confusion(os.path.join(workdir, "confusion.png"), details["confusion"][0])
  mechanisms(os.path.join(workdir, "mechanisms.png"), details)
  confidence(os.path.join(workdir, "confidence.png"), details["probability"])


MOST_SHOWN = 30  # regimes (and nodes) a plot of own data shows before it keeps the strongest


def regime_confidence(path, probability, assigned, labels, most=MOST_SHOWN):
  """Posterior probability of the assigned regime, one box per regime (the ``most``
  largest regimes when there are more).

  Args:
    probability: ``[S]`` posterior probability of each row's assigned regime.
    assigned: ``[S]`` the assigned regime ids.
    labels: ``[K]`` one label per regime.
  """
  k = len(labels)
  sizes = np.bincount(assigned, minlength=k)
  shown = np.arange(k) if k <= most else np.sort(np.argsort(-sizes, kind="stable")[:most])
  by_regime = np.argsort(assigned, kind="stable")  # rows grouped by regime, in one sort
  bounds = np.concatenate([[0], np.cumsum(sizes)])
  groups = [probability[by_regime[bounds[r]:bounds[r + 1]]] for r in shown]
  fig, ax = plt.subplots(figsize=(max(5, 0.45 * len(shown) + 2), 3.8))
  ax.boxplot([g if g.size else [np.nan] for g in groups], showfliers=False)
  ax.set_xticks(np.arange(1, len(shown) + 1), [labels[r] for r in shown], rotation=90, fontsize=7)
  for slot, g in enumerate(groups):
    ax.text(slot + 1, 1.02, str(g.size), ha="center", fontsize=6, rotation=90)
  ax.set_ylim(0, 1.12)
  ax.set_ylabel("posterior probability of the assigned regime")
  title = "confidence per regime (number assigned above)"
  if len(shown) < k:
    title = f"confidence of the {len(shown)} largest of {k} regimes (number assigned above)"
  ax.set_title(title, fontsize=9)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


def strongest_shifts(marginal, mechanism, most=MOST_SHOWN):
  """Rows (regimes) and columns (nodes) of the shift tables a readable heat map shows:
  all when there are at most ``most`` of each, else the ``most`` regimes and then the
  ``most`` nodes with the largest |shift| (marginal or mechanism), in id order."""
  size = np.fmax(np.abs(marginal), np.abs(mechanism))
  size = np.where(np.isfinite(size), size, 0.0)
  regimes = np.arange(size.shape[0])
  if len(regimes) > most:
    regimes = np.sort(np.argsort(-size.max(1), kind="stable")[:most])
  nodes = np.arange(size.shape[1])
  if len(nodes) > most:
    nodes = np.sort(np.argsort(-size[regimes].max(0), kind="stable")[:most])
  return regimes, nodes


def regime_shifts(path, marginal, mechanism, regime_labels, node_names, most=MOST_SHOWN):
  """Heat maps: how each node moves in each regime against the observational one
  (the strongest ``most`` regimes x ``most`` nodes when there are more)."""
  regimes, nodes = strongest_shifts(marginal, mechanism, most)
  n_regimes, n_nodes = np.shape(marginal)
  marginal, mechanism = (np.asarray(t)[np.ix_(regimes, nodes)] for t in (marginal, mechanism))
  regime_labels = [regime_labels[r] for r in regimes]
  node_names = [node_names[j] for j in nodes]
  fig, axes = plt.subplots(1, 2, figsize=(max(8, 0.5 * len(node_names) * 2 + 3),
                                           max(3.5, 0.3 * len(regime_labels) + 2)))
  for ax, table, title in ((axes[0], marginal, "marginal shift (sd units; descendants move too)"),
                           (axes[1], mechanism, "mechanism shift (parents as observed)")):
    bound = max(float(np.nanmax(np.abs(table))), 1e-6)
    im = ax.imshow(table, cmap="RdBu_r", vmin=-bound, vmax=bound, aspect="auto")
    ax.set_xticks(np.arange(len(node_names)), node_names, rotation=90, fontsize=7)
    ax.set_yticks(np.arange(len(regime_labels)), regime_labels, fontsize=7)
    ax.set_xlabel("node")
    ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=ax)
  axes[0].set_ylabel("regime (target)")
  if len(regimes) < n_regimes or len(nodes) < n_nodes:
    fig.suptitle(f"the strongest shifts: {len(regimes)} of {n_regimes} regimes x {len(nodes)} of "
                 f"{n_nodes} nodes by |shift| (all in regimes.json)", fontsize=9)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


def write_own_data(workdir, rows, report, extras):
  if rows:
    training_curves(os.path.join(workdir, "training_curves.png"), rows)
  labels = [f"{r['id']}: {'obs' if r['observational'] else r['target']}" for r in report["regimes"]]
  regime_confidence(os.path.join(workdir, "confidence.png"), extras["probability"],
                    extras["assigned"], labels)
  regime_shifts(os.path.join(workdir, "regime_shifts.png"), extras["marginal_shift"],
                extras["mechanism_shift"], labels, report["nodes"])


GRAPH_COLOURS = {"kept": "black", "learned": "black", "added": "tab:green",
                 "reversed": "tab:orange", "removed": "tab:red"}


def graph(path, adj, names, given=None, edges=None):
  """The learned graph, with each change from ``given`` marked: added edges green,
  reversed orange, removed dashed red; an edge whose orientation the data do not decide
  (``edges``: ``learn.learn_graph``'s, ``oriented`` False) is drawn without an arrowhead."""
  import networkx as nx

  names = [str(n) for n in names]
  n = len(names)
  given = None if given is None else np.asarray(given) != 0
  undecided = {(e["source"], e["target"]) for e in (edges or []) if not e["oriented"]}
  shown = graphs.edge_changes(adj, given)
  open_edges = [(i, j) for i, j, kind in shown
                if kind != "removed" and (names[i], names[j]) in undecided]
  g = nx.DiGraph()
  g.add_nodes_from(range(n))
  g.add_edges_from((i, j) for i, j, _ in shown)
  pos = nx.circular_layout(g) if n > 1 else {0: np.zeros(2)}
  side = min(14.0, max(5.0, 0.45 * n + 3))
  fig, ax = plt.subplots(figsize=(side, side))
  font = 10 if n <= 15 else 7 if n <= 40 else 5
  node_size = 1400 if n <= 15 else 500 if n <= 40 else 200
  nx.draw_networkx_nodes(g, pos, ax=ax, node_color="#dde6f0", edgecolors="#4a6584",
                         node_size=node_size)
  nx.draw_networkx_labels(g, pos, {j: names[j] for j in range(n)}, ax=ax, font_size=font)
  for i, j, kind in shown:
    open_ended = (i, j) in open_edges
    # an undecided edge in the legend's grey, but where it marks a change from the given graph
    colour = "grey" if open_ended and kind in ("kept", "learned") else GRAPH_COLOURS[kind]
    nx.draw_networkx_edges(
        g, pos, edgelist=[(i, j)], ax=ax, edge_color=colour,
        style="dashed" if kind == "removed" else "solid",
        width=1.2 if kind in ("kept", "learned") else 2.2, node_size=node_size,
        arrows=True, arrowstyle="-" if open_ended else "-|>", arrowsize=16 if n <= 15 else 10,
        connectionstyle="arc3,rad=0.08")
  from matplotlib.lines import Line2D
  counts = {k: sum(1 for *_, kind in shown if kind == k) for k in GRAPH_COLOURS}
  handles = []
  if given is None:
    handles.append(Line2D([], [], color="black", label=f"learned ({counts['learned']})"))
  else:
    for kind, label in (("kept", "as given"), ("added", "added"), ("reversed", "reversed"),
                        ("removed", "removed")):
      handles.append(Line2D([], [], color=GRAPH_COLOURS[kind], lw=1.2 if kind == "kept" else 2.2,
                            ls="--" if kind == "removed" else "-",
                            label=f"{label} ({counts[kind]})"))
  if open_edges:  # a "?" on each, beside the missing arrowhead
    nx.draw_networkx_edge_labels(g, pos, {e: "?" for e in open_edges}, ax=ax, font_size=font,
                                 font_color="dimgrey", rotate=False,
                                 bbox=dict(fc="white", ec="none", pad=0.5))
    handles.append(Line2D([], [], color="grey", label=f"orientation undecided: no arrowhead, ? "
                                                      f"({len(open_edges)})"))
  fig.legend(handles=handles, loc="lower center", ncol=min(2, len(handles)), fontsize=8,
             frameon=False)
  kept = sum(1 for *_, kind in shown if kind != "removed")
  ax.set_title(f"the graph the data support: {kept} edges" + ("" if given is None else
               "\nchanges from the given graph marked"), fontsize=10)
  ax.set_axis_off()
  ax.margins(0.12)
  fig.tight_layout(rect=(0, (0.1 + 0.2 * ((len(handles) + 1) // 2)) / side, 1, 1))
  fig.savefig(path, dpi=100)
  plt.close(fig)
