"""The checkpointed training loop and the workdir rules every run shares.

Chunks of compiled steps, orbax checkpoints, metrics.jsonl, TensorBoard,
progress; a rerun on the same workdir resumes and ends with exactly the metrics
of an uninterrupted run, and a workdir that holds another run is refused.
"""
from __future__ import annotations

import hashlib
import json
import os

import jax
import numpy as np
from absl import logging

from experiments import checkpoints, writers
from vcm_jax import io, sharding


class UserError(ValueError):
  """A problem with the user's input or config: reported in one line, no traceback."""


def check_seed(config) -> None:
  """``UserError`` unless ``config.seed`` (where it has one) is a non-negative integer:
  NumPy's generators (the held-out split's, the data's) take no other; checked before
  anything is written."""
  if "seed" in config and not (isinstance(config.seed, int) and config.seed >= 0):
    raise UserError(f"config: seed={config.seed!r} must be a non-negative integer")


class TrainingDiverged(UserError):
  """A non-finite loss: the run stops, the last good checkpoint stays."""


def file_hash(path: str) -> str:
  h = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      h.update(block)
  return h.hexdigest()


def _check_resumable(workdir: str, config, inputs: dict | None = None) -> None:
  """Refuse to resume (or overwrite) a workdir that holds another config's run, or a
  run on other input files (``inputs``: name -> content hash)."""
  path = os.path.join(workdir, "config.json")
  if not os.path.exists(path) or not _holds_results(workdir):
    return
  with open(path) as f:
    saved = json.load(f)
  current = json.loads(config.to_json())
  if saved != current:
    changed = sorted(k for k in set(saved) | set(current) if saved.get(k) != current.get(k))
    raise UserError(f"workdir {workdir} holds a run of a different config (differs in: "
                    f"{', '.join(changed)}); choose another --workdir")
  inputs_path = os.path.join(workdir, "inputs.json")
  if inputs is not None and os.path.exists(inputs_path):
    with open(inputs_path) as f:
      saved_inputs = json.load(f)
    changed = sorted(k for k in inputs if saved_inputs.get(k) != inputs[k])
    if changed:
      raise UserError(f"workdir {workdir} holds a run on other contents of "
                      f"{', '.join(changed)}; choose another --workdir")


# What a run writes before its first result: a workdir that holds nothing else holds a
# run that stopped before it had any (a fit that failed), and nothing there to protect.
_PREAMBLE = frozenset({"config.json", "inputs.json"})


def _holds_results(workdir: str) -> bool:
  return any(name not in _PREAMBLE for name in os.listdir(workdir))


def prepare_workdir(config, workdir: str, inputs: dict | None = None) -> None:
  os.makedirs(workdir, exist_ok=True)
  _check_resumable(workdir, config, inputs)
  if sharding.is_primary():
    io.write_json_atomic(os.path.join(workdir, "config.json"), json.loads(config.to_json()))
    if inputs is not None:
      io.write_json_atomic(os.path.join(workdir, "inputs.json"), inputs)


def jit_run_steps(trainer):
  """The trainer's ``run_steps`` vmapped over runs, jitted once, donating the state."""
  return jax.jit(jax.vmap(trainer.run_steps, in_axes=(0, 0, 0, 0, None)),
                 static_argnums=4, donate_argnums=0)


def train_loop(run_steps, state, xs, parent_idx, parent_mask, config, workdir: str):
  """Chunks of compiled steps from the last checkpoint to ``train.num_steps``.

  ``run_steps`` is ``jit_run_steps(trainer)``; ``state`` has a leading runs axis.
  Returns the final state and the metric writer (its rows).
  """
  ckpt = checkpoints.Checkpointer(os.path.join(workdir, "checkpoints"))
  state = ckpt.restore_latest(state)
  step = int(sharding.to_host(state.step)[0])  # every run advances together
  if step > 0:
    logging.info("resumed from the checkpoint at step %d", step)
  total = config.train.num_steps
  chunk = config.train.checkpoint_every if config.train.checkpoint_every > 0 else total
  log = writers.MetricWriter(workdir, resume_step=step, write=sharding.is_primary())
  progress = writers.Progress(total, step)
  # The stopping rule lives in the compiled steps; the host only stops calling them
  # once every run and restart has stopped (one read per chunk).
  all_stopped = lambda st: bool(np.all(sharding.to_host(st.stop.done)))
  while step < total and not all_stopped(state):
    n = min(chunk, total - step)
    new_state, history = run_steps(state, xs, parent_idx, parent_mask, n)
    # One host read per chunk: the mean over runs and restarts of each step's metrics.
    history = jax.tree.map(lambda h: h.mean(axis=(0, 1)), sharding.to_host(history))
    bad = np.flatnonzero(~np.isfinite(history["loss"]))
    if bad.size:
      last = ckpt.latest_step()
      kept = (f"the last good checkpoint (step {last}) is kept in {workdir}/checkpoints"
              if last is not None else "no checkpoint had been saved yet")
      raise TrainingDiverged(f"non-finite loss at step {step + int(bad[0])}; stopped, {kept}")
    log.write_history(step, history, config.train.log_every, last_step=total - 1)
    state, step = new_state, step + n
    ckpt.save(step, state)
    progress.update(step, history)
  ckpt.wait()
  log.close()
  if step < total:
    used = sharding.to_host(state.stop.steps_used)
    logging.info("every run stopped by the stopping rule (log p(x) improved by less than %g "
                 "over %d steps) after %d-%d steps, of at most %d", config.train.stop_tolerance,
                 config.train.stop_window, int(used.min()), int(used.max()), total)
  return state, log
