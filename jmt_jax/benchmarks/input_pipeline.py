"""Does the input pipeline keep up with an accelerator? Host time per training example,
its breakdown, bytes on disk per frame, and the train step's consumption, in one run.

  python -m jmt_jax.benchmarks.input_pipeline --config=configs/affwild2.py:jmt,synthetic \\
      --config.model.freeze_backbones=True
  python -m jmt_jax.benchmarks.input_pipeline --config=configs/biovid.py:jmt,synthetic

Prints:
- examples/s of the training iterator on one core (no worker process, one read thread)
  and with all cores (one Grain worker process per core);
- host seconds per example, split into read (ArrayRecord reads and record parsing),
  decode (JPEG), assemble (clip windows cut from what was read), augment (drawing the
  parameters the model applies on the device) and batch (stacking a batch);
- bytes on disk per frame (JPEG frames, signals, whole shards) and, as a yardstick for
  real faces, the size and pixel error of a 112x112 crop of the portrait photograph that
  matplotlib ships, encoded as the preparation encodes frames;
- the jitted train step's examples/s and FLOPs per example here, and from them the host
  cores a named accelerator would need (an estimate from published peak FLOP/s at an
  assumed utilisation, unless the step was measured on that accelerator).
"""

import glob
import os
import resource
import time

import cv2
import jax
import matplotlib.cbook
import numpy as np
from absl import flags
from ml_collections import config_flags

from jmt_jax.benchmarks import step_timing
from jmt_jax.data import augment
from jmt_jax.data import clips
from jmt_jax.data import pipeline
from jmt_jax.data import records
from jmt_jax.runtime import cli
from jmt_jax.runtime import library_logs

FLAGS = flags.FLAGS

# Published dense peak FLOP/s of accelerators, by the dtype the paper configs train in on
# them (bfloat16), and the utilisation assumed for the estimate.
PEAKS = {"NVIDIA H100 SXM (bf16)": 989e12, "NVIDIA A100 (bf16)": 312e12,
         "Google TPU v5e (bf16)": 197e12}
ASSUMED_MFU = 0.4


class TimedStore(clips.ShardStore):
  """A `clips.ShardStore` that adds up the seconds it spends reading and decoding."""

  def __init__(self, store):
    super().__init__(store.source, store.table, store.rates, store.frame_size)
    self.seconds = {"read": 0.0, "decode": 0.0}

  def fetch(self, recording, frames):
    t0 = time.perf_counter()
    out = super().fetch(recording, frames)
    self.seconds["read"] += time.perf_counter() - t0
    return out

  def read_frames(self, recording, frames, decode=True):
    t0 = time.perf_counter()
    read_before = self.seconds["read"]
    out = super().read_frames(recording, frames, decode)
    self.seconds["decode"] += time.perf_counter() - t0 - (self.seconds["read"] - read_before)
    return out

  def read_signal(self, recording, key, lo, hi):
    t0 = time.perf_counter()
    out = super().read_signal(recording, key, lo, hi)
    self.seconds["read"] += time.perf_counter() - t0
    return out


def breakdown(source, num_examples, batch_size, seed):
  """Host seconds per example by stage, on this thread (one core)."""
  original = source.store
  timed = source.store = TimedStore(original)
  rng = np.random.default_rng(seed)
  order = rng.permutation(len(source))[:num_examples]
  t0 = time.perf_counter()
  examples = [source[int(i)] for i in order]
  total = time.perf_counter() - t0
  t0 = time.perf_counter()
  for _ in examples:
    augment.draw(rng, source.num_clips, **source.augment_config)
  seconds = dict(timed.seconds)
  seconds["augment"] = time.perf_counter() - t0
  seconds["assemble"] = total - seconds["read"] - seconds["decode"]
  t0 = time.perf_counter()
  for first in range(0, len(examples) - batch_size + 1, batch_size):
    part = examples[first:first + batch_size]
    jax.tree.map(lambda *x: np.stack(x), *part)
  seconds["batch"] = time.perf_counter() - t0
  source.store = original
  return {k: v / len(examples) for k, v in seconds.items()}


