"""SIGTERM (what preemptible VMs and SLURM send before killing a job) as a request to
save a checkpoint at the next step boundary and stop."""

import signal
import threading

import jax
import numpy as np
from jax.experimental import multihost_utils


class Preempted(Exception):
  """Training stopped on request after saving its state; rerunning resumes it."""


class StopRequests:
  """Turns SIGTERM into a flag the training loop polls once per step.

  All processes must stop at the same step (saving is collective), so with several
  processes the flag is OR-ed across them at every poll.
  """

  def __init__(self):
    self._requested = False
    self._previous = None
    if threading.current_thread() is threading.main_thread():
      self._previous = signal.signal(signal.SIGTERM, self._handle)

  def _handle(self, signum, frame):
    del signum, frame
    self._requested = True

  def requested(self):
    if jax.process_count() == 1:
      return self._requested
    flags = multihost_utils.process_allgather(np.array(self._requested))
    return bool(np.any(flags))

  def close(self):
    if self._previous is not None:
      signal.signal(signal.SIGTERM, self._previous)
      self._previous = None
