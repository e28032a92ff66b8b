"""Clips: where a clip ends, and how its inputs are read from any store of frames and signals.

A clip of `clip_frames` frames is named by its last frame (its label's frame). A window is
`num_clips` consecutive clips; `clip_ends` is the one place that says which frames those
are. `read_clips` builds every input kind of the clips ending at given frames from a
store (prepared shards: `ShardStore`; a streamed video: `inference.stream.StreamStore`),
so the training, feature-extraction and prediction paths cannot drift apart.

A store has `rates` (audio_rate, bio_rate) and answers, about one recording:
  num_frames(recording), fps(recording);
  read_frames(recording, frames, decode) -> ((k, S, S, 3) uint8 or None, (k, 2) labels)
      for ascending `frames` inside the recording (labels: valence, arousal);
  read_signal(recording, key, lo, hi) -> samples lo..hi-1 of signal `key` (zeros outside
      what the recording has).
Frames outside the recording read as zeros and their labels as invalid; signal windows
that reach outside it are zero-padded.

Each modality is produced by a reader chosen by its `kind` in the config, so adding one
is a config entry, not an edit here.
"""

import math
import os

import numpy as np

from jmt_jax.data import records
from jmt_jax.errors import BadInput

# The stored signal each non-frame input kind reads.
SIGNAL_OF_KIND = {"logmel": "audio", "waveform": "audio", "biosignal": "biosignal"}


def clip_ends(starts, clip_frames, num_clips):
  """(..., num_clips) last frames of the clips of windows whose first frame is `starts`."""
  return np.asarray(starts, np.int64)[..., None] + clip_frames * (np.arange(num_clips) + 1) - 1


def causal_window_starts(frames, clip_frames, num_clips):
  """First frames of the windows whose last clip ends on each of `frames`: the windows
  that see only the past (pain's evaluation windows; live prediction's)."""
  return np.asarray(frames, np.int64) - clip_frames * num_clips + 1


def frame_indices(ends, spec, clip_frames):
  """(clips, frames_per_clip): a clip's frames at an even stride, ending on its last."""
  stride = clip_frames // spec["frames_per_clip"]
  return ends[:, None] - stride * np.arange(spec["frames_per_clip"] - 1, -1, -1)[None, :]


def signal_window(spec, rates):
  """Samples in one clip's window of the signal `spec` reads."""
  key = SIGNAL_OF_KIND[spec["kind"]]
  return int(round(spec["window_seconds"] * rates[records.RATE_KEYS[key]]))


def window_stops(ends, rate, fps):
  """(clips,) the sample (at `rate`) where each clip ending at frame `ends` stops: the
  end of its last frame. A clip's signal window is the samples just before it."""
  return np.array([records.sample_at(int(e) + 1, rate, fps) for e in ends], np.int64)


def _signal_windows(store, recording, ends, spec):
  """(clips, n, ...) the n samples ending where each clip's last frame ends."""
  key = SIGNAL_OF_KIND[spec["kind"]]
  n = signal_window(spec, store.rates)
  stops = window_stops(ends, store.rates[records.RATE_KEYS[key]], store.fps(recording))
  lo = int(stops.min()) - n
  span = store.read_signal(recording, key, lo, int(stops.max()))
  return np.stack([span[s - n - lo:s - lo] for s in stops])


def _read_audio(store, recording, ends, spec):
  """(clips, samples) int16 audio windows; the model computes their log-mel spectrograms
  or resamples them for a speech encoder on the device (models.frontends)."""
  return _signal_windows(store, recording, ends, spec).astype(np.int16, copy=False)


def _read_biosignal(store, recording, ends, spec):
  """(clips, samples, channels) float32 biosignal windows, baseline removed and scaled."""
  sig = _signal_windows(store, recording, ends, spec)[..., list(spec["channels"])]
  sig = sig.astype(np.float32)
  if spec["baseline"] == "mean":  # skin-conductance level varies by person; responses carry the signal
    sig = sig - sig.mean(axis=1, keepdims=True)
  return (sig * spec["scale"]).astype(np.float32)


def feature_file(spec, name, frame):
  """The file of precomputed features of the clip of recording `name` ending at `frame`
  (0-based; the pattern numbers frames from 1, as Aff-Wild2's crops are)."""
  return os.path.join(os.path.expanduser(spec["directory"]),
                      spec["pattern"].format(recording=name, frame=int(frame) + 1))


def _read_features(store, recording, ends, spec):
  """(clips, dim) float32 per-clip features extracted elsewhere, one .npy file per clip
  (the authors' WavLM features); zeros for a clip ending outside the recording."""
  name, n = store.recording_name(recording), store.num_frames(recording)
  out = np.zeros((len(ends), spec["dim"]), np.float32)
  for i, end in enumerate(ends):
    if not 0 <= end < n:
      continue
    path = feature_file(spec, name, end)
    try:
      value = np.load(path, allow_pickle=False)
    except FileNotFoundError:
      raise BadInput(f"{path}: missing: no precomputed features of the clip of {name} "
                     f"ending at frame {int(end) + 1}") from None
    except (OSError, ValueError) as e:
      raise BadInput(f"{path}: not a readable .npy file ({e})") from None
    value = np.asarray(value, np.float32)
    if value.ndim == 2 and 1 in value.shape:  # saved as (1, dim) or (dim, 1)
      value = value.reshape(-1)
    if value.shape != (spec["dim"],):
      raise BadInput(f"{path}: holds an array of shape {value.shape}, not {spec['dim']} features")
    if not np.isfinite(value).all():
      raise BadInput(f"{path}: holds NaN or inf")
    out[i] = value
  return out


