"""Joining a multi-process JAX cluster before any device is touched.

On TPU pods and under SLURM, `jax.distributed.initialize()` finds the coordinator, the
process count and this process's index by itself (`--distributed`). Elsewhere (several
processes on one machine, hand-rolled clusters) they are given explicitly. CPU devices
talk through gloo, so the same multi-process run also works on a CPU-only machine.
"""

import jax
from absl import logging


def initialize(auto=False, coordinator_address="", num_processes=0, process_id=-1):
  """Joins the cluster described by the arguments; does nothing for a single process."""
  explicit = bool(coordinator_address) or num_processes > 0 or process_id >= 0
  if not (auto or explicit):
    return
  if explicit and not (coordinator_address and num_processes > 0 and process_id >= 0):
    raise ValueError("a multi-process run needs all of --coordinator_address, --num_processes "
                     "and --process_id (or --distributed to detect them on TPU pods and SLURM)")
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  if explicit:
    jax.distributed.initialize(coordinator_address=coordinator_address,
                               num_processes=num_processes, process_id=process_id)
  else:
    jax.distributed.initialize()
  logging.info("Process %d of %d; %d local and %d global devices.", jax.process_index(),
               jax.process_count(), jax.local_device_count(), jax.device_count())
