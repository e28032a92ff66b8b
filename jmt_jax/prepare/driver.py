"""From a raw tree to shards and a manifest: decode every recording (parallel,
resumable: `work`), write the shards (`builder`), then count and checksum them.

The manifest (`<out_dir>/manifest.json`) is written last and marked complete, so a
reader never takes a half-written preparation for a finished one.
"""

import dataclasses
import hashlib
import json
import os
import shutil

import numpy as np
import tensorflow_datasets as tfds
from tensorflow_datasets.core import constants

from jmt_jax.data import prepared
from jmt_jax.data import records
from jmt_jax.media import biosignals
from jmt_jax.prepare import affwild2
from jmt_jax.prepare import biovid
from jmt_jax.prepare import builder
from jmt_jax.prepare import work


@dataclasses.dataclass(frozen=True)
class Layout:
  tasks: object  # (raw_dir, **options) -> task dicts
  process: object  # task -> (arrays, frame blobs, table entry, stats)
  splits: tuple
  signals: tuple  # ((signal key, channels), ...) stored
  segment_frames: int
  inputs: tuple  # task fields that are paths of files or folders `process` reads
  version: str  # of `process`: a new one redoes every work file


LAYOUTS = {
    "affwild2": Layout(affwild2.tasks, affwild2.process, ("train", "validation", "test"),
                       (("audio", 0),), affwild2.SEGMENT_FRAMES, affwild2.INPUTS,
                       affwild2.VERSION),
    "biovid": Layout(biovid.tasks, biovid.process, ("samples",),
                     (("biosignal", len(biosignals.CHANNELS)),), biovid.SEGMENT_FRAMES,
                     biovid.INPUTS, biovid.VERSION),
}


def prepare(dataset, raw_dir, out_dir, workers=1, segment_frames=0, **options):
  """Prepares `dataset` from `raw_dir` into `out_dir`; returns the manifest (a dict).

  `options` go to the layout's `tasks` (audio_rate, bio_rate, frame_size, ...).
  """
  layout = LAYOUTS[dataset]
  raw_dir, out_dir = os.path.abspath(raw_dir), os.path.abspath(out_dir)
  os.makedirs(out_dir, exist_ok=True)
  old = prepared.read_manifest(out_dir)
  if old and old["dataset"] != dataset:
    raise ValueError(f"{out_dir} already holds prepared {old['dataset']} data")
  tasks = layout.tasks(raw_dir, **options)
  outcomes = work.run(tasks, layout.process, os.path.join(out_dir, "work"), workers,
                      layout.inputs, layout.version)

  ok = [o for o in outcomes if o["status"] == "ok"]
  if not ok:
    raise ValueError(f"no recording of {raw_dir} could be prepared; see the reasons above")
  split_entries = {s: [o["entry"] for o in ok if o["split"] == s] for s in layout.splits}
  empty = {s: ("all skipped" if any(o["split"] == s for o in outcomes) else "none in the tree")
           for s, entries in split_entries.items() if not entries}
  for s, why in empty.items():
    print(f"{s}: no recording prepared ({why}); the split is left out", flush=True)
  split_entries = {s: e for s, e in split_entries.items() if e}
  fps = float(np.median([o["entry"]["fps"] for o in ok]))
  signals = dict(frame_size=options.get("frame_size", 112),
                 audio_rate=options.get("audio_rate", 0) if dataset == "affwild2" else 0,
                 bio_rate=options.get("bio_rate", 0) if dataset == "biovid" else 0)
  key = json.dumps([outcomes, signals, segment_frames or layout.segment_frames, records.FORMAT,
                    records.ENCODING], sort_keys=True)
  config = builder.PreparedConfig(
      name=f"{dataset}_{hashlib.sha1(key.encode()).hexdigest()[:12]}",
      work_dir=os.path.join(out_dir, "work"),
      frame_size=signals["frame_size"], signals=layout.signals,
      rates=(("fps", fps), ("audio_rate", signals["audio_rate"]), ("bio_rate", signals["bio_rate"])),
      segment_frames=segment_frames or layout.segment_frames)
  tfds_root = os.path.join(out_dir, "tfds")
  b = builder.PreparedRecordings(config=config, data_dir=tfds_root, file_format="array_record",
                                 split_entries=split_entries)
  print(f"Writing shards to {b.data_dir} ...", flush=True)
  tfds.disable_progress_bar()
  _remove_incomplete(os.path.join(tfds_root, "prepared_recordings"))
  with records.deterministic_records():
    b.download_and_prepare()
  _remove_stale(os.path.join(tfds_root, "prepared_recordings"), keep=config.name)

  manifest = dict(dataset=dataset, raw_dir=raw_dir, complete=True, format=records.FORMAT,
                  signals=signals,
                  options=options, tfds_dir=os.path.relpath(b.data_dir, out_dir),
                  counts=_counts(outcomes, layout.splits), empty_splits=empty,
                  skipped=[dict(name=o["name"], split=o["split"], reason=o["reason"])
                           for o in outcomes if o["status"] == "skipped"],
                  unreadable_files=sorted((f for o in ok for f in o["stats"]["unreadable_files"]),
                                          key=lambda f: f["file"]),
                  shards=_checksums(b.data_dir))
  path = os.path.join(out_dir, prepared.MANIFEST)
  with open(path + ".tmp", "w") as f:
    json.dump(manifest, f, indent=1)
  os.replace(path + ".tmp", path)
  return manifest


def _counts(outcomes, splits):
  counts = {}
  for s in splits:
    done = [o for o in outcomes if o["split"] == s and o["status"] == "ok"]
    c = dict(videos=len(done), skipped=sum(o["split"] == s and o["status"] == "skipped"
                                           for o in outcomes))
    for key in ("frames", "clips", "missing_faces", "dropped_extra_crops", "videos_without_face"):
      c[key] = sum(o["stats"].get(key, 0) for o in done)
    c["unreadable_files"] = sum(len(o["stats"]["unreadable_files"]) for o in done)
    # Frames with a face: detected (BioVid), or with the organisers' crop (Aff-Wild2).
    c["face_detection_rate"] = (round(1 - c["missing_faces"] / c["frames"], 4) if c["frames"]
                                else 0.0)
    counts[s] = c
  return counts


def _checksums(directory):
  out = {}
  for f in sorted(os.listdir(directory)):
    if ".array_record" in f:
      h = hashlib.sha256()
      with open(os.path.join(directory, f), "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
          h.update(chunk)
      out[f] = h.hexdigest()
  return out


def _remove_incomplete(root):
  """What a killed shard-writing stage left: tfds' half-written `incomplete.*` folders."""
  for folder, subdirs, _ in os.walk(root):
    for d in [d for d in subdirs if d.startswith(constants.INCOMPLETE_PREFIX)]:
      shutil.rmtree(os.path.join(folder, d), ignore_errors=True)
      subdirs.remove(d)


def _remove_stale(root, keep):
  """Shards of earlier preparations (other work outcomes or options) are dropped."""
  for name in os.listdir(root):
    if name != keep:
      shutil.rmtree(os.path.join(root, name), ignore_errors=True)
