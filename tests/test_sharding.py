"""Runs sharded over 4 (forced host) devices give the per-run results of an unsharded run."""
import ast
import json
import os
import socket
import subprocess
import sys

import jax
import pytest

from vcm_jax import sharding

sys.path.insert(0, os.path.dirname(__file__))
import cli_runs  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# configs/test.py made cheaper: the point is equal numbers sharded and unsharded, not a
# good fit (compilation and start-up are most of a run: 40 steps on 800 rows; 4 runs, the
# fewest that fill both axes of a 2 x 2 mesh).
SMALL = ["--config=configs/test.py", "--config.plots=False", "--config.scm.n_train=800",
         "--config.scm.n_test=200", "--config.train.batch_size=200",
         "--config.train.num_steps=40", "--config.train.pooled_steps=10"]


def _start(popen, workdir, devices, *args, log=None):
  """The CLI on ``devices`` forced host devices, started; stdout and stderr to ``log``
  (default ``workdir.log``: runs side by side never block on a pipe)."""
  env = dict(os.environ)
  env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "")
                      + f" --xla_force_host_platform_device_count={devices}").strip()
  log = log or f"{workdir}.log"
  with open(log, "w") as f:
    proc = popen([sys.executable, "-m", "experiments.run", *args, f"--workdir={workdir}"],
                 cwd=ROOT, env=env, stdout=f, stderr=subprocess.STDOUT)
  return proc, log


def _four(popen, workdir, *extra):
  return _start(popen, workdir, 4, *SMALL, "--config.num_runs=4",
                "--config.train.checkpoint_every=0", *extra)


# The sharded runs are background jobs (conftest.py: ``early``), started when the session
# starts, one process at a time (but the two that make one distributed run); the unsharded
# run they are compared with is made in this process (one device, no command start-up).

@pytest.fixture(scope="module")
def plain(tmp_path_factory):
  """The per-run entries of the unsharded run of the 4 runs: ``driver.run`` on SMALL (the
  command's path)."""
  from configs import test as test_config
  from experiments import driver
  config = test_config.get_config()
  for flag in SMALL[1:] + ["--config.num_runs=4", "--config.train.checkpoint_every=0"]:
    name, value = flag.removeprefix("--config.").split("=")
    *groups, key = name.split(".")
    node = config
    for group in groups:
      node = node[group]
    node[key] = ast.literal_eval(value)
  return driver.run(config, str(tmp_path_factory.mktemp("plain")))["runs"]


def _free_port():
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def _runs(folder, popen):
  # Both mesh axes at once (runs over 2 devices, each run's rows over 2: a mesh of the
  # runs alone, data = 1, is its special case), then over two processes below.
  status, out = cli_runs.finish(_four(popen, folder / "runs2_data2", "--config.mesh.runs=2",
                                      "--config.mesh.data=2"))
  assert status == 0, out[-2000:]
  results = {"runs2_data2": cli_runs.runs(folder / "runs2_data2")}
  # The same 4 runs, by two processes of 2 devices each (checkpoints on: only
  # process 0 writes them).
  port = _free_port()
  multi = [_start(popen, folder / "multi", 2, *SMALL, "--config.num_runs=4",
                  "--config.train.log_every=20", "--distributed",
                  f"--coordinator_address=localhost:{port}", "--num_processes=2",
                  f"--process_id={i}", "--config.mesh.runs=2", "--config.mesh.data=2",
                  log=folder / f"multi{i}.log")
           for i in range(2)]
  for run in multi:
    status, out = cli_runs.finish(run)
    assert status == 0, out[-2000:]
  results["multi"] = cli_runs.runs(folder / "multi")
  with open(folder / "multi" / "metrics.jsonl") as f:
    steps = [json.loads(line)["step"] for line in f]
  return results, steps


@pytest.mark.early(job=_runs)
def test_sharded_runs_match_unsharded(early, plain):
  results, _ = early
  assert len(plain) == 4
  assert len(results["runs2_data2"]) == 4
  for one, sharded in zip(plain, results["runs2_data2"]):
    assert one.keys() == sharded.keys()
    for key, value in one.items():
      if isinstance(value, float):
        assert sharded[key] == pytest.approx(value, rel=1e-4, abs=1e-4), key
      else:
        assert sharded[key] == value, key


@pytest.mark.early(job=_runs)
def test_two_processes_match_one(early, plain):
  """``--distributed`` over two CPU processes (2 devices each; runs split across the
  processes, each run's batch across a process's devices) gives one process's results
  (the unsharded run of the same 4 runs), and only process 0 writes."""
  results, steps = early
  assert len(results["multi"]) == 4
  for a, b in zip(plain, results["multi"]):
    assert a.keys() == b.keys()
    for key, value in a.items():
      assert b[key] == (pytest.approx(value, rel=1e-4, abs=1e-4) if isinstance(value, float)
                        else value), key
  # One writer: each logged step appears once (two appending processes would double them).
  assert steps == [0, 20, 39]


def _bad_mesh(folder, popen):
  status, out = cli_runs.finish(_four(popen, folder / "bad", "--config.mesh.runs=3"))
  return status, out, (folder / "bad" / "metrics.json").exists()


@pytest.mark.early(job=_bad_mesh)
def test_mesh_that_does_not_divide_is_one_line_error(early):
  status, out, wrote = early
  assert status != 0
  assert "num_runs=4 is not divisible by mesh.runs=3" in out
  assert "Traceback" not in out
  assert not wrote


@pytest.mark.fast
def test_make_mesh_checks_sizes():
  with pytest.raises(ValueError, match="devices"):
    sharding.make_mesh(runs=jax.device_count() + 1, data=1, num_runs=16, num_samples=16)
  with pytest.raises(ValueError, match="must be >= 1"):
    sharding.make_mesh(runs=0, data=1, num_runs=1, num_samples=7)
  mesh = sharding.make_mesh(runs=1, data=1, num_runs=3, num_samples=7)
  assert mesh.axis_names == ("runs", "data")
