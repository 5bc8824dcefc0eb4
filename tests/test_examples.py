"""The three examples run at a small size and print what they promise."""
import os
import re
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _example(popen, folder, script, *args):
  """An example's stdout (its stdout and stderr go to files: no pipe to block on)."""
  with open(folder / f"{script}.out", "w") as out, open(folder / f"{script}.err", "w") as err:
    proc = popen([sys.executable, os.path.join(ROOT, "examples", script), *args], cwd=ROOT,
                 stdout=out, stderr=err)
    proc.wait(timeout=600)
  assert proc.returncode == 0, (folder / f"{script}.err").read_text()[-2000:]
  return (folder / f"{script}.out").read_text()


# The runs are background jobs (conftest.py: ``early``), started when the session starts.

def _fit_csv(folder, popen):
  # A data set as a user of the CLI makes one (3000 rows, as test_own_data's).
  data = folder / "data"
  with open(folder / "make_data.log", "w") as log:
    proc = popen([sys.executable, "-m", "experiments.make_data", "--config=configs/er.py",
                  "--config.scm.n_nodes=4", "--config.scm.edge_prob=0.6",
                  "--config.scm.n_train=3000", "--config.scm.shift=6.0", f"--out={data}"],
                 cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    proc.wait(timeout=600)
  assert proc.returncode == 0, (folder / "make_data.log").read_text()[-2000:]
  # Its output is checked for its form (rows, names), not its fit: few steps.
  return _example(popen, folder, "fit_csv.py", str(data / "data.csv"), str(data / "graph.csv"),
                  "--steps=20")


def _vmap_graphs(folder, popen):
  return _example(popen, folder, "vmap_graphs.py", "--graphs=3", "--nodes=4", "--samples=1000",
                  "--steps=100")


def _intervened_samples(folder, popen):
  return _example(popen, folder, "intervened_samples.py", "--nodes=4", "--regime=2",
                  "--samples=4000", "--steps=200")


@pytest.mark.fast
@pytest.mark.parametrize("script", ["fit_csv.py", "vmap_graphs.py", "intervened_samples.py"])
def test_examples_are_short_and_use_only_the_public_api(script):
  text = open(os.path.join(ROOT, "examples", script)).read()
  assert len(text.splitlines()) < 60
  assert "experiments" not in text and "configs" not in text


@pytest.mark.early(job=_fit_csv)
def test_fit_csv(early):
  out = early
  assert "3000 rows, 4 variables, 5 regimes" in out
  rows = re.findall(r"^\s+(\d+)\s+(\d+)\s+([\d.]+)\s+(\S.*)$", out, re.M)
  assert [r[3] for r in rows] == ["observational", "X0", "X1", "X2", "X3"]
  assert sum(int(r[1]) for r in rows) == 3000


@pytest.mark.early(job=_vmap_graphs)
def test_vmap_graphs(early):
  pairs = np.array(re.findall(r"ARI ([\d.]+)\s+ceiling ([\d.]+)", early), float)
  assert pairs.shape == (3, 2)
  assert np.all(pairs[:, 0] >= 0.9 * pairs[:, 1]), early


@pytest.mark.early(job=_intervened_samples)
def test_intervened_samples(early):
  out = early
  assert "regime 2: targets (1,) (true: node 1)" in out
  gap = float(re.search(r"largest mean gap: ([\d.]+)", out).group(1))
  assert gap < 0.25, out
