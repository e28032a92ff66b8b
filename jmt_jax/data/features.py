"""Frozen-backbone feature cache: backbone embeddings computed once, read by training.

With frozen backbones (the paper's Aff-Wild2 setting) a clip's embedding never changes,
so every clip a window can hold is embedded once:

  python -m jmt_jax.data.extract_features --config=configs/affwild2.py:init_from=weights/affwild2,feature_cache=DIR

The clips stored are those the windows use: on the training split, the clip ends of the
training windows (one frame in `clip_frames` on Aff-Wild2); on the others, every frame
(one prediction per frame); on a split that cross-validation folds, both. Per recording,
its clip ends (ascending) are cut into chunks of `CHUNK`; a chunk's embeddings and the
labels of its frames are one ArrayRecord record, an uncompressed .npz (no protobuf to
parse). `index.json`, written last, says which ends each recording has and where its
chunks are, and fingerprints what the embeddings depend on: the backbone weights and the
input, backbone and data config. Training with `feature_cache=DIR` refuses a cache whose
fingerprints differ.

Windows read from the cache are never augmented: an augmented clip would need its own
embedding. Everything else (windows, order, labels) is what the raw-input path reads.
"""

import hashlib
import io
import json
import os
import time

import grain
import jax
import numpy as np
from absl import logging
from array_record.python.array_record_module import ArrayRecordWriter
from jax.experimental import multihost_utils

from jmt_jax import config_common as cc
from jmt_jax.data import clips as clips_lib
from jmt_jax.data import pipeline
from jmt_jax.data import windows as windows_lib
from jmt_jax.models import model as model_lib
from jmt_jax.training import train_step

CHUNK = 128  # clip ends per stored record
EMBED_BATCH = 16  # clips per backbone call while extracting
INDEX = "index.json"
VERSION = 2  # 2: the built-in data's frames are JPEG (records.FORMAT 2)


def _json(config_dict):
  return json.dumps(config_dict.to_dict() if hasattr(config_dict, "to_dict") else config_dict,
                    sort_keys=True, default=str)


def _input_fingerprint(config):
  """What the cached embeddings depend on, besides the backbone weights."""
  # How a backbone is computed (config_common.COMPUTE) changes no embedding.
  backbones = {m: {k: v for k, v in config.model.backbones[m].items() if k not in cc.COMPUTE}
               for m in config.model.modalities}
  data = dict(config.data)
  data.pop("data_dir", None)
  data.pop("protocol", None)  # a BioVid fold picks recordings; their embeddings are the same
  return hashlib.sha256("|".join([
      _json({k: v for k, v in config.input.items() if k != "augment"}),
      _json(backbones), _json(data),
      model_lib.resolve_compute_dtype(config.compute_dtype)]).encode()).hexdigest()


def backbone_fingerprint(params, batch_stats):
  """SHA-256 of the backbones' parameters and BatchNorm statistics."""
  groups = {c: {k: v for k, v in tree.items() if model_lib.is_backbone(k)}
            for c, tree in (("params", params), ("batch_stats", batch_stats))}
  flat = jax.tree_util.tree_flatten_with_path(multihost_utils.process_allgather(groups,
                                                                                 tiled=True))[0]
  h = hashlib.sha256()
  for path, leaf in flat:
    h.update(jax.tree_util.keystr(path).encode())
    h.update(np.ascontiguousarray(np.asarray(leaf, np.float32)).tobytes())
  return h.hexdigest()


def clips_to_cache(dataset, input_config):
  """{id(stored split): (a split name, {recording: ascending clip ends})} of every clip a
  training or evaluation window of `dataset` uses."""
  clip, clips = input_config.clip_frames, input_config.num_clips
  readers = {}
  for name, part in dataset.splits.items():
    readers.setdefault(id(part.source), []).append((name, part))
  out = {}
  for key, splits in readers.items():
    table = splits[0][1].table
    if len(splits) > 1:  # folds over one stored split: any recording may train or evaluate
      everything = np.arange(len(table))
      kinds = [(everything, True), (everything, False)]
    else:
      kinds = [(splits[0][1].recordings, splits[0][0] == "train")]
    ends = {}
    for recordings, train in kinds:
      w = (windows_lib.train_windows(table.num_frames, recordings, clip, clips,
                                     input_config.train_stride)
           if train else windows_lib.eval_windows(table.num_frames, recordings, clip, clips))
      for r in np.unique(w[:, 0]):
        e = clips_lib.clip_ends(w[w[:, 0] == r, 1], clip, clips).reshape(-1)
        ends[int(r)] = np.union1d(ends.get(int(r), np.zeros(0, np.int64)), e)
    out[key] = (splits[0][0], ends)
  return out


