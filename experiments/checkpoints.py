"""Orbax checkpoints of the train state in ``workdir/checkpoints``."""
from __future__ import annotations

import jax


class Checkpointer:
  """Saves the latest states (two kept) and restores the newest one against a template.
  (orbax is imported by the first one made: a run without checkpoints, and every
  command's start-up, go without its 0.13 s import.)"""

  def __init__(self, directory: str, max_to_keep: int = 2):
    import orbax.checkpoint as ocp
    self._ocp = ocp
    self._mgr = ocp.CheckpointManager(
        directory, options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep))

  def latest_step(self):
    return self._mgr.latest_step()

  def save(self, step: int, state) -> None:
    self._mgr.save(step, args=self._ocp.args.StandardSave(state))

  def restore_latest(self, template):
    """The newest saved state, or ``template`` itself when there is none."""
    step = self._mgr.latest_step()
    if step is None:
      return template
    abstract = jax.tree.map(self._ocp.utils.to_shape_dtype_struct, template)
    return self._mgr.restore(step, args=self._ocp.args.StandardRestore(abstract))

  def wait(self) -> None:
    self._mgr.wait_until_finished()
