"""The own-data command without a graph file learns the graph (graph.csv, graph.png,
metrics.json's graph_learning); with graph.search=repair it mends a given one."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))
import cli_runs  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NAMES = ["A", "B", "C", "D"]
# A -> B, A -> C, B -> D, C -> D: a diamond (its collider at D orients it).
TRUE = np.array([[0, 1, 1, 0], [0, 0, 0, 1], [0, 0, 0, 1], [0, 0, 0, 0]])
SMALL = ["--config.train.num_steps=200", "--config.train.checkpoint_every=0",
         "--config.model.mechanism=linear", "--config.selection.decoders=structured",
         "--config.selection.noises=gauss", "--config.selection.scales=constant",
         "--config.selection.yardstick=False", "--config.selection.screen=False"]


@pytest.fixture(scope="module")
def data_csv(tmp_path_factory):
  """A linear SCM on TRUE, one mean-shift intervention per node, written as a CSV with
  named columns. Edge weights |w| in [0.3, 0.6]: with strong edges (|w| near 1 against
  shifts of 10) structural EM from the empty graph (its start until 2026-12-02) could stop
  in a complete DAG."""
  import jax
  import jax.numpy as jnp

  from vcm_jax import scm
  true = scm.sample_linear_scm(jax.random.key(1), jnp.asarray(TRUE), noise_low=0.5,
                               noise_high=1.5, weight_low=0.3, weight_high=0.6)
  x, _ = scm.sample_data(jax.random.key(11), true, 1500)
  path = tmp_path_factory.mktemp("data") / "data.csv"
  np.savetxt(path, np.asarray(x), delimiter=",", header=",".join(NAMES), comments="",
             fmt="%.6g")
  return str(path)


def _run(workdir, *args):
  log = f"{workdir}.log"
  with open(log, "w") as f:
    proc = subprocess.Popen([sys.executable, "-m", "experiments.run", "--config=configs/csv.py",
                             f"--workdir={workdir}", *SMALL, *args],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=f)
  status, text = cli_runs.finish((proc, log))
  assert status == 0, text[-3000:]
  with open(os.path.join(workdir, "metrics.json")) as f:
    return json.load(f)["summary"], text


def _read_graph(workdir):
  from vcm_jax import io
  with open(os.path.join(workdir, "graph.csv")) as f:
    assert f.readline().strip() == "source,target"
  return io.read_graph(os.path.join(workdir, "graph.csv"), NAMES)  # readable as an input


def _skeleton_shd(a, b):
  a, b = (np.asarray(m) != 0 for m in (a, b))
  return int(np.triu((a | a.T) != (b | b.T)).sum())


def test_learns_the_graph_without_a_graph_file_and_repairs_a_given_one(data_csv, tmp_path):
  learned_dir = tmp_path / "learned"
  summary, log = _run(learned_dir, f"--config.data.path={data_csv}")
  adj = _read_graph(learned_dir)
  assert _skeleton_shd(adj, TRUE) <= 1, adj
  assert os.path.getsize(learned_dir / "graph.png") > 0
  learning = summary["graph_learning"]
  assert learning["search"] == "learn" and "changes" not in learning
  assert learning["rounds"][0]["n_edges"] > 0  # from the mixture's graph, not the empty one
  assert {(e["source"], e["target"]) for e in learning["edges"]} == \
      {(NAMES[i], NAMES[j]) for i, j in np.argwhere(adj)}
  assert log.count("graph search round") == len(learning["rounds"])

  # Repair: a given graph missing A -> C gets it back, reported as a change with its gain.
  given = tmp_path / "missing.csv"
  given.write_text("source,target\nA,B\nB,D\nC,D\n")
  repaired_dir = tmp_path / "repaired"
  summary, log = _run(repaired_dir, f"--config.data.path={data_csv}",
                      f"--config.data.graph={given}", "--config.graph.search=repair")
  adj = _read_graph(repaired_dir)
  assert adj[0, 2] == 1 and _skeleton_shd(adj, TRUE) == 0, adj
  changes = summary["graph_learning"]["changes"]
  added = [c for c in changes if (c["change"], c["source"], c["target"]) == ("added", "A", "C")]
  assert added and added[0]["gain"] > 0, changes
  assert "graph change from the given graph: added A -> C" in log
  assert os.path.getsize(repaired_dir / "graph.png") > 0


def test_unknown_graph_search_is_one_line_error(data_csv, tmp_path):
  proc = subprocess.run([sys.executable, "-m", "experiments.run", "--config=configs/csv.py",
                         f"--config.data.path={data_csv}", "--config.graph.search=guess",
                         f"--workdir={tmp_path / 'out'}"],
                        cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert proc.returncode != 0 and "Traceback" not in proc.stderr
  assert "error: config: graph.search='guess' is not one of learn, repair" in proc.stderr
  assert not (tmp_path / "out").exists()
