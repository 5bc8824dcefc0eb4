"""Orbax checkpoints of the train state in ``workdir/checkpoints``."""
from __future__ import annotations

import jax
import orbax.checkpoint as ocp


class Checkpointer:
  """Saves the latest states (two kept) and restores the newest one against a template."""

  def __init__(self, directory: str, max_to_keep: int = 2):
    self._mgr = ocp.CheckpointManager(
        directory, options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep))

  def latest_step(self):
    return self._mgr.latest_step()

  def save(self, step: int, state) -> None:
    self._mgr.save(step, args=ocp.args.StandardSave(state))

  def restore_latest(self, template):
    """The newest saved state, or ``template`` itself when there is none."""
    step = self._mgr.latest_step()
    if step is None:
      return template
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, template)
    return self._mgr.restore(step, args=ocp.args.StandardRestore(abstract))

  def wait(self) -> None:
    self._mgr.wait_until_finished()
