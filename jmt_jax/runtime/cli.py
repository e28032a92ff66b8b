"""What every jmt_jax command line does around its work: the compilation cache, joining
a multi-process cluster, and user errors reported in one line."""

import ast
import contextlib
import os
import sys

import jax
from absl import app
from absl import flags
from absl import logging

from jmt_jax import config_args
from jmt_jax.errors import BadInput
from jmt_jax.runtime import distributed
from jmt_jax.runtime import library_logs
from jmt_jax.runtime import preemption

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
  on a user error, with status 75 (EX_TEMPFAIL: rerun to resume) after training stopped
  on SIGTERM or Ctrl-C, and with 130 on an interruption elsewhere."""
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
  except KeyboardInterrupt:
    print("interrupted (Ctrl-C)", file=sys.stderr)
    sys.exit(130)


def _config_flag(arg):
  """`--config=PATH[:ARG]` with PATH found as `config_args.find` finds it."""
  name, sep, spec = arg.partition("=")
  if name in ("--config", "-config") and sep:
    return f"{name}={config_args.find(spec)}"
  return arg


def _one_line(e):
  lines = [line.strip() for line in str(e).splitlines() if line.strip()]
  if any(line.startswith("Traceback") for line in lines):
    return lines[-1]  # a config file's get_config failed: its exception is the last line
  if isinstance(e, (AttributeError, KeyError)):  # ConfigDict, from a --config.* override
    text = str(e)
    with contextlib.suppress(ValueError, SyntaxError):
      text = ast.literal_eval(text)  # ConfigDict quotes the KeyError's message
    return f"a --config.* override names a field the config does not have: {' '.join(text.split())}"
  return " ".join(lines)


def parse_flags(argv):
  """absl's flag parsing, a user's mistake (an unknown, misspelled or missing flag, a
  config file that is not there, a config field or argument that does not exist) said in
  one `error:` line rather than a traceback or the usage text; asked for (--help), the
  usage text with exit status 0 (absl's is 1)."""
  try:
    return flags.FLAGS([argv[0]] + [_config_flag(a) for a in argv[1:]])
  except (flags.Error, AttributeError, TypeError) + USER_ERRORS as e:
    sys.exit(f"error: {_one_line(e)}")
  except SystemExit:
    if any(a in _HELP for a in argv[1:]):
      sys.exit(0)
    raise


_HELP = ("--help", "-help", "--helpshort", "--helpfull", "-?")


def app_run(main, define_flags):
  """`app.run(main)` after `define_flags()` (a command line defines its flags only when
  run, so that any module imports beside any other), with `parse_flags`, and usage errors
  in one line too."""
  define_flags()

  def checked(argv):
    try:
      return main(argv)
    except app.UsageError as e:
      sys.exit(f"error: {e}")

  app.run(checked, flags_parser=parse_flags)
