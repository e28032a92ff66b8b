"""The on-disk records: one per video frame, and one per segment of signals.

A training window of the paper uses every 4th frame of the 512 it spans, so frames are
stored one per record, as encoded JPEG bytes: a window reads and decodes only the frames
its clips use (about 5 KB each instead of 38 KB of raw pixels, parsed or not). Audio and
biosignals are read whole over a window's span, so they are stored in segment records
of `segment_frames` frames' worth of samples, as raw little-endian bytes (no per-value
protobuf encoding), cut at the sample that corresponds to each segment's first frame.

A recording of N frames is N frame records followed by its signal segments, in order; the
split's table of recordings (name, frame count, first record) goes into the dataset's
metadata, so a reader finds any frame or segment by arithmetic, without scanning.
"""

import contextlib
import dataclasses

import cv2
import numpy as np
import tensorflow_datasets as tfds
from tensorflow_datasets.core import example_serializer
from tensorflow_datasets.core.features import Encoding
from tensorflow_datasets.proto import tf_example_pb2

INVALID_LABEL = -5.0
# The affect dimensions every frame is labelled with, in the order frame records store them.
DIMENSIONS = ("valence", "arousal")
# Version of this layout, written into manifests and builder configs; shards of another
# version are refused with the command that rewrites them (data.prepared).
FORMAT = 2
# JPEG quality of frames the preparation encodes itself (the built-in data, BioVid crops,
# Aff-Wild2 crops resized to another frame size), with 4:2:0 chroma subsampling (libjpeg's
# default). BUILD_NOTES.md gives its measured effect on the pixels, the bytes and decoding.
JPEG_QUALITY = 90
ENCODING = f"jpeg q{JPEG_QUALITY} 4:2:0"  # part of the built datasets' cache keys
# Signal keys, their stored dtypes and the names of their rates.
SIGNAL_DTYPES = {"audio": np.int16, "biosignal": np.float32}
RATE_KEYS = {"audio": "audio_rate", "biosignal": "bio_rate"}


@dataclasses.dataclass
class Recording:
  """One recording, all arrays indexed by time from its first frame."""

  jpegs: list  # N encoded frames (bytes); b"" where the frame is all zeros (no face)
  face_found: np.ndarray  # (N,) bool
  valence: np.ndarray  # (N,) float32, INVALID_LABEL where unlabelled
  arousal: np.ndarray  # (N,) float32
  audio: np.ndarray  # (round(N * audio_rate / fps),) int16
  biosignal: np.ndarray  # (round(N * bio_rate / fps), channels) float32
  pain: int


# The per-frame and per-sample arrays of a `Recording`, by field name.
ARRAYS = tuple(f.name for f in dataclasses.fields(Recording) if f.name not in ("jpegs", "pain"))


def encode_frame(rgb, quality=JPEG_QUALITY):
  """JPEG bytes of an (H, W, 3) uint8 RGB frame; b"" for an all-zero frame."""
  if not rgb.any():
    return b""
  ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(rgb[..., ::-1]),
                         [cv2.IMWRITE_JPEG_QUALITY, quality, cv2.IMWRITE_JPEG_SAMPLING_FACTOR,
                          cv2.IMWRITE_JPEG_SAMPLING_FACTOR_420])
  if not ok:
    raise ValueError(f"could not JPEG-encode a frame of shape {rgb.shape}")
  return buf.tobytes()


def decode_frames(jpegs, size):
  """(len(jpegs), size, size, 3) uint8 RGB; b"" decodes as zeros."""
  out = np.zeros((len(jpegs), size, size, 3), np.uint8)
  for i, data in enumerate(jpegs):
    if data:
      bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
      if bgr is None or bgr.shape[:2] != (size, size):
        raise ValueError(f"a stored frame is not a {size}x{size} JPEG "
                         f"({'undecodable' if bgr is None else bgr.shape[:2]})")
      out[i] = bgr[..., ::-1]
  return out


def record_features(signals):
  """The features of every record; `signals` is {key: channels (0: a 1-D signal)} of the
  signals this dataset stores (Aff-Wild2 has no biosignal, BioVid no audio)."""
  features = {
      "jpeg": tfds.features.Tensor(shape=(), dtype=np.object_),
      "labels": tfds.features.Tensor(shape=(3,), dtype=np.float32),  # valence, arousal, face_found
  }
  for key, channels in sorted(signals.items()):
    shape = (None, channels) if channels else (None,)
    features[key] = tfds.features.Tensor(shape=shape, dtype=SIGNAL_DTYPES[key],
                                         encoding=Encoding.BYTES)
  return tfds.features.FeaturesDict(features)


