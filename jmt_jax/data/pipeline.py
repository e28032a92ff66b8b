"""Grain pipelines from prepared shards to batches of windows."""

import os
import threading
import time

import grain
import jax
import numpy as np
from absl import flags

from jmt_jax.data import clips
from jmt_jax.data import prepared
from jmt_jax.data import records
from jmt_jax.data import synthetic
from jmt_jax.data import synthetic_builder
from jmt_jax.data import windows

DEFAULT_DATA_DIR = os.path.join(os.path.expanduser("~"), ".cache", "jmt_jax", "datasets")


def open_dataset(data_config):
  """Opens the dataset that `config.data` names: the built-in one (generated on first
  use) or one written by `python -m jmt_jax.prepare`."""
  if data_config.name in prepared.DATASETS:
    return prepared.open_prepared(data_config)
  if data_config.name != "synthetic":
    raise ValueError(f"config.data.name={data_config.name!r}: use 'synthetic' or one of "
                     f"{list(prepared.DATASETS)}")
  builder = synthetic_builder.prepare(
      data_dir=data_config.data_dir or DEFAULT_DATA_DIR,
      spec=synthetic.RenderSpec(**data_config.render, **data_config.signals),
      split_sizes=tuple(data_config.split_sizes.items()),
      seed=data_config.seed,
      segment_frames=data_config.segment_frames,
  )
  meta = builder.info.metadata
  sources = records.serialized_sources(builder)
  splits = {}
  for s in data_config.split_sizes:
    table = records.SplitTable(meta[s], meta["segment_frames"], meta["rates"]["fps"])
    if data_config.get("protocol"):  # folds over one split, as prepared BioVid is read
      splits.update(prepared.fold_splits(sources[s], table, data_config.protocol))
    else:
      splits[s] = records.Split(sources[s], table, np.arange(len(table)))
  return records.Dataset(splits=splits, rates=dict(meta["rates"]),
                         frame_size=data_config.signals.frame_size,
                         directory=str(builder.data_dir))


def window_source(dataset, split, input_config, modalities, train):
  """Windows of `split`: overlapping full windows for training, frame-covering ones for eval."""
  if split not in dataset.splits:
    raise ValueError(f"no split {split!r} in this dataset (it has {sorted(dataset.splits)})")
  part = dataset.splits[split]
  table = part.table
  clip, num_clips = input_config.clip_frames, input_config.num_clips
  if train:
    w = windows.train_windows(table.num_frames, part.recordings, clip, num_clips,
                              input_config.train_stride)
  else:
    w = windows.eval_windows(table.num_frames, part.recordings, clip, num_clips)
  pain_classes = input_config.get("pain_classes")
  if pain_classes:
    w = w[np.isin(table.pain[w[:, 0]], pain_classes)]
  if not len(w):
    raise ValueError(f"split {split!r} has no windows of {num_clips} clips of {clip} frames"
                     + (f" with pain in {list(pain_classes)}" if pain_classes else ""))
  specs = {m: input_config.modalities[m].to_dict() for m in modalities}
  augment_config = input_config.get("augment", {}) if train else {}
  return windows.WindowSource(store(dataset, split), w, clip_frames=clip, num_clips=num_clips,
                              modalities=specs, pain_classes=pain_classes,
                              augment_config=dict(augment_config))


def store(dataset, split):
  """The `clips.ShardStore` of the records `split` of `dataset` is read from."""
  part = dataset.splits[split]
  return clips.ShardStore(part.source, part.table, dataset.rates, dataset.frame_size)


def process_slice(source, process_index, process_count):
  """This process's share of a random-access source (every `process_count`-th item)."""
  return grain.MapDataset.source(source)[process_index::process_count]


def default_workers(cores=None, backend=None):
  """Grain worker processes when config.train.read_workers is -1: none where the train
  step itself runs on the host's cores (the CPU backend) and would compete with them;
  otherwise all cores but one (for the training loop), at most 32."""
  cores = cores or os.cpu_count() or 1
  backend = backend or jax.default_backend()
  return 0 if backend == "cpu" else min(32, max(1, cores - 1))


def _exit_with_parent(worker_index, worker_count):
  """Grain worker start-up: exit when the training process is gone. A SIGKILLed trainer
  cannot stop its workers, and orphans would hold their memory (and its output pipes)."""
  del worker_index, worker_count
  parent = os.getppid()

  def watch():
    while os.getppid() == parent:
      time.sleep(1)
    os._exit(1)  # pylint: disable=protected-access

  threading.Thread(target=watch, daemon=True, name="exit_with_parent").start()


def train_iterator(source, batch_size, seed, process_index, process_count, read_threads,
                   workers=0):
  """Endless shuffled, augmented batches of `batch_size` for this process; its state goes
  into checkpoints. With `workers` > 0, batches are made in that many Grain worker
  processes (each with `read_threads` threads); the state still fixes every later batch.

  The global stream is cut into batches and process p takes batches p, p + count, ...:
  process-local batches laid side by side in process order form exactly the global batch
  a single process would read, and augmentation is drawn from `seed` and each example's
  global position, so runs on any number of processes see the same data, and the
  iterator's saved position alone fixes every later batch.
  """
  ds = grain.MapDataset.source(source).shuffle(seed=seed).repeat()
  if source.augment_config:
    ds = ds.random_map(source.augment, seed=seed + 1)
  ds = ds.batch(batch_size, drop_remainder=True)[process_index::process_count]
  options = grain.ReadOptions(num_threads=read_threads, prefetch_buffer_size=2)
  ds = ds.to_iter_dataset(options)
  if workers > 0:
    if not flags.FLAGS.is_parsed():  # Grain's workers read its absl flags (tests, notebooks)
      flags.FLAGS.mark_as_parsed()
    ds = ds.mp_prefetch(grain.MultiprocessingOptions(num_workers=workers),
                        worker_init_fn=_exit_with_parent)
  return iter(ds)


def eval_batches(dataset, batch_size, read_threads, num_batches):
  """`num_batches` batches of every item in order; short or missing batches are padded
  with all-zero items whose `valid` is 0, so every batch has the same shape."""
  options = grain.ReadOptions(num_threads=read_threads, prefetch_buffer_size=2 * batch_size)
  template = None
  batches = iter(dataset.to_iter_dataset(options).batch(batch_size))
  for _ in range(num_batches):
    batch = next(batches, None)
    if batch is None:
      batch = {k: v[:0] for k, v in template.items()}
    template = batch
    n = len(batch["valid"])
    if n < batch_size:
      batch = {k: np.concatenate([v, np.zeros((batch_size - n,) + v.shape[1:], v.dtype)])
               for k, v in batch.items()}
    yield batch
