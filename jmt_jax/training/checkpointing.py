"""Orbax checkpoints of the train state together with the data iterator's position.

Restoring goes newest-first and falls back to older steps when a step cannot be read
(a crash mid-save leaves a step directory that Orbax still lists).
"""

import grain
import orbax.checkpoint as ocp
from absl import logging


def manager(directory, keep, save_interval_steps=1):
  return ocp.CheckpointManager(
      directory,
      options=ocp.CheckpointManagerOptions(max_to_keep=keep, save_interval_steps=save_interval_steps,
                                           create=True),
  )


def save(mngr, step, state, data_iterator, force=False):
  args = {"state": ocp.args.StandardSave(state)}
  if data_iterator is not None:
    args["data"] = grain.checkpoint.CheckpointSave(data_iterator)
  return mngr.save(step, args=ocp.args.Composite(**args), force=force)


def restore_latest(mngr, abstract_state, data_iterator, partial=False):
  """(step, state) from the newest readable checkpoint, or (None, None) if there is none.

  `data_iterator`, when given, is moved to the position saved with that state. With
  `partial`, `abstract_state` names a part of the saved state ({"params": ...,
  "batch_stats": ...} for inference) and only that part is read.
  """
  for step in sorted(mngr.all_steps(), reverse=True):
    if partial:
      args = {"state": ocp.args.PyTreeRestore(
          abstract_state, ocp.checkpoint_utils.construct_restore_args(abstract_state),
          partial_restore=True)}
    else:
      args = {"state": ocp.args.StandardRestore(abstract_state)}
    if data_iterator is not None:
      args["data"] = grain.checkpoint.CheckpointRestore(data_iterator)
    try:
      restored = mngr.restore(step, args=ocp.args.Composite(**args))
    except Exception as e:  # pylint: disable=broad-except
      logging.warning("Checkpoint at step %d in %s is unreadable (%s: %s); trying an older one.",
                      step, mngr.directory, type(e).__name__, str(e).splitlines()[0][:200])
      continue
    return step, restored["state"]
  return None, None
