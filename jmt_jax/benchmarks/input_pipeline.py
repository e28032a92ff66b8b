"""Does the input pipeline keep up with training? Examples/s of the Grain pipeline
(reading segment records, windowing, log-mel, augmentation, batching) beside the
examples/s the jitted train step consumes, on this machine, in one run.

  python -m jmt_jax.benchmarks.input_pipeline --config=configs/affwild2.py:jmt,synthetic \\
      --batch_size=2 --config.data.split_sizes.train=4

At the paper's shapes on a CPU the train step is the bottleneck by far; on an
accelerator the pipeline's rate per host is the number to compare with the step's.
Any config works, including a prepared dataset (`...:jmt,data_dir=DIR`).
"""

import resource
import time

import jax
import numpy as np
from absl import app
from absl import flags
from ml_collections import config_flags

from jmt_jax import library_logs
from jmt_jax import train
from jmt_jax import train_step
from jmt_jax.data import pipeline

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file[:variant].")
_BATCH = flags.DEFINE_integer("batch_size", 0, "Batch size (0: the config's).")
_BATCHES = flags.DEFINE_integer("pipeline_batches", 20, "Batches timed for the pipeline.")
_STEPS = flags.DEFINE_integer("steps", 3, "Train steps timed (after one compiling step).")
_THREADS = flags.DEFINE_multi_integer("threads", [1, 2], "Grain read threads to try.")
flags.mark_flags_as_required(["config"])


def pipeline_rate(source, batch_size, threads, num_batches, seed):
  """Examples/s of the training iterator, after two warm-up batches."""
  it = pipeline.train_iterator(source, batch_size, seed=seed, process_index=0, process_count=1,
                               read_threads=threads)
  for _ in range(2):
    batch = next(it)
  t0 = time.perf_counter()
  for _ in range(num_batches):
    batch = next(it)
  return num_batches * batch_size / (time.perf_counter() - t0), batch


def step_rate(config, batch, num_steps):
  """(examples/s, compile seconds, GFLOP per step) of the jitted train step."""
  setup = train.Setup(config, workdir=None, with_cache=False)
  state = train.initial_state(setup)
  batch = jax.device_put(batch)
  step = jax.jit(train_step.make_train_step(setup.model, setup.tx, config.task,
                                            config.train.grad_accum_steps), donate_argnums=0)
  t0 = time.perf_counter()
  compiled = step.lower(state, batch).compile()
  compile_s = time.perf_counter() - t0
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  flops = float((cost or {}).get("flops", float("nan")))
  state, logs = compiled(state, batch)
  jax.block_until_ready(logs)
  t0 = time.perf_counter()
  for _ in range(num_steps):
    state, logs = compiled(state, batch)
  jax.block_until_ready(logs)
  seconds = (time.perf_counter() - t0) / num_steps
  return len(batch["valid"]) / seconds, compile_s, flops / 1e9, seconds


def main(argv):
  del argv
  library_logs.quiet()
  config = _CONFIG.value
  batch_size = _BATCH.value or config.train.batch_size
  dataset = pipeline.open_dataset(config.data)
  source = pipeline.window_source(dataset, "train", config.input, config.model.modalities,
                                  train=True)
  shapes = {k: v.shape for k, v in source[0].items() if np.ndim(v) > 1}
  print(f"{source}; batch {batch_size}; one example: {shapes}")
  print(f"devices: {jax.devices()}")
  batch = None
  for threads in _THREADS.value:
    rate, batch = pipeline_rate(source, batch_size, threads, _BATCHES.value, config.seed)
    print(f"input pipeline, {threads} read thread(s): {rate:8.2f} examples/s")
  rate, compile_s, gflop, seconds = step_rate(config, batch, _STEPS.value)
  print(f"train step:                       {rate:8.2f} examples/s ({seconds:.2f} s/step, "
        f"{gflop:.1f} GFLOP/step = {gflop / seconds:.1f} GFLOP/s; compiled in {compile_s:.0f} s)")
  peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
  print(f"peak host memory: {peak:.0f} MiB")


if __name__ == "__main__":
  app.run(main)
