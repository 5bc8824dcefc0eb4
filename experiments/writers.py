"""Metrics out of a run: JSONL rows, TensorBoard events (no TensorFlow), console progress."""
from __future__ import annotations

import json
import os
import time

from absl import logging


class MetricWriter:
  """One JSONL row per logged step in ``workdir/metrics.jsonl``, TensorBoard events beside it.

  On resume, rows past ``resume_step`` (written after the last checkpoint) are dropped,
  so the file reads as if the run had never been interrupted. With ``write=False``
  (every process but the primary on several hosts) the file is neither read nor
  written: only this process's new rows are kept, in memory.
  """

  def __init__(self, workdir: str, resume_step: int = 0, write: bool = True):
    self._path = os.path.join(workdir, "metrics.jsonl")
    self._rows, self._write, self._tb = [], write, None
    if not write:
      return
    kept = []
    if os.path.exists(self._path):
      with open(self._path) as f:
        kept = [json.loads(line) for line in f if line.strip()]
      kept = [r for r in kept if r["step"] < resume_step]
    self._rows = kept
    with open(self._path, "w") as f:
      f.writelines(json.dumps(r) + "\n" for r in kept)
    try:
      from tensorboardX import SummaryWriter
      self._tb = SummaryWriter(os.path.join(workdir, "tensorboard"))
    except ImportError:  # TensorBoard output is optional
      self._tb = None

  def write_history(self, step0: int, history: dict, every: int, last_step: int) -> None:
    """Write the steps of a chunk that fall on the logging grid (and the last step)."""
    n = len(next(iter(history.values())))
    rows = []
    for i in range(n):
      step = step0 + i
      if step % every == 0 or step == last_step:
        rows.append({"step": step, **{k: float(v[i]) for k, v in history.items()}})
    self._rows.extend(rows)
    if not self._write:
      return
    with open(self._path, "a") as f:
      f.writelines(json.dumps(r) + "\n" for r in rows)
    if self._tb is not None:
      for r in rows:
        for k, v in r.items():
          if k != "step":
            self._tb.add_scalar(f"train/{k}", v, r["step"])
      self._tb.flush()

  def rows(self) -> list[dict]:
    return list(self._rows)

  def close(self) -> None:
    if self._tb is not None:
      self._tb.close()


class Progress:
  """Readable console progress: step, loss, steps per second, ETA."""

  def __init__(self, total: int, start_step: int):
    self._total, self._start, self._t0 = total, start_step, time.time()

  def update(self, step: int, history: dict) -> None:
    elapsed = max(time.time() - self._t0, 1e-9)
    rate = (step - self._start) / elapsed
    eta = (self._total - step) / rate if rate > 0 else float("nan")
    # (steps done: the figures are those of step ``step - 1``, metrics.jsonl's index)
    logging.info("%d/%d steps done  loss %.4f  log p(x) %.4f  kl %.4f  %.1f steps/s  ETA %.0f s",
                 step, self._total, history["loss"][-1], history["log_px"][-1],
                 history["kl"][-1], rate, eta)
