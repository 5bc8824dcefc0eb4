"""End to end: experiments.driver.run on configs/test.py, and the CLI's input errors."""
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUN_KEYS = ("seed", "ari", "nmi", "bayes_ari", "target_accuracy", "observational_identified",
            "elbo", "heldout_loglik", "true_heldout_loglik")


@pytest.fixture(scope="module")
def end_to_end(tmp_path_factory):
  """The suite's only full run in this process (compilation included: seconds)."""
  from configs import test as test_config
  from experiments import driver

  workdir = str(tmp_path_factory.mktemp("e2e"))
  config = test_config.get_config()
  # Half its 300 steps: the fits already sit at the ceiling (ARI 1.0 of 1.0, held-out
  # log p(x) within 0.03 nats of the truth's), and most of the run's time is its steps.
  config.train.num_steps = 150
  payload = driver.run(config, workdir)
  with open(os.path.join(workdir, "metrics.json")) as f:
    written = json.load(f)
  return config, payload, written


def test_metrics_json_schema(end_to_end):
  config, payload, written = end_to_end
  assert set(written) >= {"runs", "summary", "wall_seconds"}
  assert written["runs"] == payload["runs"]
  assert len(written["runs"]) == config.num_runs
  for i, row in enumerate(written["runs"]):
    assert set(row) >= set(RUN_KEYS), set(RUN_KEYS) - set(row)
    assert row["seed"] == i
    assert isinstance(row["observational_identified"], bool)
    for key in RUN_KEYS[1:]:
      if key != "observational_identified":
        assert isinstance(row[key], float) and math.isfinite(row[key]), (key, row[key])
    for key in ("ari", "bayes_ari", "target_accuracy"):
      assert -1.0 <= row[key] <= 1.0 + 1e-6
    assert 0.0 <= row["nmi"] <= 1.0 + 1e-6
  assert isinstance(written["wall_seconds"], float) and written["wall_seconds"] > 0


def test_summary_consistent_with_runs(end_to_end):
  _, _, written = end_to_end
  runs, summary = written["runs"], written["summary"]
  for key in ("ari", "nmi", "bayes_ari", "elbo", "heldout_loglik"):
    col = np.array([r[key] for r in runs])
    assert summary[key]["mean"] == pytest.approx(col.mean(), rel=1e-6, abs=1e-9)
    assert summary[key]["min"] == pytest.approx(col.min(), rel=1e-6, abs=1e-9)
    assert summary[key]["max"] == pytest.approx(col.max(), rel=1e-6, abs=1e-9)
  assert summary["observational_identified"] == sum(r["observational_identified"] for r in runs)


def test_end_to_end_quality(end_to_end):
  _, _, written = end_to_end
  runs = written["runs"]
  mean_ari = np.mean([r["ari"] for r in runs])
  mean_bayes = np.mean([r["bayes_ari"] for r in runs])
  assert mean_bayes > 0.5
  assert mean_ari >= 0.9 * mean_bayes, (mean_ari, mean_bayes)
  for r in runs:
    # The fitted model's held-out density is close to the true one (nats per sample).
    assert abs(r["heldout_loglik"] - r["true_heldout_loglik"]) < 0.5, r
    if "train_log_px" in r:  # the ELBO is a lower bound of log p(x) on the same data
      assert r["elbo"] <= r["train_log_px"] + 1e-3, r


def _cli(popen, folder, name, override):
  """The CLI on configs/test.py with one override: ``(workdir, CompletedProcess)``."""
  workdir = folder / name
  args = [sys.executable, "-m", "experiments.run", "--config=configs/test.py",
          f"--workdir={workdir}", override]
  with open(folder / f"{name}.out", "w") as out, open(folder / f"{name}.err", "w") as err:
    proc = popen(args, cwd=ROOT, stdout=out, stderr=err)
    proc.wait(timeout=120)
  return workdir, subprocess.CompletedProcess(args, proc.returncode,
                                              (folder / f"{name}.out").read_text(),
                                              (folder / f"{name}.err").read_text())


BAD = {"batch_size": "--config.train.batch_size=100000", "estimator": "--config.train.estimator=bogus",
       "no_such_key": "--config.train.no_such_key=1"}


def _rejected(folder, popen):
  """The CLI on each bad override (each is start-up and a parse), one after another, as
  a background job (conftest.py: ``early``): ``{needle: (workdir, process)}``."""
  return {needle: _cli(popen, folder, needle, flag) for needle, flag in BAD.items()}


@pytest.mark.early(job=_rejected)
@pytest.mark.parametrize("needle", ["batch_size", "estimator"])
def test_cli_bad_value_one_line_error(early, needle):
  workdir, proc = early[needle]
  assert proc.returncode != 0
  assert "Traceback" not in proc.stderr, proc.stderr
  lines = [l for l in proc.stderr.splitlines() if l.strip()]
  assert lines and needle in lines[-1] and lines[-1].startswith("error:"), proc.stderr
  # Rejected before anything ran: nothing written.
  assert not (workdir / "metrics.json").exists()
  assert not (workdir / "checkpoints").exists()


@pytest.mark.early(job=_rejected)
def test_cli_unknown_key_one_line_error(early):
  # README: "An unknown key or an impossible value stops the run with a one-line
  # error before anything is compiled." (Also the old test_cli_unknown_key_exits_nonzero:
  # the same command.)
  workdir, proc = early["no_such_key"]
  assert proc.returncode != 0
  assert not (workdir / "metrics.json").exists()
  assert "no_such_key" in proc.stderr
  assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