def parse_record(serialized, signals=()):
  """The `jpeg` bytes, `labels` and the signals named in `signals` ({key: channels}) of a
  serialized record: what tensorflow-datasets decodes from `record_features`, without its
  per-feature overhead (2.5 us a frame record here instead of 36; tests/test_data.py
  holds the two equal)."""
  feature = tf_example_pb2.Example.FromString(serialized).features.feature
  out = {"jpeg": feature["jpeg"].bytes_list.value[0],
         "labels": np.array(feature["labels"].float_list.value, np.float32)}
  for key, channels in dict(signals).items():
    values = np.frombuffer(feature[key].bytes_list.value[0], SIGNAL_DTYPES[key])
    out[key] = values.reshape(-1, channels) if channels else values
  return out


def serialized_sources(builder):
  """{split: random access to its serialized records} of a prepared tfds builder."""
  return builder.as_data_source(deserialize_method=tfds.decode.DeserializeMethod.RAW_BYTES)


def stored_signals(features):
  """{signal key: channels} of the signals a dataset with `features` stores."""
  return {k: (features[k].shape[1] if len(features[k].shape) > 1 else 0)
          for k in SIGNAL_DTYPES if k in features}


def sample_at(frame, rate, fps):
  """Index of the first signal sample at or after the start of `frame`."""
  return int(round(frame * rate / fps))


def num_segments(num_frames, segment_frames):
  return -(-num_frames // segment_frames)


def recording_records(rec, signals, segment_frames, fps, rates):
  """The records of one recording, in stored order: its frames, then its signal segments."""
  n = len(rec.valence)
  empty = {key: np.zeros((0, channels) if channels else (0,), SIGNAL_DTYPES[key])
           for key, channels in signals.items()}
  for f in range(n):
    yield {"jpeg": rec.jpegs[f], **empty,
           "labels": np.array([rec.valence[f], rec.arousal[f], rec.face_found[f]], np.float32)}
  for f0 in range(0, n, segment_frames):
    f1 = min(n, f0 + segment_frames)
    record = {"jpeg": b"", "labels": np.zeros(3, np.float32)}
    for key in signals:
      rate = rates[RATE_KEYS[key]]
      record[key] = getattr(rec, key)[sample_at(f0, rate, fps):sample_at(f1, rate, fps)]
    yield record


def num_records(num_frames, segment_frames):
  return num_frames + num_segments(num_frames, segment_frames)


@dataclasses.dataclass
class Split:
  """The recordings of one split: where they are stored and which of them it holds.

  A cross-validation fold is a `Split` over a subset of one stored split's recordings.
  """

  source: object  # random access to the serialized records (see `parse_record`)
  table: "SplitTable"
  recordings: np.ndarray  # indices into `table`


@dataclasses.dataclass
class Dataset:
  """An opened dataset: its splits, its signal rates (audio_rate, bio_rate, fps), frame
  size, and the directory its records are stored in."""

  splits: dict
  rates: dict
  frame_size: int
  directory: str


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
        [[0], np.cumsum([num_records(n, segment_frames) for n in self.num_frames])[:-1]]
    ).astype(np.int64)

  def __len__(self):
    return len(self.names)

  def frame_records(self, recording, frames):
    """Record indices of `frames` (all inside the recording)."""
    return self.first_record[recording] + np.asarray(frames, np.int64)

  def segment_records(self, recording, lo_frame, hi_frame):
    """Signal-segment record indices of `recording` covering frames [lo_frame, hi_frame),
    clipped to it, and the first frame of the first of them."""
    n = int(self.num_frames[recording])
    lo, hi = max(0, lo_frame), min(n, hi_frame)
    if hi <= lo:
      return [], 0
    first = int(self.first_record[recording]) + n
    s0, s1 = lo // self.segment_frames, (hi - 1) // self.segment_frames + 1
    return list(range(first + s0, first + s1)), s0 * self.segment_frames


class _SortedSerializer(example_serializer.ExampleSerializer):
  """tfds' serializer writing each record's feature map in key order. Protobuf writes
  maps in its hash tables' order, which changes from process to process, so the same
  records gave other bytes, and other shard checksums, run after run."""

  def serialize_example(self, example):
    return self.get_tf_example(example).SerializeToString(deterministic=True)


@contextlib.contextmanager
def deterministic_records():
  """Within it, tfds writes the same bytes for the same records in every process (it
  builds its serializer from this module attribute; there is no option for it)."""
  default = example_serializer.ExampleSerializer
  example_serializer.ExampleSerializer = _SortedSerializer
  try:
    yield
  finally:
    example_serializer.ExampleSerializer = default
