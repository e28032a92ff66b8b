"""Windows of clips, the unit a model sees, and the Grain source that reads them.

A window is `num_clips` consecutive clips of `clip_frames` frames (`clips.clip_ends`);
each clip is labelled by its last frame. Evaluation windows are laid so that every frame
of a recording is the last frame of exactly one clip (one prediction per frame, as in
the paper); clips that reach before the first or past the last frame are zero-padded and
their labels marked invalid.
"""

import math

import numpy as np

from jmt_jax.data import augment
from jmt_jax.data import clips as clips_lib


def train_windows(num_frames, recordings, clip_frames, num_clips, stride):
  """(K, 2) [recording, first frame] of full windows every `stride` frames."""
  span = clip_frames * num_clips
  out = [(r, s) for r in recordings
         for s in range(0, max(1, int(num_frames[r]) - span + 1), stride)]
  return np.array(out, np.int64).reshape(-1, 2)


def eval_windows(num_frames, recordings, clip_frames, num_clips):
  """(K, 2) windows whose clip ends cover every frame exactly once."""
  out = []
  for r in recordings:
    n = int(num_frames[r])
    for offset in range(min(clip_frames, n)):
      num_ends = len(range(offset, n, clip_frames))
      for k in range(math.ceil(num_ends / num_clips)):
        out.append((r, offset - clip_frames + 1 + k * num_clips * clip_frames))
  return np.array(out, np.int64).reshape(-1, 2)


class WindowSource:
  """Random-access source of windows (a Grain `RandomAccessDataSource`) over a store.

  Items are never augmented; `augment(example, rng)` adds the training augmentation of
  `augment_config` drawn for the item (see `augment.draw`), which the model applies.
  """

  def __init__(self, store, windows, *, clip_frames, num_clips, modalities,
               pain_classes=None, augment_config=None):
    self.store = store
    self.table = store.table
    self.windows = windows
    self.clip_frames = clip_frames
    self.num_clips = num_clips
    self.modalities = dict(modalities)
    self.pain_classes = None if pain_classes is None else list(pain_classes)
    self.augment_config = dict(augment_config or {})

  def __len__(self):
    return len(self.windows)

  def __getitem__(self, i):
    recording, start = (int(x) for x in self.windows[i])
    ends = clips_lib.clip_ends(start, self.clip_frames, self.num_clips)
    example = clips_lib.read_clips(self.store, recording, ends, self.modalities,
                                   self.clip_frames)
    pain = int(self.table.pain[recording])
    example["pain"] = np.int32(self.pain_classes.index(pain) if self.pain_classes else pain)
    example["valid"] = np.float32(1.0)
    return example

  def augment(self, example, rng):
    """`example` with training augmentation parameters drawn from the numpy Generator `rng`."""
    example = dict(example)
    example["augment"] = {m: augment.draw(rng, self.num_clips, **self.augment_config)
                          for m, s in self.modalities.items() if s["kind"] == "frames"}
    return example

  def __repr__(self):
    return f"WindowSource({len(self)} windows over {len(self.table)} recordings)"