_SIGNAL_READERS = {"logmel": _read_audio, "waveform": _read_audio, "biosignal": _read_biosignal,
                   "features": _read_features}


def _take(values, have, want, fill):
  """values[i] for each entry of `want` found in the ascending `have`; `fill` elsewhere."""
  want = np.asarray(want)
  out = np.full(want.shape + values.shape[1:], fill, values.dtype)
  if len(have):
    pos = np.minimum(np.searchsorted(have, want), len(have) - 1)
    hit = have[pos] == want
    out[hit] = values[pos[hit]]
  return out


def read_clips(store, recording, ends, specs, clip_frames):
  """Inputs of every modality in `specs`, labels, `recording` and `frame` of the clips
  of `recording` ending at `ends`."""
  ends = np.asarray(ends, np.int64)
  frame_specs = {m: s for m, s in specs.items() if s["kind"] == "frames"}
  unknown = {s["kind"] for s in specs.values()} - {"frames"} - set(_SIGNAL_READERS)
  if unknown:
    raise ValueError(f"unknown input kind(s) {sorted(unknown)}; use frames, "
                     f"{', '.join(_SIGNAL_READERS)}")
  idx = {m: frame_indices(ends, s, clip_frames) for m, s in frame_specs.items()}
  n = store.num_frames(recording)
  wanted = np.unique(np.concatenate([ends] + [i.ravel() for i in idx.values()]))
  inside = wanted[(wanted >= 0) & (wanted < n)]
  images, labels = store.read_frames(recording, inside, decode=bool(idx))
  example = {m: _take(images, inside, i, 0) for m, i in idx.items()}
  for m, s in specs.items():
    if s["kind"] in _SIGNAL_READERS:
      example[m] = _SIGNAL_READERS[s["kind"]](store, recording, ends, s)
  for k, key in enumerate(records.DIMENSIONS):
    example[key] = _take(labels[:, k], inside, ends, records.INVALID_LABEL)
  example["recording"] = np.full(len(ends), recording, np.int32)
  example["frame"] = ends.astype(np.int32)
  return example


class ShardStore:
  """Frames and signals of one stored split (the records of `data.records`), read from a
  source of serialized records."""

  def __init__(self, source, table, rates, frame_size):
    self.source = source
    self.table = table
    self.rates = rates
    self.frame_size = frame_size
    self.signals = records.stored_signals(source.dataset_info.features)

  def num_frames(self, recording):
    return int(self.table.num_frames[recording])

  def recording_name(self, recording):
    return self.table.names[recording]

  def fps(self, recording):
    return float(self.table.fps[recording])

  def fetch(self, recording, frames):
    """The parsed records (`jpeg`, `labels`) of `frames` (ascending, inside the recording)."""
    ids = self.table.frame_records(recording, frames).tolist()
    return [records.parse_record(r) for r in self.source.__getitems__(ids)] if ids else []

  def read_frames(self, recording, frames, decode=True):
    recs = self.fetch(recording, frames)
    labels = np.array([r["labels"][:2] for r in recs], np.float32).reshape(-1, 2)
    images = records.decode_frames([r["jpeg"] for r in recs], self.frame_size) if decode else None
    return images, labels

  def read_signal(self, recording, key, lo, hi):
    if key not in self.signals:
      raise ValueError(f"this dataset stores no {key} (it has {sorted(self.signals)})")
    channels = self.signals[key]
    rate, fps = self.rates[records.RATE_KEYS[key]], self.fps(recording)
    out = np.zeros((hi - lo,) + ((channels,) if channels else ()), records.SIGNAL_DTYPES[key])
    # Frames whose samples cover [lo, hi), with a frame of slack for rounding.
    lo_frame = int(math.floor(max(lo, 0) * fps / rate)) - 1
    hi_frame = int(math.ceil(max(hi, 0) * fps / rate)) + 1
    ids, first_frame = self.table.segment_records(recording, lo_frame, hi_frame)
    segment_frames = self.table.segment_frames
    for i, raw in enumerate(self.source.__getitems__(ids) if ids else []):
      stored = records.parse_record(raw, {key: channels})[key]
      first = records.sample_at(first_frame + i * segment_frames, rate, fps)
      src_lo, src_hi = max(lo, first), min(hi, first + len(stored))
      if src_hi > src_lo:
        out[src_lo - lo:src_hi - lo] = stored[src_lo - first:src_hi - first]
    return out
