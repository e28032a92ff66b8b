"""Train or evaluate a jmt_jax model.

  python -m jmt_jax.main --config=configs/demo.py --workdir=workdirs/demo
  python -m jmt_jax.main --config=configs/demo.py --workdir=workdirs/demo --mode=eval

Running the same training command again resumes from the newest checkpoint.
Notebooks can call `jmt_jax.train.train_and_evaluate(config, workdir)` directly.
"""

import os
import sys

import jax
from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from jmt_jax import library_logs
from jmt_jax import train

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file, e.g. configs/demo.py[:variant].",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics and results.")
_MODE = flags.DEFINE_enum("mode", "train", ["train", "eval"],
                          "train: train (or resume) then evaluate; eval: evaluate the newest checkpoint.")
_SPLIT = flags.DEFINE_string("split", None, "Split to evaluate in --mode=eval (default config.eval.split).")
flags.mark_flags_as_required(["config", "workdir"])


def enable_compilation_cache(path):
  if path:
    jax.config.update("jax_compilation_cache_dir", os.path.expanduser(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  library_logs.quiet()
  config = _CONFIG.value
  enable_compilation_cache(config.get("compilation_cache_dir"))
  logging.info("Config:\n%s", config)
  try:
    if _MODE.value == "train":
      scores = train.train_and_evaluate(config, _WORKDIR.value)
    else:
      scores = train.evaluate_workdir(config, _WORKDIR.value, _SPLIT.value or config.eval.split)
  except (ValueError, KeyError, OSError, FloatingPointError) as e:
    # Bad configs, missing checkpoints or data, non-finite losses: one line, not a traceback
    # (which is still logged at --verbosity=1).
    logging.debug("Traceback:", exc_info=True)
    sys.exit(f"error: {type(e).__name__}: {e}")
  print({k: round(v, 4) if isinstance(v, float) else v for k, v in scores.items()})


if __name__ == "__main__":
  app.run(main)
