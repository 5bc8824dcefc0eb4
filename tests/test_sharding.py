"""Runs sharded over 8 (forced host) devices give the per-run results of an unsharded run."""
import json
import os
import socket
import subprocess
import sys

import jax
import pytest

from vcm_jax import sharding

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(workdir, *extra):
  env = dict(os.environ)
  env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8").strip()
  return subprocess.run(
      [sys.executable, "-m", "experiments.run", "--config=configs/test.py",
       "--config.num_runs=8", "--config.plots=False", "--config.train.checkpoint_every=0",
       f"--workdir={workdir}", *extra],
      cwd=ROOT, env=env, capture_output=True, text=True)


def test_sharded_runs_match_unsharded(tmp_path):
  results = {}
  for name, extra in {"plain": (), "runs8": ("--config.mesh.runs=8",),
                      "runs4_data2": ("--config.mesh.runs=4", "--config.mesh.data=2")}.items():
    proc = _run(tmp_path / name, *extra)
    assert proc.returncode == 0, proc.stderr[-2000:]
    with open(tmp_path / name / "metrics.json") as f:
      results[name] = json.load(f)["runs"]
  for name in ("runs8", "runs4_data2"):
    for plain, sharded in zip(results["plain"], results[name]):
      assert plain.keys() == sharded.keys()
      for key, value in plain.items():
        if isinstance(value, float):
          assert sharded[key] == pytest.approx(value, rel=1e-4, abs=1e-4), (name, key)
        else:
          assert sharded[key] == value, (name, key)


def _free_port():
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def test_two_processes_match_one(tmp_path):
  """``--distributed`` over two CPU processes (2 devices each; runs split across the
  processes, each run's batch across a process's devices) gives one process's results,
  and only process 0 writes."""
  common = ["--config=configs/test.py", "--config.plots=False", "--config.train.log_every=100"]
  env = dict(os.environ)
  env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=2").strip()
  port = _free_port()
  procs = [subprocess.Popen(
      [sys.executable, "-m", "experiments.run", *common, "--distributed",
       f"--coordinator_address=localhost:{port}", "--num_processes=2", f"--process_id={i}",
       "--config.mesh.runs=2", "--config.mesh.data=2", f"--workdir={tmp_path / 'multi'}"],
      cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
      for i in range(2)]
  outs = [p.communicate(timeout=600)[0] for p in procs]
  for p, out in zip(procs, outs):
    assert p.returncode == 0, out[-2000:]
  single = subprocess.run([sys.executable, "-m", "experiments.run", *common,
                           f"--workdir={tmp_path / 'single'}"], cwd=ROOT, capture_output=True,
                          text=True)
  assert single.returncode == 0, single.stderr[-2000:]
  runs = {}
  for name in ("multi", "single"):
    with open(tmp_path / name / "metrics.json") as f:
      runs[name] = json.load(f)["runs"]
  assert len(runs["multi"]) == 2
  for a, b in zip(runs["single"], runs["multi"]):
    for key, value in a.items():
      assert b[key] == (pytest.approx(value, rel=1e-4, abs=1e-4) if isinstance(value, float)
                        else value), key
  # One writer: each logged step appears once (two appending processes would double them).
  with open(tmp_path / "multi" / "metrics.jsonl") as f:
    steps = [json.loads(line)["step"] for line in f]
  assert steps == [0, 100, 200, 299]


def test_mesh_that_does_not_divide_is_one_line_error(tmp_path):
  proc = _run(tmp_path / "bad", "--config.mesh.runs=3")
  assert proc.returncode != 0
  assert "num_runs=8 is not divisible by mesh.runs=3" in proc.stderr
  assert "Traceback" not in proc.stderr
  assert not (tmp_path / "bad" / "metrics.json").exists()


def test_make_mesh_checks_sizes():
  with pytest.raises(ValueError, match="devices"):
    sharding.make_mesh(runs=jax.device_count() + 1, data=1, num_runs=16, num_samples=16)
  with pytest.raises(ValueError, match="must be >= 1"):
    sharding.make_mesh(runs=0, data=1, num_runs=1, num_samples=7)
  mesh = sharding.make_mesh(runs=1, data=1, num_runs=3, num_samples=7)
  assert mesh.axis_names == ("runs", "data")
