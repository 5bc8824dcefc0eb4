"""The graph comparison's metrics (hand-computed cases), data generators and rivals on tiny data."""
import networkx as nx
import numpy as np
import pytest

from experiments import graph_rivals as gr
from experiments import graph_settings as gs

pytestmark = pytest.mark.fast


def _adj(n, edges):
  a = np.zeros((n, n), int)
  for i, j in edges:
    a[i, j] = 1
  return a


TRUE = _adj(3, [(0, 1), (1, 2)])


def test_shd_counts_a_reversal_once_or_twice_and_an_undirected_edge_as_a_reversal():
  # 1 -> 0 reversed, 1 -- 2 undirected (a reversal), 0 -> 2 extra.
  pred = _adj(3, [(1, 0), (1, 2), (2, 1), (0, 2)])
  m = gr.graph_metrics(TRUE, pred)
  assert (m["shd"], m["shd2"]) == (3, 5)
  assert m["f1_skeleton"] == pytest.approx(2 * 2 / (2 + 3))
  assert m["f1_directed"] == 0.0
  assert (m["edges"], m["undirected"], m["true_edges"]) == (3, 1, 2)


def test_missing_edge_and_exact_and_empty_graphs():
  m = gr.graph_metrics(TRUE, _adj(3, [(0, 1)]))
  assert (m["shd"], m["shd2"]) == (1, 1)
  assert m["f1_skeleton"] == m["f1_directed"] == pytest.approx(2 / 3)
  exact = gr.graph_metrics(TRUE, TRUE)
  assert (exact["shd"], exact["f1_skeleton"], exact["f1_directed"]) == (0, 1.0, 1.0)
  empty = gr.graph_metrics(TRUE, np.zeros((3, 3)))
  assert (empty["shd"], empty["shd2"], empty["f1_skeleton"]) == (2, 2, 0.0)
  both_empty = gr.graph_metrics(np.zeros((2, 2)), np.zeros((2, 2)))
  assert (both_empty["shd"], both_empty["f1_directed"]) == (0, 1.0)
  with pytest.raises(ValueError, match="DAG"):
    gr.graph_metrics(_adj(2, [(0, 1), (1, 0)]), TRUE[:2, :2])


def test_causallearn_endpoints_read_as_directed_and_undirected_edges():
  g = np.zeros((3, 3))
  g[1, 0], g[0, 1] = 1, -1      # 0 -> 1
  g[1, 2] = g[2, 1] = -1        # 1 -- 2
  assert np.array_equal(gr.from_causallearn(g), _adj(3, [(0, 1), (1, 2), (2, 1)]))


def test_settings_shapes_and_truth():
  d = gs.kumar(0, "hard", n=4, p=0.8, rows=500)
  assert d.x.shape == (500, 4) and d.x.dtype == np.float32
  assert d.n_regimes == 5 and d.targets[0] == () and sorted(set(d.labels)) == list(range(5))
  assert nx.is_directed_acyclic_graph(nx.DiGraph(d.adj))
  for k, (j,) in enumerate(d.targets[1:], start=1):  # do(X_j = 1): constant in its regime
    assert np.std(d.x[d.labels == k, j]) < 1e-3
  f = gs.faria(0, "mlp", 2.0, True, n=6, rows=600)
  assert f.n_regimes == 13 and all(1 <= len(t) <= 2 for t in f.targets[1:])
  assert np.allclose(f.x.mean(0), 0, atol=1e-4) and np.isfinite(f.x).all()
  assert gs.expand(["kumar", "kumar_hard"]) == ["kumar_hard", "kumar_soft"]


@pytest.mark.fast
def test_kumar_bayes_labels_are_the_true_scms_posterior():
  """The ceiling's labels against a posterior written independently (scipy's densities,
  the edge weights read back from the data by least squares within the observational
  rows, where every node follows its parents): hard do(X_j = 1) regimes are separable,
  soft shifts are not."""
  from scipy import stats
  for variant in ("hard", "soft"):
    d = gs.kumar(3, variant, n=4, rows=4000)
    x = d.x.astype(np.float64)
    obs = x[d.labels == 0]
    w = np.zeros((4, 4))
    for j in range(4):
      pa = np.flatnonzero(d.adj[:, j])
      if len(pa):
        w[pa, j] = np.linalg.lstsq(obs[:, pa], obs[:, j], rcond=None)[0]
    mean = x @ w
    log_lik = np.zeros((len(x), 5))
    for k in range(5):
      for j in range(4):
        if k == j + 1 and variant == "hard":
          log_lik[:, k] += stats.norm.logpdf(x[:, j], 1.0, np.sqrt(1e-9))
        elif k == j + 1:  # the shift, read back as the regime's mean residual
          shift = np.mean(x[d.labels == k, j] - mean[d.labels == k, j])
          log_lik[:, k] += stats.norm.logpdf(x[:, j], mean[:, j] + shift, 1.0)
        else:
          log_lik[:, k] += stats.norm.logpdf(x[:, j], mean[:, j], 1.0)
    agree = np.mean(log_lik.argmax(1) == d.bayes_labels)
    assert agree > 0.99, (variant, agree)
    ceiling = gr.regime_metrics(d.labels, d.bayes_labels)["ari"]
    assert (ceiling > 0.99) if variant == "hard" else (0.3 < ceiling < 0.9), (variant, ceiling)


def _valid(adj, n, dag=True):
  adj = np.asarray(adj)
  assert adj.shape == (n, n) and set(np.unique(adj)) <= {0, 1} and not np.any(np.diag(adj))
  if dag:
    assert nx.is_directed_acyclic_graph(nx.DiGraph(adj))


def test_pc_and_ges_on_a_chain():
  pytest.importorskip("causallearn")
  rng = np.random.default_rng(0)
  a = rng.normal(size=1000)
  b = a + 0.5 * rng.normal(size=1000)
  c = b + 0.5 * rng.normal(size=1000)
  x = np.stack([a, b, c], 1)
  for rival in (gr.pc, gr.ges):
    adj = rival(x).adj
    _valid(adj, 3, dag=False)
    m = gr.graph_metrics(TRUE, adj)
    assert m["f1_skeleton"] == 1.0 and m["shd"] <= 2  # a chain's CPDAG: two undirected edges


def test_utigsp_on_labelled_tiny_data():
  pytest.importorskip("causaldag")
  d = gs.kumar(1, "hard", n=4, p=0.6, rows=1000)
  r = gr.utigsp_true(d.x, d, seed=0)
  _valid(r.adj, 4)