def runs_of(ends):
  """Ascending integers as [start, stop, step] runs (arange(start, stop, step) each)."""
  runs, i = [], 0
  while i < len(ends):
    step = int(ends[i + 1] - ends[i]) if i + 1 < len(ends) else 1
    j = i + 1
    while j < len(ends) and ends[j] - ends[j - 1] == step:
      j += 1
    runs.append([int(ends[i]), int(ends[j - 1]) + step, step])
    i = j
  return runs


def unruns(runs):
  return np.concatenate([np.arange(*r) for r in runs]) if runs else np.zeros(0, np.int64)


def clip_batches(inputs):
  """(1, EMBED_BATCH, ...) batches of per-clip inputs, the last zero-padded: one compiled
  shape for all, and little padding when a recording has few clips."""
  n = len(next(iter(inputs.values())))
  for first in range(0, n, EMBED_BATCH):
    yield {m: np.concatenate([x[first:first + EMBED_BATCH], np.zeros(
        (max(0, first + EMBED_BATCH - n),) + x.shape[1:], x.dtype)])[None]
           for m, x in inputs.items()}


def _encode(arrays):
  buf = io.BytesIO()
  np.savez(buf, **arrays)
  return buf.getvalue()


def extract(config, model, variables, out_dir):
  """Writes the cache of every split of `config.data` to `out_dir`, embedding with the
  backbones in `variables` ({params, batch_stats}: as training starts, random or
  `init_from`)."""
  if not config.model.get("freeze_backbones"):
    raise ValueError("a feature cache needs frozen backbones (config.model.freeze_backbones): "
                     "fine-tuned backbones change their embeddings every step")
  if jax.process_count() > 1:
    raise ValueError("extract the feature cache in one process (without --distributed); "
                     "training on any number of processes reads it")

  dataset = pipeline.open_dataset(config.data)

  @jax.jit
  def embed(batch):
    return model.apply(train_step.inference_variables(model, variables["params"],
                                                      variables["batch_stats"]),
                       batch, method=model.embed)

  os.makedirs(out_dir, exist_ok=True)
  stores = clips_to_cache(dataset, config.input)
  files = {key: f"{name}.array_record" for name, part in reversed(dataset.splits.items())
           for key in [id(part.source)]}
  specs = {m: config.input.modalities[m].to_dict() for m in config.model.modalities}
  index = {"version": VERSION, "chunk": CHUNK, "input": _input_fingerprint(config),
           "backbones": backbone_fingerprint(variables["params"], variables["batch_stats"]),
           "splits": {s: files[id(p.source)] for s, p in dataset.splits.items()},
           "stores": {}, "seconds": {}}
  for key, (split, ends) in stores.items():
    t0 = time.time()
    store = pipeline.store(dataset, split)
    writer = ArrayRecordWriter(os.path.join(out_dir, files[key]), "group_size:1")
    recordings, num_records = {}, 0
    for r in sorted(ends):
      chunks = []
      for first in range(0, len(ends[r]), CHUNK):
        chunk_ends = ends[r][first:first + CHUNK]
        clips = clips_lib.read_clips(store, r, chunk_ends, specs, config.input.clip_frames)
        parts = [jax.device_get(embed(batch))
                 for batch in clip_batches({m: clips[m] for m in config.model.modalities})]
        record = {m: np.concatenate([p[m][0] for p in parts])[:len(chunk_ends)]
                  .astype(np.float32) for m in parts[0]}
        record.update(valence=clips["valence"], arousal=clips["arousal"])
        writer.write(_encode(record))
        chunks.append(num_records)
        num_records += 1
      recordings[store.table.names[r]] = {"ends": runs_of(ends[r]), "chunks": chunks}
    writer.close()
    index["stores"][files[key]] = recordings
    index["seconds"][files[key]] = round(time.time() - t0, 1)
    logging.info("Cached %s: %d recordings, %d clips in %.1fs.", files[key], len(recordings),
                 sum(len(e) for e in ends.values()), time.time() - t0)
  tmp = os.path.join(out_dir, INDEX + ".tmp")
  with open(tmp, "w") as f:
    json.dump(index, f)
  os.replace(tmp, os.path.join(out_dir, INDEX))  # the index last: no index, no cache
  return index


