"""The three examples run at a small size and print what they promise."""
import os
import re
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(script, *args):
  out = subprocess.run([sys.executable, os.path.join(ROOT, "examples", script), *args], cwd=ROOT,
                       capture_output=True, text=True, timeout=600)
  assert out.returncode == 0, out.stderr[-2000:]
  return out.stdout


@pytest.mark.parametrize("script", ["fit_csv.py", "vmap_graphs.py", "intervened_samples.py"])
def test_examples_are_short_and_use_only_the_public_api(script):
  text = open(os.path.join(ROOT, "examples", script)).read()
  assert len(text.splitlines()) < 60
  assert "experiments" not in text and "configs" not in text


def test_fit_csv(tmp_path):
  from configs import er
  from experiments import make_data
  config = er.get_config()
  config.scm.update(n_nodes=4, edge_prob=0.6, n_train=3000, shift=6.0)
  make_data.make_dataset(config, str(tmp_path))
  out = _run("fit_csv.py", str(tmp_path / "data.csv"), str(tmp_path / "graph.csv"),
             "--steps=150")
  assert "3000 rows, 4 variables, 5 regimes" in out
  rows = re.findall(r"^\s+(\d+)\s+(\d+)\s+([\d.]+)\s+(\S.*)$", out, re.M)
  assert [r[3] for r in rows] == ["observational", "X0", "X1", "X2", "X3"]
  assert sum(int(r[1]) for r in rows) == 3000


def test_vmap_graphs():
  out = _run("vmap_graphs.py", "--graphs=3", "--nodes=4", "--samples=2000", "--steps=200")
  pairs = np.array(re.findall(r"ARI ([\d.]+)\s+ceiling ([\d.]+)", out), float)
  assert pairs.shape == (3, 2)
  assert np.all(pairs[:, 0] >= 0.9 * pairs[:, 1]), out


def test_intervened_samples():
  out = _run("intervened_samples.py", "--nodes=4", "--regime=2", "--samples=4000",
             "--steps=200")
  assert "regime 2: targets (1,) (true: node 1)" in out
  gap = float(re.search(r"largest mean gap: ([\d.]+)", out).group(1))
  assert gap < 0.25, out
