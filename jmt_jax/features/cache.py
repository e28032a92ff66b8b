"""Frozen-backbone feature cache: backbone embeddings computed once, read by training.

With frozen backbones (the paper's Aff-Wild2 setting) a clip's embedding never changes,
so every clip a window can hold is embedded once (features.extract):

  python -m jmt_jax.features.extract --config=configs/affwild2.py:init_from=weights/affwild2,feature_cache=DIR

The clips stored are those the windows use: on the training split, the clip ends of the
training windows (one frame in `clip_frames` on Aff-Wild2); on the others, every frame
(one prediction per frame); on a split that cross-validation folds, both. Per recording,
its clip ends (ascending) are cut into chunks of `CHUNK`; a chunk's embeddings and the
labels of its frames are one ArrayRecord record, an uncompressed .npz (no protobuf to
parse). A frame encoder's embeddings (models.model.is_frame_encoder) are stored per frame
instead, once for each frame any of those clips holds (a frame belongs to up to
frames_per_clip clips a frame apart), in chunks of `CHUNK` frames, and a clip's are
gathered from them when it is read. `index.json`, written last, says which ends each
recording has and where its chunks are, and fingerprints what the embeddings depend on:
the backbone weights and the input, backbone and data config. Training with `feature_cache=DIR` refuses a cache whose
fingerprints differ.

Windows read from the cache are never augmented: an augmented clip would need its own
embedding. Everything else (windows, order, labels) is what the raw-input path reads.
"""

import hashlib
import io
import json
import os

import grain
import jax
import numpy as np
from jax.experimental import multihost_utils

from jmt_jax import config_common as cc
from jmt_jax.data import clips as clips_lib
from jmt_jax.data.records import DIMENSIONS
from jmt_jax.models import model as model_lib

CHUNK = 128  # clip ends per stored record
INDEX = "index.json"
VERSION = 3  # 2: the built-in data's frames are JPEG (records.FORMAT 2); 3: frames cached


def _json(config_dict):
  return json.dumps(config_dict.to_dict() if hasattr(config_dict, "to_dict") else config_dict,
                    sort_keys=True, default=str)


def input_fingerprint(config):
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


def unruns(runs):
  return np.concatenate([np.arange(*r) for r in runs]) if runs else np.zeros(0, np.int64)


def _how_to_extract(directory):
  return (f"extract it first with: python -m jmt_jax.features.extract --config=<the same "
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
    if self.index.get("version") != VERSION or self.index["input"] != input_fingerprint(config):
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


def _positions(stored, wanted, what):
  """Indices in the ascending `stored` of each of `wanted`, which it must hold; `what`
  names the one missing (a frame index -> words)."""
  pos = np.minimum(np.searchsorted(stored, wanted), len(stored) - 1)
  missing = stored[pos] != wanted
  if missing.any():
    raise KeyError(f"the feature cache has no {what(int(wanted[missing].flat[0]))}: it was "
                   f"extracted for other windows")
  return pos


class CachedWindowSource:
  """A `windows.WindowSource`'s windows with backbone embeddings in place of inputs:
  `example["embeddings"][modality]` is (num_clips, D) (a frame encoder's: its clips'
  frames' embeddings side by side, as `MultimodalModel.embed` emits them)."""

  def __init__(self, window_source, records, recordings, chunk, modalities):
    self.specs = window_source.modalities
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

  def _ends(self, name, modality=None):
    """The ascending clip ends of recording `name`, or the frames of `modality` (a frame
    encoder's) stored."""
    if (name, modality) not in self._ends_of:
      runs = self.recordings[name]["ends"] if modality is None else (
          self.recordings[name]["frames"][modality]["frames"])
      self._ends_of[name, modality] = unruns(runs)
    return self._ends_of[name, modality]

  def _take(self, chunks, pos, key, loaded):
    """(len(pos), ...) entries `key` at positions `pos` of the records `chunks` hold."""
    for c in np.unique(pos // self.chunk):
      if chunks[c] not in loaded:
        with np.load(io.BytesIO(self.records[chunks[c]])) as z:
          loaded[chunks[c]] = {k: z[k] for k in z.files}
    return np.stack([loaded[chunks[p // self.chunk]][key][p % self.chunk] for p in pos.ravel()])

  def __getitem__(self, i):
    recording, start = (int(x) for x in self.windows[i])
    name = self.table.names[recording]
    if name not in self.recordings:
      raise KeyError(f"recording {name} is not in the feature cache: extract it again")
    ends = clips_lib.clip_ends(start, self.clip_frames, self.num_clips)
    entry, loaded = self.recordings[name], {}
    pos = _positions(self._ends(name), ends, lambda e: f"clip of {name} ending at frame {e}")
    take = lambda key: self._take(entry["chunks"], pos, key, loaded)  # noqa: E731
    embeddings = {}
    for m in self.modalities:
      if m in entry.get("frames", {}):
        frames = clips_lib.frame_indices(ends, self.specs[m], self.clip_frames)
        at = _positions(self._ends(name, m), frames,
                        lambda f, m=m: f"{m} embedding of frame {f} of {name}")
        embeddings[m] = self._take(entry["frames"][m]["chunks"], at, m, loaded).reshape(
            len(ends), -1)
      else:
        embeddings[m] = take(m)
    pain = int(self.table.pain[recording])
    return {
        "embeddings": embeddings,
        **{d: take(d) for d in DIMENSIONS},
        "recording": np.full(self.num_clips, recording, np.int32),
        "frame": ends.astype(np.int32),
        "pain": np.int32(self.pain_classes.index(pain) if self.pain_classes else pain),
        "valid": np.float32(1.0),
    }

  def __repr__(self):
    return f"CachedWindowSource({len(self)} windows over {len(self.table)} recordings)"
