"""experiments.compare on a tiny grid: the files, the numbers that must hold, resuming."""
import csv
import os

import ml_collections
import numpy as np
import pytest


def _config():
  from configs import compare
  c = compare.get_config()
  c.num_seeds = 2
  c.n_train, c.n_test = 600, 300
  c.methods = "vcm,em,gmm,pooled,oracle"
  c.max_steps = 60
  c.plots = True
  c.real_data = ""  # tests/test_real_data.py covers the Sachs rows
  c.settings = ml_collections.ConfigDict({
      "easy": dict(n_nodes=3, edge_prob=0.6, shift=10.0),
      "hard": dict(n_nodes=3, edge_prob=0.6, shift=4.0, noise_low=0.5, noise_high=1.5),
  })
  return c


@pytest.fixture(scope="module")
def compared(tmp_path_factory):
  from experiments import compare
  workdir = str(tmp_path_factory.mktemp("compare"))
  rows = compare.run(_config(), workdir)
  return workdir, rows


def test_results_csv(compared):
  workdir, _ = compared
  with open(os.path.join(workdir, "results.csv")) as f:
    rows = list(csv.DictReader(f))
  assert list(rows[0]) == ["setting", "method", "seed", "ari", "bayes_ari", "target_accuracy",
                           "seconds"]
  assert len(rows) == 2 * 5 * 2
  by = {(r["setting"], r["method"], r["seed"]): r for r in rows}
  for setting in ("easy", "hard"):
    for seed in ("0", "1"):
      bayes = float(by[(setting, "oracle", seed)]["bayes_ari"])
      assert all(float(by[(setting, m, seed)]["bayes_ari"]) == bayes
                 for m in ("vcm", "em", "gmm", "pooled"))  # every method on the same data
      assert abs(float(by[(setting, "pooled", seed)]["ari"])) < 1e-6
      assert by[(setting, "gmm", seed)]["target_accuracy"] == ""  # no targets
      # The label-knowing oracle sits at the ceiling on linear-Gaussian data.
      assert float(by[(setting, "oracle", seed)]["ari"]) >= 0.95 * bayes
  assert np.mean([float(by[("easy", "em", s)]["ari"]) for s in "01"]) >= 0.95


def test_report_and_plots(compared):
  workdir, _ = compared
  text = open(os.path.join(workdir, "report.md")).read()
  assert "## easy" in text and "## hard" in text and "Bayes ceiling" in text
  assert "| vcm |" in text and "Does vcm meet the bar?" in text
  for name in ("ari_vs_shift.png", "time_per_method.png"):
    assert os.path.getsize(os.path.join(workdir, name)) > 0


def test_rerun_resumes_without_refitting(compared):
  from experiments import compare
  workdir, rows = compared
  before = open(os.path.join(workdir, "results.csv")).read()
  again = compare.run(_config(), workdir)  # every pair is in partial.jsonl: nothing refits
  assert [str(r) for r in again] == [str(r) for r in rows]  # (NaN != NaN)
  assert open(os.path.join(workdir, "results.csv")).read() == before
  other = _config()
  other.num_seeds = 3
  with pytest.raises(compare.UserError, match="different config"):
    compare.run(other, workdir)


@pytest.mark.fast
@pytest.mark.parametrize("change, message", [
    (dict(n_train=1), "scm.n_train must be >= 2 and scm.n_test >= 1 (setting easy)"),
    (dict(max_steps=-5), "max_steps=-5 must be an integer >= 0"),
    (dict(shift=float("nan")), "scm.shift=nan must be a finite number (setting easy)")])
def test_impossible_values_are_one_line_errors_before_any_work(change, message, tmp_path):
  """A new user's tour: a training set of one row (a traceback in the first fit), a
  negative step budget (read as "the recipes' own steps") and a NaN shift (ARI 0 reported
  as a result) ran; each is now one line before anything is written."""
  from experiments import compare
  c = _config()
  if "shift" in change:
    c.settings.easy.shift = change["shift"]
  else:
    c.update(change)
  with pytest.raises(compare.UserError) as err:
    compare.run(c, str(tmp_path / "out"))
  assert message in str(err.value) and "\n" not in str(err.value), str(err.value)
  assert not (tmp_path / "out").exists()
