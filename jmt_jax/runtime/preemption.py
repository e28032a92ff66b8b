"""SIGTERM (what preemptible VMs and SLURM send before killing a job) and Ctrl-C (SIGINT)
as a request to save a checkpoint at the next step boundary and stop."""

import signal
import sys
import threading

import jax
import numpy as np
from jax.experimental import multihost_utils


class Preempted(Exception):
  """Training stopped on request after saving its state; rerunning resumes it."""


class StopRequests:
  """Turns SIGTERM and a first Ctrl-C into a flag the training loop polls once per step;
  a second Ctrl-C interrupts at once (KeyboardInterrupt, nothing saved).

  All processes must stop at the same step (saving is collective), so with several
  processes the flag is OR-ed across them at every poll.
  """

  SIGNALS = {signal.SIGTERM: "SIGTERM", signal.SIGINT: "Ctrl-C"}

  def __init__(self):
    self.requested_by = None
    self._previous = {}
    if threading.current_thread() is threading.main_thread():
      self._previous = {s: signal.signal(s, self._handle) for s in self.SIGNALS}

  def _handle(self, signum, frame):
    del frame
    if signum == signal.SIGINT and self.requested_by == "Ctrl-C":
      signal.signal(signal.SIGINT, signal.default_int_handler)
      raise KeyboardInterrupt
    if self.requested_by is None:
      self.requested_by = self.SIGNALS[signum]
      if signum == signal.SIGINT:
        print("\nStopping after this step with a checkpoint (Ctrl-C again: stop now, "
              "without one).", file=sys.stderr, flush=True)

  def requested(self):
    if jax.process_count() == 1:
      return self.requested_by is not None
    flags = multihost_utils.process_allgather(np.array(self.requested_by is not None))
    if self.requested_by is None and np.any(flags):
      self.requested_by = "a signal to another process"
    return bool(np.any(flags))

  def close(self):
    for s, previous in self._previous.items():
      signal.signal(s, previous)
    self._previous = {}
