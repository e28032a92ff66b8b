"""Frozen-backbone feature cache: backbone embeddings computed once, read by training.

With frozen backbones (the paper's Aff-Wild2 setting) a clip's embedding never changes,
so every clip a window can hold is embedded once:

  python -m jmt_jax.extract_features --config=configs/affwild2.py:init_from=weights/affwild2,feature_cache=DIR

For each recording of each split, the embeddings of the clips ending at frames
0 .. last (the last clip end any training or evaluation window uses) are stored, with the
labels of those frames, in chunks of `CHUNK` clips: one ArrayRecord record per chunk, an
uncompressed .npz (no protobuf to parse). `index.json` says where each recording's
chunks are and fingerprints what the embeddings depend on: the backbone weights, the
input and data config. Training with `feature_cache=DIR` refuses a cache whose
fingerprint differs.

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

from jmt_jax import train_step
from jmt_jax.data import pipeline
from jmt_jax.data import windows as windows_lib
from jmt_jax.models import model as model_lib

CHUNK = 128
INDEX = "index.json"
VERSION = 1


def _json(config_dict):
  return json.dumps(config_dict.to_dict() if hasattr(config_dict, "to_dict") else config_dict,
                    sort_keys=True, default=str)


def _input_fingerprint(config):
  """What the cached embeddings depend on, besides the backbone weights."""
  backbones = {m: config.model.backbones[m] for m in config.model.modalities}
  data = dict(config.data)
  data.pop("data_dir", None)
  data.pop("protocol", None)  # a BioVid fold picks recordings; their embeddings are the same
  return hashlib.sha256("|".join([
      _json({k: v for k, v in config.input.items() if k not in ("augment", "train_stride")}),
      _json(backbones), _json(data), config.compute_dtype]).encode()).hexdigest()


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


def clip_ends(table, recordings, input_config):
  """{recording: last clip end} over the training and evaluation windows of `recordings`."""
  clip, clips = input_config.clip_frames, input_config.num_clips
  last = {}
  for w in (windows_lib.train_windows(table, recordings, clip, clips, input_config.train_stride),
            windows_lib.eval_windows(table, recordings, clip, clips)):
    for r, start in w:
      last[int(r)] = max(last.get(int(r), 0), int(start) + clip * clips - 1)
  return last


def _encode(arrays):
  buf = io.BytesIO()
  np.savez(buf, **arrays)
  return buf.getvalue()


def extract(config, out_dir, state):
  """Writes the cache of every split of `config.data` to `out_dir`, embedding with the
  backbones in `state` (a train state as training starts: random or `init_from`)."""
  if not config.model.get("freeze_backbones"):
    raise ValueError("a feature cache needs frozen backbones (config.model.freeze_backbones): "
                     "fine-tuned backbones change their embeddings every step")
  model = model_lib.build_model(config.model, config.compute_dtype)
  dataset = pipeline.open_dataset(config.data)
  dtype = train_step.compute_dtype(model)

  @jax.jit
  def embed(params, batch_stats, batch):
    return model.apply({"params": train_step.cast_floats(params, dtype), "batch_stats": batch_stats}, batch, train=False,
                       embeddings_only=True)

  os.makedirs(out_dir, exist_ok=True)
  # BioVid folds are splits over one stored split: each store is embedded once, whole.
  stores = {}
  for split_name, part in dataset.splits.items():
    stores.setdefault(id(part.source), (f"{split_name}.array_record", part))
  specs = {m: config.input.modalities[m].to_dict() for m in config.model.modalities}
  index = {"version": VERSION, "chunk": CHUNK, "input": _input_fingerprint(config),
           "backbones": backbone_fingerprint(state.params, state.batch_stats),
           "splits": {s: stores[id(p.source)][0] for s, p in dataset.splits.items()},
           "stores": {}}
  for file_name, part in stores.values():
    t0 = time.time()
    reader = windows_lib.WindowSource(part.source, part.table, dataset.rates,
                                      np.zeros((0, 2), np.int64),
                                      clip_frames=config.input.clip_frames,
                                      num_clips=config.input.num_clips, modalities=specs)
    last_end = clip_ends(part.table, np.arange(len(part.table)), config.input)
    writer = ArrayRecordWriter(os.path.join(out_dir, file_name), "group_size:1")
    recordings, num_records = {}, 0
    for r in sorted(last_end):
      chunks = []
      for first in range(0, last_end[r] + 1, CHUNK):
        ends = np.arange(first, min(first + CHUNK, last_end[r] + 1))
        clips = reader.read_clips(r, ends)
        pad = CHUNK - len(ends)  # one compiled shape for every chunk
        batch = {m: np.concatenate([clips[m], np.zeros((pad,) + clips[m].shape[1:],
                                                         clips[m].dtype)])[None]
                 for m in config.model.modalities}
        emb = jax.device_get(embed(state.params, state.batch_stats, batch))
        record = {m: np.asarray(emb[m][0, :len(ends)], np.float32) for m in emb}
        record.update(valence=clips["valence"], arousal=clips["arousal"])
        writer.write(_encode(record))
        chunks.append(num_records)
        num_records += 1
      recordings[part.table.names[r]] = chunks
    writer.close()
    index["stores"][file_name] = recordings
    logging.info("Cached %s: %d recordings, %d chunks in %.1fs.", file_name, len(recordings),
                 num_records, time.time() - t0)
  tmp = os.path.join(out_dir, INDEX + ".tmp")
  with open(tmp, "w") as f:
    json.dump(index, f)
  os.replace(tmp, os.path.join(out_dir, INDEX))  # the index last: no index, no cache
  return index


def _how_to_extract(directory):
  return (f"extract it first with: python -m jmt_jax.extract_features --config=<the same "
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

  def check_backbones(self, state):
    if backbone_fingerprint(state.params, state.batch_stats) != self.index["backbones"]:
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

  def __init__(self, window_source, records, chunks, chunk, modalities):
    self.windows = window_source.windows
    self.table = window_source.table
    self.clip_frames = window_source.clip_frames
    self.num_clips = window_source.num_clips
    self.pain_classes = window_source.pain_classes
    self.augment_config = {}
    self.records = records
    self.chunks = chunks
    self.chunk = chunk
    self.modalities = modalities

  def __len__(self):
    return len(self.windows)

  def __getitem__(self, i):
    recording, start = (int(x) for x in self.windows[i])
    name = self.table.names[recording]
    if name not in self.chunks:
      raise KeyError(f"recording {name} is not in the feature cache: extract it again")
    ends = start + self.clip_frames * (np.arange(self.num_clips) + 1) - 1
    parts = {}
    for c in np.unique(ends // self.chunk):
      with np.load(io.BytesIO(self.records[self.chunks[name][c]])) as z:
        parts[int(c)] = {k: z[k] for k in z.files}
    take = lambda key: np.stack([parts[int(e // self.chunk)][key][e % self.chunk] for e in ends])
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