def _how_to_extract(directory):
  return (f"extract it first with: python -m jmt_jax.data.extract_features --config=<the same "
          f"config, with feature_cache={directory}>")


class FeatureCache:
  """An extracted cache, opened for training or evaluation with `config`."""

  def __init__(self, config):
    self.directory = os.path.expanduser(config.feature_cache)
    path = os.path.join(self.directory, INDEX)
    if not os.path.exists(path):
      raise FileNotFoundError(f"no feature cache in {self.directory}: "
                              + _how_to_extract(self.directory))
    with open(path) as f:
      self.index = json.load(f)
    if self.index.get("version") != VERSION or self.index["input"] != _input_fingerprint(config):
      raise ValueError(f"the feature cache in {self.directory} was extracted with other "
                       f"backbones, inputs or data than this config: "
                       + _how_to_extract(self.directory))
    self.modalities = tuple(config.model.modalities)
    self._sources = {}

  def check_backbones(self, params, batch_stats):
    if backbone_fingerprint(params, batch_stats) != self.index["backbones"]:
      raise ValueError(f"the feature cache in {self.directory} was extracted with other "
                       f"backbone weights than this run's: " + _how_to_extract(self.directory))

  def source(self, split, window_source):
    """The windows of `window_source` (of `split`), read from the cache."""
    if split not in self.index["splits"]:
      raise ValueError(f"the feature cache in {self.directory} has no split {split!r}: "
                       + _how_to_extract(self.directory))
    file_name = self.index["splits"][split]
    if file_name not in self._sources:
      self._sources[file_name] = grain.sources.ArrayRecordDataSource(
          [os.path.join(self.directory, file_name)])
    return CachedWindowSource(window_source, self._sources[file_name],
                              self.index["stores"][file_name], self.index["chunk"],
                              self.modalities)


class CachedWindowSource:
  """A `windows.WindowSource`'s windows with backbone embeddings in place of inputs:
  `example["embeddings"][modality]` is (num_clips, D)."""

  def __init__(self, window_source, records, recordings, chunk, modalities):
    self.windows = window_source.windows
    self.table = window_source.table
    self.clip_frames = window_source.clip_frames
    self.num_clips = window_source.num_clips
    self.pain_classes = window_source.pain_classes
    self.augment_config = {}
    self.records = records
    self.recordings = recordings
    self._ends_of = {}
    self.chunk = chunk
    self.modalities = modalities

  def __len__(self):
    return len(self.windows)

  def _ends(self, name):
    if name not in self._ends_of:
      self._ends_of[name] = unruns(self.recordings[name]["ends"])
    return self._ends_of[name]

  def __getitem__(self, i):
    recording, start = (int(x) for x in self.windows[i])
    name = self.table.names[recording]
    if name not in self.recordings:
      raise KeyError(f"recording {name} is not in the feature cache: extract it again")
    ends = clips_lib.clip_ends(start, self.clip_frames, self.num_clips)
    stored = self._ends(name)
    pos = np.minimum(np.searchsorted(stored, ends), len(stored) - 1)
    if (stored[pos] != ends).any():
      raise KeyError(f"the feature cache has no clip of {name} ending at frame "
                     f"{int(ends[stored[pos] != ends][0])}: it was extracted for other windows")
    parts = {}
    for c in np.unique(pos // self.chunk):
      with np.load(io.BytesIO(self.records[self.recordings[name]["chunks"][c]])) as z:
        parts[int(c)] = {k: z[k] for k in z.files}
    take = lambda key: np.stack([parts[int(p // self.chunk)][key][p % self.chunk] for p in pos])
    pain = int(self.table.pain[recording])
    return {
        "embeddings": {m: take(m) for m in self.modalities},
        "valence": take("valence"), "arousal": take("arousal"),
        "recording": np.full(self.num_clips, recording, np.int32),
        "frame": ends.astype(np.int32),
        "pain": np.int32(self.pain_classes.index(pain) if self.pain_classes else pain),
        "valid": np.float32(1.0),
    }

  def __repr__(self):
    return f"CachedWindowSource({len(self)} windows over {len(self.table)} recordings)"


def open_cache(config):
  return FeatureCache(config)
