"""Extract the frozen backbones' embeddings of every clip into a feature cache.

  python -m jmt_jax.features.extract \
      --config=configs/affwild2.py:init_from=weights/affwild2,feature_cache=cache/affwild2
  python -m jmt_jax.main \
      --config=configs/affwild2.py:init_from=weights/affwild2,feature_cache=cache/affwild2 \
      --workdir=workdirs/affwild2

The backbones are the ones training would start from (`init_from`). The clips stored are
those the windows use: on the training split, the clip ends of the training windows (one
frame in `clip_frames` on Aff-Wild2); on the others, every frame (one prediction per
frame); on a split that cross-validation folds, both. A frame encoder embeds each frame
those clips hold once. See jmt_jax.features.cache.
"""

import io
import itertools
import json
import os
import time

import jax
import numpy as np
from absl import app
from absl import flags
from absl import logging
from array_record.python.array_record_module import ArrayRecordWriter
from ml_collections import config_flags

from jmt_jax.data import clips as clips_lib
from jmt_jax.data import pipeline
from jmt_jax.data import windows as windows_lib
from jmt_jax.data.records import DIMENSIONS
from jmt_jax.features import cache
from jmt_jax.features import embed as embed_lib
from jmt_jax.features import speech_context
from jmt_jax.models import model as model_lib
from jmt_jax.models import variables as variables_lib
from jmt_jax.runtime import cli
from jmt_jax.weights import init_from

FLAGS = flags.FLAGS


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
  cast = variables_lib.cast(model, variables["params"], variables["batch_stats"])
  embed = embed_lib.embedder(model, cast)

  os.makedirs(out_dir, exist_ok=True)
  stores = clips_to_cache(dataset, config.input)
  files = {key: f"{name}.array_record" for name, part in reversed(dataset.splits.items())
           for key in [id(part.source)]}
  specs = {m: config.input.modalities[m].to_dict() for m in config.model.modalities}
  by_frame = embed_lib.frame_modalities(config)
  context = speech_context.ContextEmbedder(model, cast, specs)
  index = {"version": cache.VERSION, "chunk": cache.CHUNK,
           "input": cache.input_fingerprint(config),
           "backbones": cache.backbone_fingerprint(variables["params"], variables["batch_stats"]),
           "splits": {s: files[id(p.source)] for s, p in dataset.splits.items()},
           "stores": {}, "seconds": {}}
  for key, (split, ends) in stores.items():
    t0 = time.time()
    store = pipeline.store(dataset, split)
    writer = ArrayRecordWriter(os.path.join(out_dir, files[key]), "group_size:1")
    recordings, ids = {}, itertools.count()

    def write(record):  # -> its index in the file
      writer.write(_encode(record))
      return next(ids)

    per_clip = {m: s for m, s in specs.items() if m not in by_frame}
    for r in sorted(ends):
      chunks = []
      for first in range(0, len(ends[r]), cache.CHUNK):
        chunk_ends = ends[r][first:first + cache.CHUNK]
        clips = clips_lib.read_clips(store, r, chunk_ends, per_clip, config.input.clip_frames)
        inputs = {m: clips[m] for m in per_clip}
        inputs.update(context(store, r, chunk_ends) if context else {})
        record = embed_lib.embed_clips(embed, inputs) if inputs else {}
        record.update({d: clips[d] for d in DIMENSIONS})
        chunks.append(write(record))
      entry = recordings[store.table.names[r]] = {"ends": runs_of(ends[r]), "chunks": chunks}
      for m in by_frame:  # each frame the clips hold, once
        frames = np.unique(clips_lib.frame_indices(ends[r], specs[m], config.input.clip_frames))
        entry.setdefault("frames", {})[m] = {"frames": runs_of(frames), "chunks": [
            write(embed_lib.embed_clips(embed, embed_lib.read_frames(
                store, r, frames[first:first + cache.CHUNK], {m: specs[m]})))
            for first in range(0, len(frames), cache.CHUNK)]}
    writer.close()
    index["stores"][files[key]] = recordings
    index["seconds"][files[key]] = round(time.time() - t0, 1)
    logging.info("Cached %s: %d recordings, %d clips in %.1fs.", files[key], len(recordings),
                 sum(len(e) for e in ends.values()), time.time() - t0)
  tmp = os.path.join(out_dir, cache.INDEX + ".tmp")
  with open(tmp, "w") as f:
    json.dump(index, f)
  os.replace(tmp, os.path.join(out_dir, cache.INDEX))  # the index last: no index, no cache
  return index


def extract_config(config):
  """Extracts the cache `config.feature_cache` names, with the backbones a run of
  `config` starts from; returns its index."""
  if not config.get("feature_cache"):
    raise ValueError("set the cache directory in the config (feature_cache=DIR)")
  model = model_lib.build_model(config)
  return extract(config, model, init_from.starting_variables(model, config),
                 config.feature_cache)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  config = FLAGS.config
  index = cli.run(config, lambda: extract_config(config))
  print(f"feature cache written to {config.feature_cache}: "
        f"{sum(len(r) for r in index['stores'].values())} recordings")


def _define_flags():
  config_flags.DEFINE_config_file("config", None, "Config with feature_cache set.",
                                  lock_config=True)
  flags.mark_flags_as_required(["config"])


if __name__ == "__main__":
  cli.app_run(main, _define_flags)
