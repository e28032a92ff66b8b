"""A frozen frame encoder (a ViT on each face) run once per frame against once per clip:
its passes (frames through the encoder) for a training epoch, the feature cache's
extraction and a prediction on one video, and the time to embed a stretch of clips both
ways, side by side in one run.

  python -m jmt_jax.benchmarks.frame_cache \\
      --config=configs/affwild2.py:video_backbone=vit,synthetic --clips=48

Passes are counted from the config's windows on its data (every recording's length):
- an epoch without a cache runs the encoder on every frame of every clip of every
  training window (each clip in up to `num_clips` windows, each frame in up to
  `frames_per_clip` clips);
- the cache embedded clip by clip would run it on each cached clip's frames; frame by
  frame (what features.extract does), on each frame those clips hold once;
- prediction on a video of the evaluation split's median length embeds every frame's
  clip (and one clip before frame 0), or every frame once.
The timing embeds the clips ending at `--clips` consecutive frames of the first
evaluation recording both ways, the clips' frames read from the prepared data, and
checks that the two agree.
"""

import time

import numpy as np
from absl import flags
from ml_collections import config_flags

from jmt_jax import tasks
from jmt_jax.data import clips as clips_lib
from jmt_jax.data import pipeline
from jmt_jax.data import windows as windows_lib
from jmt_jax.features import embed as embed_lib
from jmt_jax.features import extract
from jmt_jax.models import model as model_lib
from jmt_jax.models import variables as variables_lib
from jmt_jax.runtime import cli
from jmt_jax.runtime import library_logs
from jmt_jax.weights import init_from

FLAGS = flags.FLAGS


def passes(config, dataset, modality):
  """{what: (clip by clip, frame by frame or None)} encoder passes (see the module's
  docstring)."""
  spec, c = config.input.modalities[modality], config.input
  f = spec.frames_per_clip
  train = dataset.splits["train"]
  windows = windows_lib.train_windows(train.table.num_frames, train.recordings, c.clip_frames,
                                      c.num_clips, c.train_stride)
  out = {"a training epoch without a cache": (len(windows) * c.num_clips * f, None)}
  clip_passes = frame_passes = 0
  for _, ends in extract.clips_to_cache(dataset, c).values():
    for e in ends.values():
      clip_passes += len(e) * f
      frame_passes += len(np.unique(clips_lib.frame_indices(e, spec, c.clip_frames)))
  out["the feature cache's extraction (once)"] = (clip_passes, frame_passes)
  split = next(s for s in dataset.splits if s != "train")
  part = dataset.splits[split]
  n = int(np.median(part.table.num_frames[part.recordings]))
  task = tasks.get(config.task)
  last = int(clips_lib.clip_ends(task.frame_window_starts(n, c.clip_frames, c.num_clips),
                                 c.clip_frames, c.num_clips).max())
  out[f"prediction on a {n}-frame video"] = ((last + 2) * f, last + 2)
  return out


def timing(config, model, variables, dataset, modality, num_clips):
  """(seconds per clip, seconds per frame, max |difference|) of embedding the clips
  ending at `num_clips` consecutive frames of the first evaluation recording."""
  split = next(s for s in dataset.splits if s != "train")
  store, r = pipeline.store(dataset, split), int(dataset.splits[split].recordings[0])
  spec = config.input.modalities[modality].to_dict()
  clip_frames = config.input.clip_frames
  ends = np.arange(clip_frames - 1, clip_frames - 1 + num_clips)
  embed = embed_lib.embedder(model, variables_lib.cast(model, variables["params"],
                                                       variables["batch_stats"]))
  clips = {modality: clips_lib.read_clips(store, r, ends, {modality: spec}, clip_frames)[modality]}
  frames = np.unique(clips_lib.frame_indices(ends, spec, clip_frames))
  single = embed_lib.read_frames(store, r, frames, {modality: spec})
  for inputs in (clips, single):  # compile both shapes first
    embed_lib.embed_clips(embed, {k: v[:1] for k, v in inputs.items()})
  t0 = time.perf_counter()
  per_clip = embed_lib.embed_clips(embed, clips)[modality]
  t1 = time.perf_counter()
  per_frame = embed_lib.embed_clips(embed, single)[modality]
  t2 = time.perf_counter()
  gathered = per_frame[np.searchsorted(frames, clips_lib.frame_indices(ends, spec, clip_frames))]
  return t1 - t0, t2 - t1, float(np.abs(gathered.reshape(len(ends), -1) - per_clip).max())


def main(argv):
  del argv
  library_logs.quiet()
  config = FLAGS.config
  [modality] = embed_lib.frame_modalities(config) or [None]
  if modality is None:
    raise SystemExit("error: the config has no frame encoder (video_backbone=vit)")
  dataset = pipeline.open_dataset(config.data)
  spec = config.input.modalities[modality]
  print(f"{modality}: {config.model.backbones[modality].family} ViT, {spec.frames_per_clip} "
        f"frames per clip of {config.input.clip_frames}, {config.input.num_clips} clips a window")
  print(f"\nencoder passes (frames through the encoder)\n{'':42s}{'clip by clip':>14s}"
        f"{'frame by frame':>16s}{'ratio':>8s}")
  for what, (clip, frame) in passes(config, dataset, modality).items():
    print(f"  {what:40s}{clip:14,d}" + (f"{frame:16,d}{clip / frame:7.1f}x" if frame else ""))
  print("  (a training epoch on the cache: none)")
  if FLAGS.clips:
    model = model_lib.build_model(config)
    variables = init_from.starting_variables(model, config)
    clip_s, frame_s, diff = timing(config, model, variables, dataset, modality, FLAGS.clips)
    print(f"\nembedding the clips ending at {FLAGS.clips} consecutive frames "
          f"(max |difference| {diff:.1e}):\n  per clip  {clip_s:8.2f} s\n  per frame "
          f"{frame_s:8.2f} s\n  per frame is {clip_s / frame_s:.1f}x faster")


def _define_flags():
  config_flags.DEFINE_config_file("config", None, "Config file[:variant] with "
                                  "video_backbone=vit.", lock_config=True)
  flags.DEFINE_integer("clips", 48, "Clips to embed both ways (0: count passes only).")
  flags.mark_flags_as_required(["config"])


if __name__ == "__main__":
  cli.app_run(main, _define_flags)
