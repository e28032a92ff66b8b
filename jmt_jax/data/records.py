"""The on-disk record: a fixed-length segment of one recording.

A whole recording is too large to decode for every training window (reads cost
about 10 ms per MB here), so recordings are cut into segments of `segment_frames`
frames and a window reads the two or three segments it overlaps. Audio and
biosignal samples are cut at the sample that corresponds to each segment's first
frame, so concatenating a recording's segments gives back its continuous signals.

The split's table of recordings (name, frame count, first record) goes into the
dataset's metadata, so a reader finds a window's records without scanning.
"""

import dataclasses

import numpy as np
import tensorflow_datasets as tfds

INVALID_LABEL = -5.0


@dataclasses.dataclass
class Recording:
  """One recording, all arrays indexed by time from its first frame."""

  frames: np.ndarray  # (N, S, S, 3) uint8; all-zero where no face was found
  face_found: np.ndarray  # (N,) bool
  valence: np.ndarray  # (N,) float32, INVALID_LABEL where unlabelled
  arousal: np.ndarray  # (N,) float32
  audio: np.ndarray  # (round(N * audio_rate / fps),) int16
  biosignal: np.ndarray  # (round(N * bio_rate / fps), channels) float32
  pain: int


def segment_features(frame_size, bio_channels):
  return tfds.features.FeaturesDict({
      "recording": tfds.features.Text(),
      "recording_index": np.int64,
      "segment_index": np.int64,
      "start_frame": np.int64,
      "frames": tfds.features.Tensor(shape=(None, frame_size, frame_size, 3), dtype=np.uint8),
      "face_found": tfds.features.Tensor(shape=(None,), dtype=np.bool_),
      "valence": tfds.features.Tensor(shape=(None,), dtype=np.float32),
      "arousal": tfds.features.Tensor(shape=(None,), dtype=np.float32),
      "audio": tfds.features.Tensor(shape=(None,), dtype=np.int16),
      "biosignal": tfds.features.Tensor(shape=(None, bio_channels), dtype=np.float32),
      "pain": np.int64,
  })


@dataclasses.dataclass
class Split:
  """The recordings of one split: where they are stored and which of them it holds.

  A cross-validation fold is a `Split` over a subset of one stored split's recordings.
  """

  source: object  # random access to the segment records
  table: "SplitTable"
  recordings: np.ndarray  # indices into `table`


@dataclasses.dataclass
class Dataset:
  """An opened dataset: its splits and its signal rates (audio_rate, bio_rate, fps)."""

  splits: dict
  rates: dict


def sample_at(frame, rate, fps):
  """Index of the first signal sample at or after the start of `frame`."""
  return int(round(frame * rate / fps))


def segment_recording(name, index, rec, segment_frames, fps, audio_rate, bio_rate):
  """Yields the segment records of one recording, in order."""
  n = len(rec.valence)
  for seg, f0 in enumerate(range(0, n, segment_frames)):
    f1 = min(n, f0 + segment_frames)
    a0, a1 = sample_at(f0, audio_rate, fps), sample_at(f1, audio_rate, fps)
    b0, b1 = sample_at(f0, bio_rate, fps), sample_at(f1, bio_rate, fps)
    yield {
        "recording": name,
        "recording_index": index,
        "segment_index": seg,
        "start_frame": f0,
        "frames": rec.frames[f0:f1],
        "face_found": rec.face_found[f0:f1],
        "valence": rec.valence[f0:f1],
        "arousal": rec.arousal[f0:f1],
        "audio": rec.audio[a0:a1],
        "biosignal": rec.biosignal[b0:b1],
        "pain": rec.pain,
    }


def num_segments(num_frames, segment_frames):
  return -(-num_frames // segment_frames)


class SplitTable:
  """Where each recording of a split lives: built from the dataset metadata.

  Entries may carry their own frame rate (`fps`, real videos differ) and `subject`;
  `fps` is the rate of entries without one.
  """

  def __init__(self, entries, segment_frames, fps):
    self.names = [e["name"] for e in entries]
    self.num_frames = np.array([e["num_frames"] for e in entries], np.int64)
    self.pain = np.array([e["pain"] for e in entries], np.int64)
    self.fps = np.array([e.get("fps", fps) for e in entries], np.float64)
    self.subjects = [e.get("subject", e["name"]) for e in entries]
    self.segment_frames = segment_frames
    self.first_record = np.concatenate(
        [[0], np.cumsum([num_segments(n, segment_frames) for n in self.num_frames])[:-1]]
    ).astype(np.int64)

  def __len__(self):
    return len(self.names)

  def records_for(self, recording, lo_frame, hi_frame):
    """Record indices of `recording` covering frames [lo_frame, hi_frame), clipped to it."""
    lo = max(0, lo_frame)
    hi = min(int(self.num_frames[recording]), hi_frame)
    if hi <= lo:
      return []
    first = int(self.first_record[recording])
    return list(range(first + lo // self.segment_frames, first + (hi - 1) // self.segment_frames + 1))
