"""What every jmt_jax command line does around its work: the compilation cache, joining
a multi-process cluster, and user errors reported in one line."""

import os
import sys

import jax
from absl import flags
from absl import logging

from jmt_jax import distributed
from jmt_jax import library_logs
from jmt_jax import preemption
from jmt_jax.prepare.errors import BadInput

_DISTRIBUTED = flags.DEFINE_bool(
    "distributed", False, "Join a multi-process cluster detected from the environment "
    "(TPU pod workers, SLURM tasks).")
_COORDINATOR = flags.DEFINE_string("coordinator_address", "", "host:port of process 0, for "
                                   "a multi-process run set up by hand.")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", 0, "Processes in the run set up by hand.")
_PROCESS_ID = flags.DEFINE_integer("process_id", -1, "This process's index in that run.")

# Bad configs, missing checkpoints or data, unusable input files, non-finite losses: one
# line, not a traceback (which is still logged at --verbosity=1).
USER_ERRORS = (ValueError, KeyError, OSError, FloatingPointError, BadInput)


def enable_compilation_cache(path):
  if path:
    jax.config.update("jax_compilation_cache_dir", os.path.expanduser(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)


def run(config, work):
  """Sets up the process for `config` and returns `work()`; exits with a one-line message
  on a user error, and with status 75 (EX_TEMPFAIL: rerun to resume) after a SIGTERM."""
  library_logs.quiet()
  if config is not None:  # else `work` reads its config and enables the cache itself
    enable_compilation_cache(config.get("compilation_cache_dir"))
  try:
    distributed.initialize(_DISTRIBUTED.value, _COORDINATOR.value, _NUM_PROCESSES.value,
                           _PROCESS_ID.value)
    return work()
  except preemption.Preempted as e:
    logging.info("%s", e)
    print(f"preempted: {e}", file=sys.stderr)
    sys.exit(75)
  except USER_ERRORS as e:
    logging.debug("Traceback:", exc_info=True)
    sys.exit(f"error: {type(e).__name__}: {e}")