def iterator_rate(source, batch_size, workers, num_examples, seed):
  """Examples/s of the training iterator with `workers` processes, after warm-up."""
  it = pipeline.train_iterator(source, batch_size, seed=seed, process_index=0, process_count=1,
                               read_threads=1, workers=workers)
  for _ in range(max(2, workers)):  # workers start and fill their buffers
    batch = next(it)
  num_batches = max(1, num_examples // batch_size)
  t0 = time.perf_counter()
  for _ in range(num_batches):
    batch = next(it)
  return num_batches * batch_size / (time.perf_counter() - t0), batch


def disk_bytes(dataset, split):
  """(JPEG bytes per frame, signal bytes per frame, shard bytes per frame) of `split`;
  the shard files are smaller than their records, which ArrayRecord compresses."""
  store = pipeline.store(dataset, split)
  table = store.table
  frames = int(table.num_frames.sum())
  n = len(table)
  jpeg = sum(len(r["jpeg"]) for i in range(n)
             for r in store.fetch(i, np.arange(table.num_frames[i])))
  signals = sum(store.read_signal(i, key, 0, records.sample_at(
      table.num_frames[i], store.rates[records.RATE_KEYS[key]], store.fps(i))).nbytes
                for i in range(n) for key in store.signals)
  info = store.source.dataset_info
  shard = sum(os.path.getsize(p) for p in glob.glob(
      os.path.join(info.data_dir, f"{info.name}-{store.source.split}.array_record*")))
  return jpeg / frames, signals / frames, shard / frames


def photo_frame():
  """(bytes, mean abs error) of a 112x112 face crop of matplotlib's portrait photograph as
  the preparation encodes frames."""
  with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as f:
    image = cv2.imdecode(np.frombuffer(f.read(), np.uint8), cv2.IMREAD_COLOR)[..., ::-1]
  face = cv2.resize(image[100:320, 150:370], (112, 112), interpolation=cv2.INTER_AREA)
  data = records.encode_frame(face)
  error = np.abs(records.decode_frames([data], 112)[0].astype(int) - face).mean()
  return len(data), error


def step_rate(config, batch, num_steps):
  """(examples/s, compile seconds, GFLOP per step, seconds per step) of the train step."""
  step = step_timing.compile_step(config, batch)
  seconds = step.time(num_steps)
  return len(batch["valid"]) / seconds, step.compile_s, step.flops / 1e9, seconds


def main(argv):
  del argv
  library_logs.quiet()
  config = FLAGS.config
  batch_size = FLAGS.batch_size
  cores = os.cpu_count() or 1
  dataset = pipeline.open_dataset(config.data)
  source = pipeline.window_source(dataset, "train", config.input, config.model.modalities,
                                  train=True)
  shapes = {k: (v.shape, v.dtype.name) for k, v in source[0].items() if np.ndim(v) > 1}
  print(f"{source}; batch {batch_size}; one example: {shapes}")
  print(f"host: {cores} cores; devices: {jax.devices()}")

  jpeg, signal, shard = disk_bytes(dataset, "train")
  print(f"disk per frame: JPEG {jpeg / 1e3:.2f} KB, signals {signal / 1e3:.2f} KB, "
        f"whole shards {shard / 1e3:.2f} KB (ArrayRecord compresses records)")
  photo, error = photo_frame()
  print(f"a 112x112 photographic face crop, as {records.ENCODING}: "
        f"{photo / 1e3:.2f} KB, mean abs pixel error {error:.2f}")

  seconds = breakdown(source, FLAGS.examples, batch_size, config.seed)
  total = sum(seconds.values())
  print(f"host ms per example (one core): {total * 1e3:.1f} = " + ", ".join(
      f"{k} {v * 1e3:.1f}" for k, v in seconds.items()))
  rate, batch = iterator_rate(source, batch_size, 0, FLAGS.examples, config.seed)
  print(f"input pipeline, one core (no worker process): {rate:8.1f} examples/s")
  workers = FLAGS.workers or cores
  rate_all, _ = iterator_rate(source, batch_size, workers, 2 * FLAGS.examples, config.seed)
  print(f"input pipeline, {workers} worker processes:      {rate_all:8.1f} examples/s")
  peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
  print(f"peak host memory of this process: {peak:.0f} MiB")
  if not FLAGS.steps:
    return
  batch = jax.tree.map(lambda x: x[:batch_size], batch)
  step_examples, compile_s, gflop, step_s = step_rate(config, batch, FLAGS.steps)
  per_example = gflop / batch_size
  print(f"train step on {jax.devices()[0].device_kind}: {step_examples:8.2f} examples/s "
        f"({step_s:.2f} s/step, {gflop:.1f} GFLOP/step = {gflop / step_s:.1f} GFLOP/s, "
        f"{per_example:.0f} GFLOP/example; compiled in {compile_s:.0f} s)")
  print(f"pipeline / step here: {rate / step_examples:.0f}x on one core")
  for name, flops in PEAKS.items():
    wanted = ASSUMED_MFU * flops / (per_example * 1e9)
    print(f"estimate, {name} at {ASSUMED_MFU:.0%} utilisation: {wanted:.0f} examples/s, "
          f"{wanted / rate:.1f} host cores at this core's rate")


def _define_flags():
  config_flags.DEFINE_config_file("config", None, "Config file[:variant].")
  flags.DEFINE_integer("batch_size", 4, "Batch size of the pipeline and the step.")
  flags.DEFINE_integer("examples", 48, "Examples timed per measurement.")
  flags.DEFINE_integer("steps", 2, "Train steps timed (after one compiling step; 0: none).")
  flags.DEFINE_integer("workers", 0, "Grain workers for 'all cores' (0: one per core).")
  flags.mark_flags_as_required(["config"])


if __name__ == "__main__":
  cli.app_run(main, _define_flags)
