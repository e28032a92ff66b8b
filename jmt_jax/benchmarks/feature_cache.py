"""Per-epoch training time with frozen backbones: running them every step against
reading their embeddings from the feature cache, side by side in one run, plus the
one-time cost of extracting the cache.

  python -m jmt_jax.benchmarks.feature_cache --config=configs/affwild2.py:jmt,synthetic \\
      --config.model.freeze_backbones=true --config.data.split_sizes.train=2 \\
      --config.data.split_sizes.validation=1 --config.train.batch_size=4 --cache_dir=/tmp/cache

An epoch is one pass over the training windows (input pipeline included, compilation
excluded). Augmentation is off in both, since cached clips cannot be augmented.
Extraction embeds each clip the training windows use once (they reuse each clip up to
`num_clips` times per epoch), and every frame of the evaluation splits: about what one
end-to-end evaluation of them costs.
"""

import resource
import tempfile
import time

import jax
from absl import flags
from ml_collections import config_flags

from jmt_jax import experiment
from jmt_jax.data import pipeline
from jmt_jax.features import cache
from jmt_jax.features import extract
from jmt_jax.models import model as model_lib
from jmt_jax.runtime import cli
from jmt_jax.runtime import compiler
from jmt_jax.runtime import library_logs
from jmt_jax.training import train
from jmt_jax.training import train_step
from jmt_jax.weights import init_from

FLAGS = flags.FLAGS


def epoch_seconds(config, model, tx, state):
  """(seconds for one epoch, steps) of the jitted train step over `config`'s training
  data (from its feature cache when it names one)."""
  data = experiment.Data(config)
  source = data.source("train", train=True)
  batch_size = config.train.batch_size
  steps = max(1, len(source) // batch_size)
  step = compiler.jit(train_step.make_train_step(model, tx, config.task,
                                            config.train.grad_accum_steps,
                                            data.from_embeddings),
                      fusion_only=data.from_embeddings, donate_argnums=0)
  it = pipeline.train_iterator(source, batch_size, seed=config.seed, process_index=0,
                               process_count=1, read_threads=config.train.read_threads)
  state, logs = step(state, jax.device_put(next(it)))  # compiles
  jax.block_until_ready(logs)
  t0 = time.perf_counter()
  for _ in range(steps):
    state, logs = step(state, jax.device_put(next(it)))
  jax.block_until_ready(logs)
  return time.perf_counter() - t0, steps


def main(argv):
  del argv
  library_logs.quiet()
  config = FLAGS.config
  config.model.freeze_backbones = True
  config.input.augment = {}
  config.feature_cache = FLAGS.cache_dir or tempfile.mkdtemp(prefix="jmt_jax_features_")
  plain = config.copy_and_resolve_references()
  plain.feature_cache = ""
  model = model_lib.build_model(plain)
  tx = train.make_optimizer(plain.optimizer, plain.train.num_steps, True)
  print(f"devices: {jax.devices()}")

  index = extract.extract(plain, model, init_from.starting_variables(model, plain),
                          config.feature_cache)
  e2e_s, steps = epoch_seconds(plain, model, tx, train.initial_state(model, tx, plain, None))
  cache_s, _ = epoch_seconds(config, model, tx, train.initial_state(model, tx, plain, None))
  print(f"one epoch = {steps} steps of batch {config.train.batch_size}")
  print(f"frozen backbones run every step: {e2e_s:9.2f} s/epoch")
  print(f"embeddings from the cache:       {cache_s:9.2f} s/epoch ({e2e_s / cache_s:.0f}x faster)")
  for name, seconds in index["seconds"].items():
    clips = sum(len(cache.unruns(r["ends"]))
                for r in index["stores"][name].values())
    print(f"extracting {name} (once): {seconds:9.1f} s for {clips} clips")
  peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
  print(f"peak host memory: {peak:.0f} MiB")


def _define_flags():
  config_flags.DEFINE_config_file("config", None, "Config file[:variant].",
                                  lock_config=False)
  flags.DEFINE_string("cache_dir", "", "Where to extract the cache (default: a "
                      "temporary directory).")
  flags.mark_flags_as_required(["config"])


if __name__ == "__main__":
  cli.app_run(main, _define_flags)
