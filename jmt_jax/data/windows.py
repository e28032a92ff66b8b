"""Windows of clips, the unit a model sees, read from segment records.

A window is `num_clips` consecutive clips of `clip_frames` frames; each clip is
labelled by its last frame. Evaluation windows are laid so that every frame of a
recording is the last frame of exactly one clip (one prediction per frame, as in
the paper); clips that reach before the first or past the last frame are zero-padded
and their labels marked invalid.

Each modality is produced by a reader chosen by its `kind` in the config, so adding
a modality is a config entry, not an edit here.
"""

import math

import numpy as np

from jmt_jax.data import logmel
from jmt_jax.data import augment
from jmt_jax.data import records


def train_windows(table, recordings, clip_frames, num_clips, stride):
  """(K, 2) [recording, first frame] of full windows every `stride` frames."""
  span = clip_frames * num_clips
  out = [(r, s) for r in recordings
         for s in range(0, max(1, int(table.num_frames[r]) - span + 1), stride)]
  return np.array(out, np.int64).reshape(-1, 2)


def eval_windows(table, recordings, clip_frames, num_clips):
  """(K, 2) windows whose clip ends cover every frame exactly once."""
  out = []
  for r in recordings:
    n = int(table.num_frames[r])
    for offset in range(min(clip_frames, n)):
      num_ends = len(range(offset, n, clip_frames))
      for k in range(math.ceil(num_ends / num_clips)):
        out.append((r, offset - clip_frames + 1 + k * num_clips * clip_frames))
  return np.array(out, np.int64).reshape(-1, 2)


class _Span:
  """The concatenated per-frame and per-sample arrays of the records a window reads."""

  def __init__(self, recs, rates, fps):
    self.rates = rates
    self.fps = fps
    self.first_frame = int(recs[0]["start_frame"])
    self.arrays = {k: np.concatenate([r[k] for r in recs]) for k in
                   ("frames", "valence", "arousal", "audio", "biosignal")}

  def frames(self, key, lo, hi, fill=0):
    """Per-frame values for frames [lo, hi), `fill` outside the recording."""
    array = self.arrays[key]
    out = np.full((hi - lo,) + array.shape[1:], fill, array.dtype)
    src_lo, src_hi = max(lo, self.first_frame), min(hi, self.first_frame + len(array))
    if src_hi > src_lo:
      out[src_lo - lo:src_hi - lo] = array[src_lo - self.first_frame:src_hi - self.first_frame]
    return out

  def samples(self, key, rate_key, end_frame, num_samples):
    """The `num_samples` signal samples that end where `end_frame` starts, zeros outside."""
    rate = self.rates[rate_key]
    array = self.arrays[key]
    start = records.sample_at(self.first_frame, rate, self.fps)
    end = records.sample_at(end_frame, rate, self.fps)
    out = np.zeros((num_samples,) + array.shape[1:], np.float32)
    src_lo, src_hi = max(end - num_samples, start), min(end, start + len(array))
    if src_hi > src_lo:
      out[src_lo - end + num_samples:src_hi - end + num_samples] = array[src_lo - start:src_hi - start]
    return out


def _read_frames(span, ends, spec, clip_frames):
  """(clips, frames_per_clip, H, W, 3) uint8: the clip's frames at an even stride, ending on its last."""
  stride = clip_frames // spec["frames_per_clip"]
  idx = ends[:, None] - stride * np.arange(spec["frames_per_clip"] - 1, -1, -1)[None, :]
  lo = int(idx.min())
  return span.frames("frames", lo, int(idx.max()) + 1)[idx - lo]


def _read_logmel(span, ends, spec, clip_frames):
  """(clips, n_mels, time) normalised log-mel of the audio window ending at each clip's end."""
  del clip_frames
  n = int(round(spec["window_seconds"] * span.rates["audio_rate"]))
  wave = np.stack([span.samples("audio", "audio_rate", int(e) + 1, n) for e in ends]) / 32768.0
  return logmel.log_mel(wave, sample_rate=span.rates["audio_rate"], n_fft=spec["n_fft"],
                        win_length=spec["win_length"], hop_length=spec["hop_length"],
                        n_mels=spec["n_mels"], top_db=spec["top_db"], mean=spec["mean"],
                        std=spec["std"])


def _read_biosignal(span, ends, spec, clip_frames):
  """(clips, samples, channels) biosignal window ending at each clip's end."""
  del clip_frames
  n = int(round(spec["window_seconds"] * span.rates["bio_rate"]))
  sig = np.stack([span.samples("biosignal", "bio_rate", int(e) + 1, n) for e in ends])
  sig = sig[..., list(spec["channels"])]
  if spec["baseline"] == "mean":  # skin-conductance level varies by person; responses carry the signal
    sig = sig - sig.mean(axis=1, keepdims=True)
  return (sig * spec["scale"]).astype(np.float32)


READERS = {"frames": _read_frames, "logmel": _read_logmel, "biosignal": _read_biosignal}


def _context_frames(modality_specs, fps):
  """How many frames before a clip's end its longest signal window reaches back."""
  seconds = [s["window_seconds"] for s in modality_specs.values() if "window_seconds" in s]
  return int(math.ceil(max(seconds, default=0) * fps)) + 1


class WindowSource:
  """Random-access source of windows (a Grain `RandomAccessDataSource`).

  Items are never augmented; `augment(example, rng)` applies the training augmentation
  of `augment_config` (see `augment.frames`) to an item's frames.
  """

  def __init__(self, data_source, table, rates, windows, *, clip_frames, num_clips,
               modalities, pain_classes=None, augment_config=None):
    self.data_source = data_source
    self.table = table
    self.rates = rates
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
    ends = start + self.clip_frames * (np.arange(self.num_clips) + 1) - 1
    example = self.read_clips(recording, ends)
    pain = int(self.table.pain[recording])
    example["pain"] = np.int32(self.pain_classes.index(pain) if self.pain_classes else pain)
    example["valid"] = np.float32(1.0)
    return example

  def read_clips(self, recording, ends):
    """Inputs, labels, `recording` and `frame` of the clips of `recording` that end at
    the (ascending) frames `ends`."""
    start = int(ends[0]) - self.clip_frames + 1
    hi = int(ends[-1]) + 1
    fps = float(self.table.fps[recording])
    lo = min(start, int(ends[0]) + 1 - _context_frames(self.modalities, fps))
    # Clips wholly past the end (padding of evaluation windows) still read the last
    # segment, so that the span knows where the recording is.
    last = int(self.table.num_frames[recording]) - 1
    recs = [self.data_source[j] for j in self.table.records_for(recording, min(lo, last), hi)]
    span = _Span(recs, self.rates, fps)
    example = {name: READERS[spec["kind"]](span, ends, spec, self.clip_frames)
               for name, spec in self.modalities.items()}
    for key in ("valence", "arousal"):
      per_frame = span.frames(key, start, hi, fill=records.INVALID_LABEL)
      example[key] = per_frame[ends - start]
    example["recording"] = np.full(len(ends), recording, np.int32)
    example["frame"] = np.asarray(ends, np.int32)
    return example

  def augment(self, example, rng):
    """`example` with training augmentation drawn from the numpy Generator `rng`."""
    example = dict(example)
    for name, spec in self.modalities.items():
      if spec["kind"] == "frames":
        example[name] = augment.frames(example[name], rng, **self.augment_config)
    return example

  def __repr__(self):
    return f"WindowSource({len(self)} windows over {len(self.table)} recordings)"
