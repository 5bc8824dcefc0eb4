"""Helpers the CLI tests share: wait for a started run, read its metrics."""
import json
import os


def finish(started):
  """``(exit status, log text)`` of a run started as ``(process, log path)``."""
  proc, log = started
  proc.wait(timeout=600)
  with open(log) as f:
    return proc.returncode, f.read()


def runs(workdir):
  """The per-run entries of a synthetic run's ``metrics.json``."""
  with open(os.path.join(workdir, "metrics.json")) as f:
    return json.load(f)["runs"]
