"""A run killed with SIGKILL and rerun ends with exactly the metrics of an uninterrupted run."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FLAGS = ["--config=configs/test.py", "--config.train.num_steps=600",
         "--config.train.checkpoint_every=20", "--config.plots=False"]


def _cmd(workdir):
  return [sys.executable, "-m", "experiments.run", *FLAGS, f"--workdir={workdir}"]


def _runs(workdir):
  with open(os.path.join(workdir, "metrics.json")) as f:
    return json.load(f)["runs"]



def test_sigkill_then_resume_matches_uninterrupted(tmp_path):
  whole, killed = tmp_path / "whole", tmp_path / "killed"
  subprocess.run(_cmd(whole), cwd=ROOT, check=True, capture_output=True)

  proc = subprocess.Popen(_cmd(killed), cwd=ROOT, stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL)
  ckpt_dir = killed / "checkpoints"
  deadline = time.time() + 300
  while time.time() < deadline and proc.poll() is None:
    if ckpt_dir.exists() and any(p.name.isdigit() for p in ckpt_dir.iterdir()):
      break
    time.sleep(0.02)
  assert proc.poll() is None, "the run ended before it could be killed"
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  assert not (killed / "metrics.json").exists()  # no partial results from the killed run

  resumed = subprocess.run(_cmd(killed), cwd=ROOT, check=True, capture_output=True, text=True)
  assert "resumed from the checkpoint at step" in resumed.stderr
  assert _runs(killed) == _runs(whole)  # bit-for-bit: same numbers, same floats
  rows = [json.loads(l) for l in open(killed / "metrics.jsonl")]
  assert [r["step"] for r in rows] == sorted({r["step"] for r in rows})  # no duplicated steps


def test_rerun_on_other_config_refused(tmp_path):
  workdir = tmp_path / "w"
  workdir.mkdir()
  (workdir / "config.json").write_text(json.dumps({"seed": 123}))
  (workdir / "metrics.json").write_text("{\"keep\": 1}")
  proc = subprocess.run(_cmd(workdir), cwd=ROOT, capture_output=True, text=True)
  assert proc.returncode != 0
  assert "different config" in proc.stderr and "Traceback" not in proc.stderr
  assert json.loads((workdir / "metrics.json").read_text()) == {"keep": 1}


def test_non_finite_loss_stops_with_step_and_no_results(tmp_path):
  workdir = tmp_path / "nan"
  proc = subprocess.run(
      [sys.executable, "-m", "experiments.run", "--config=configs/test.py",
       "--config.train.learning_rate=1e30", "--config.plots=False", f"--workdir={workdir}"],
      cwd=ROOT, capture_output=True, text=True)
  assert proc.returncode != 0
  assert "non-finite loss at step" in proc.stderr and "Traceback" not in proc.stderr
  assert not (workdir / "metrics.json").exists()
