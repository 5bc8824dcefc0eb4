"""A run killed with SIGKILL and rerun ends with exactly the metrics of an uninterrupted run."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

sys.path.insert(0, os.path.dirname(__file__))
import cli_runs  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# 200 steps, a checkpoint every 20: the first checkpoint comes early and nine more follow,
# so the run is killed mid-way (its compiles come from the persistent cache: fast).
FLAGS = ["--config=configs/test.py", "--config.train.num_steps=200",
         "--config.train.checkpoint_every=20", "--config.plots=False"]


def _cmd(workdir, flags=FLAGS):
  return [sys.executable, "-m", "experiments.run", *flags, f"--workdir={workdir}"]


def _run(popen, args, log):
  """Run to the end; ``(exit status, stderr)`` (stderr to a file: no pipe to block on)."""
  with open(log, "w") as f:
    proc = popen(args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=f)
    proc.wait(timeout=600)
  with open(log) as f:
    return proc.returncode, f.read()



# The runs are background jobs (conftest.py: ``early``), started when the session starts.

def _kill_and_resume(folder, popen):
  whole, killed = folder / "whole", folder / "killed"
  status, err = _run(popen, _cmd(whole), folder / "whole.log")
  assert status == 0, err[-2000:]
  with open(whole / "metrics.json") as f:  # (tests/test_run.py reads the whole run's file)
    written = json.load(f)

  proc = popen(_cmd(killed), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  ckpt_dir = killed / "checkpoints"
  deadline = time.time() + 300
  while time.time() < deadline and proc.poll() is None:
    if ckpt_dir.exists() and any(p.name.isdigit() for p in ckpt_dir.iterdir()):
      break
    time.sleep(0.02)
  ended_first = proc.poll() is not None
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  partial = (killed / "metrics.json").exists()

  status, resumed = _run(popen, _cmd(killed), folder / "resumed.log")
  assert status == 0, resumed[-2000:]
  rows = [json.loads(line) for line in open(killed / "metrics.jsonl")]
  return dict(ended_first=ended_first, partial=partial, resumed=resumed,
              whole=written["runs"], written=written,
              killed=cli_runs.runs(killed), steps=[r["step"] for r in rows])


def _other_config(folder, popen):
  workdir = folder / "w"
  workdir.mkdir()
  (workdir / "config.json").write_text(json.dumps({"seed": 123}))
  (workdir / "metrics.json").write_text("{\"keep\": 1}")
  status, err = _run(popen, _cmd(workdir), folder / "w.log")
  return status, err, json.loads((workdir / "metrics.json").read_text())


def _non_finite(folder, popen):
  workdir = folder / "nan"
  status, err = _run(popen, _cmd(workdir, ["--config=configs/test.py",
                                           "--config.train.learning_rate=1e30",
                                           "--config.plots=False"]), folder / "nan.log")
  return status, err, (workdir / "metrics.json").exists()


@pytest.mark.early(job=_kill_and_resume)
def test_sigkill_then_resume_matches_uninterrupted(early):
  assert not early["ended_first"], "the run ended before it could be killed"
  assert not early["partial"]  # no partial results from the killed run
  assert "resumed from the checkpoint at step" in early["resumed"]
  assert early["killed"] == early["whole"]  # bit-for-bit: same numbers, same floats
  steps = early["steps"]
  assert steps == sorted(set(steps))  # no duplicated steps


@pytest.mark.early(job=_other_config)
def test_rerun_on_other_config_refused(early):
  status, err, kept = early
  assert status != 0
  assert "different config" in err and "Traceback" not in err
  assert kept == {"keep": 1}


@pytest.mark.early(job=_non_finite)
def test_non_finite_loss_stops_with_step_and_no_results(early):
  status, err, wrote = early
  assert status != 0
  assert "non-finite loss at step" in err and "Traceback" not in err
  assert not wrote


@pytest.mark.fast
def test_only_a_workdir_with_results_is_kept_from_other_runs(tmp_path):
  """A run that failed before its first result (its config and inputs written, nothing
  else) leaves nothing to protect: the next run, on mended data, may use the workdir.
  One that holds a result refuses another config or other input contents."""
  import ml_collections
  from experiments import loop
  workdir = str(tmp_path)
  first, second = (ml_collections.ConfigDict({"seed": s}) for s in (0, 1))
  loop.prepare_workdir(first, workdir, {"data": "bad contents"})
  loop.prepare_workdir(second, workdir, {"data": "mended contents"})
  assert json.load(open(os.path.join(workdir, "config.json"))) == {"seed": 1}
  (tmp_path / "metrics.json").write_text("{}")
  with pytest.raises(loop.UserError, match="different config"):
    loop.prepare_workdir(first, workdir, {"data": "mended contents"})
  with pytest.raises(loop.UserError, match="other contents of data"):
    loop.prepare_workdir(second, workdir, {"data": "other contents"})
