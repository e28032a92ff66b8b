"""Prediction on a live stream: video frames and audio samples as they arrive.

`LivePredictor` takes frames and audio pieces in order, each with its time in seconds
from a common origin, and returns an `Update` for a frame as soon as the window ending on
it can be computed from the past alone: once the audio has reached the end of that
frame (or `max_audio_wait_s` later, the missing audio then being silence).

It is `predictor.Predictor` run causally, sharing its parts rather than copying them:
- pictures are put on the model's clock as `media.decode` puts a variable frame rate on
  a constant one: frame k is the picture at k / fps seconds, a late picture's rows hold
  the last one (the first, before it); of two pictures for one row the first is kept
  (decode keeps the later, which live would have to wait a frame for) and the second
  counted in `dropped`;
- the face is followed by the same `faces.tracking.Tracker` and cut by the same crop,
  "hold" holding the last face seen (as `TrackCrops(causal=True)` does);
- each clip is read by the training clip reader from a `stream.StreamStore` and
  embedded once (`Predictor.embeddings`); a frame encoder embeds each frame once;
- the window ending on a frame takes those embeddings (`Predictor.window_ends(frames=)`,
  `Predictor.window_outputs`) and the task reads its last clip (`causal_values`).
So its updates equal `Predictor.predict(video, causal=True, clip_stride=k)` on the same
frames (tests/inference/test_live.py). With `clip_stride=k` only every k-th frame (0, k,
2k...) is embedded and predicted; the frames between carry the last prediction and say
so (`computed`).
"""

import dataclasses
import math
import time

import numpy as np

from jmt_jax.data import clips as clips_lib
from jmt_jax.data import records
from jmt_jax.errors import BadInput
from jmt_jax.faces import crops as crops_lib
from jmt_jax.faces import tracking
from jmt_jax.inference import predictor as predictor_lib
from jmt_jax.inference import stream
from jmt_jax.models import model as model_lib

# Clips (and windows) a backbone (fusion) call takes: a few compiled shapes, the smallest
# that holds what is ready (usually one frame's).
CALL_SIZES = (1, 4, 16)


@dataclasses.dataclass
class Update:
  """The prediction for one frame of the stream."""

  frame: int  # row on the model's clock
  time_s: float  # frame / fps
  values: dict  # {column: float}: valence, arousal, or pain_probability (+ per class)
  found: dict  # {column: bool}: face_found, <modality>_found
  computed: bool  # False: carried from the last computed frame (clip_stride)
  box: tuple = None  # (x0, y0, x1, y1) of the followed face in the frame's pixels
  audio_db: float = None  # the frame's audio level (dBFS; -inf: digital silence)
  arrived: float = None  # time.monotonic() when its picture arrived


def _call_size(n):
  return next((s for s in CALL_SIZES if s >= n), CALL_SIZES[-1])


class LivePredictor:
  """A `predictor.Predictor` fed a stream (module docstring). `fps`: the model's clock;
  `audio=False`: no microphone, the voice is silent and flagged missing throughout."""

  def __init__(self, predictor, fps=25.0, clip_stride=1, audio=True, max_audio_wait_s=1.0):
    self.p = predictor
    if clip_stride < 1:
      raise ValueError(f"clip_stride={clip_stride}: use 1 or more")
    if predictor.uses("features") or predictor.uses("biosignal"):
      raise BadInput(f"this model reads {sorted(predictor.modalities)}: live prediction takes "
                     "a camera and a microphone only")
    if predictor.context:
      raise BadInput("this model's speech encoder reads chunks of the whole recording "
                     "(speech_context_seconds): predict on a recorded file instead")
    self.fps, self.stride = float(fps), int(clip_stride)
    self.max_wait = max(1, int(round(max_audio_wait_s * fps)))
    config = predictor.config.input
    self.clip, self.num_clips = config.clip_frames, config.num_clips
    self.audio_specs = {m: s for m, s in predictor.modalities.items()
                        if clips_lib.SIGNAL_OF_KIND.get(s["kind"]) == "audio"}
    self.audio_rate = float(predictor.rates["audio_rate"])
    self.hears = bool(self.audio_specs) and audio
    span_s = (self.clip * self.num_clips + 2) / self.fps + max(
        [s["window_seconds"] for s in self.audio_specs.values()], default=0.0)
    self.signal = stream.LiveSignal(keep=int(math.ceil((span_s + max_audio_wait_s + 1)
                                                       * self.audio_rate)))
    keep = self.clip * (self.num_clips + 1) + self.stride
    self.store = stream.StreamStore(self.fps, predictor.rates, {"audio": self.signal}, keep)
    self.face = predictor.face_spec()
    if self.face is not None:
      self.tracker = tracking.Tracker("largest")
      self.crop_kind = predictor_lib.face_crop_of(self.face)
      self.last_face = None
    self.rings = {m: stream.EmbeddingRing(model_lib.embedding_width(
        predictor.model.config.backbones[m])) for m in predictor.modalities}
    self.waiting = []  # frames whose audio has not all come: (frame, face, arrived)
    self.rows = 0  # frames on the clock so far
    self.last_picture = None
    self.last_values = None
    self.dropped = 0  # pictures that came for a frame already filled

  # ------------------------------------------------------------------ input
  def add_frame(self, rgb, time_s, arrived=None):
    """An RGB picture (H, W, 3) uint8 taken at `time_s`; returns the `Update`s now ready."""
    arrived = time.monotonic() if arrived is None else arrived
    row = int(round(time_s * self.fps))
    if row < self.rows:
      self.dropped += 1
      return []
    while self.rows < row:  # rows without a picture of their own hold the last one
      self._add_row(rgb if self.last_picture is None else self.last_picture, arrived)
    self._add_row(rgb, arrived)
    self.last_picture = rgb
    return self._ready()

  def add_audio(self, samples, time_s):
    """Mono int16 samples at the model's audio rate, the first at `time_s`."""
    if not self.audio_specs:
      raise BadInput(f"this model has no voice input (its inputs: {sorted(self.p.modalities)}): "
                     "turn the microphone off")
    if self.hears:
      self.signal.write(int(round(time_s * self.audio_rate)), samples)
    return self._ready()

  def finish(self):
    """Updates of the frames still waiting for audio, the audio that did not come being
    silence."""
    if self.waiting:
      self.signal.give_up_until(self._audio_stop(self.waiting[-1][0]))
    return self._ready()

  # ------------------------------------------------------------------ frames
  def _add_row(self, rgb, arrived):
    k = self.rows
    self.rows += 1
    face = None
    if self.face is None:
      crop = np.zeros((1, 1, 3), np.uint8)
    else:
      face = self.tracker(rgb).get(0)
      held = face or (self.last_face if self.face.get("missing_face") == "hold" else None)
      self.last_face = face or self.last_face
      crop = (crops_lib.crop(rgb, held, self.crop_kind, self.p.frame_size,
                             self.face.get("face_margin", 0.2)) if held is not None
              else np.zeros((self.p.frame_size,) * 2 + (3,), np.uint8))
    self.store.add_frame(k, crop)
    if k == 0:  # a clip wholly before frame 0 reads only zeros (Predictor: before_start)
      for m, r in self.p.embeddings(self.store, [-1], batch=1).items():
        self.rings[m].before_start = r[0]
    self.waiting.append((k, face, arrived))

  def _audio_stop(self, frame):
    return records.sample_at(frame + 1, self.audio_rate, self.fps)

  def _ready(self):
    if not self.waiting:
      return []
    if not self.hears:
      self.signal.give_up_until(self._audio_stop(self.waiting[-1][0]))
    elif len(self.waiting) > self.max_wait:  # the audio is late: stop waiting for it
      self.signal.give_up_until(self._audio_stop(self.waiting[-1 - self.max_wait][0]))
    n = 0
    while n < len(self.waiting) and self._audio_stop(self.waiting[n][0]) <= self.signal.length:
      n += 1
    ready, self.waiting = self.waiting[:n], self.waiting[n:]
    return self._predict(ready) if ready else []

  # ------------------------------------------------------------------ prediction
  def _predict(self, ready):
    frames = np.array([k for k, _, _ in ready])
    computed = frames[frames % self.stride == 0]
    outputs = {}
    if len(computed):
      ends = self.p.window_ends(frames=computed)
      self._embed_missing(ends)
      outs = self.p.window_outputs(self.rings, ends, _call_size(len(computed)))
      values = self.p.task.causal_values(outs, self.p.config)
      outputs = {int(k): {c: float(v[i]) for c, v in values.items()}
                 for i, k in enumerate(computed)}
      self._forget(int(frames[-1]))
    updates = []
    for k, face, arrived in ready:
      self.last_values = outputs.get(int(k), self.last_values)
      updates.append(Update(frame=int(k), time_s=k / self.fps, values=dict(self.last_values),
                            found=self._found(k, face), computed=int(k) in outputs,
                            box=None if face is None else tuple(float(x) for x in face.box),
                            audio_db=self._level(k), arrived=arrived))
    return updates

  def _embed_missing(self, ends):
    """Embeds the clips ending at `ends` (a frame encoder: their frames) not yet held."""
    groups = {}
    for m, spec in self.p.modalities.items():
      wanted = (clips_lib.frame_indices(ends.reshape(-1), spec, self.clip)
                if m in self.p.by_frame else ends)
      new = tuple(sorted({int(i) for i in np.unique(wanted) if i not in self.rings[m]}))
      if new:
        groups.setdefault(new, []).append(m)
    for indices, modalities in groups.items():
      for first in range(0, len(indices), CALL_SIZES[-1]):
        part = list(indices[first:first + CALL_SIZES[-1]])
        embedded = self.p.embeddings(
            self.store, part, modalities, _call_size(len(part)))
        for m in modalities:
          self.rings[m].put(part, embedded[m])

  def _forget(self, newest):
    oldest = newest - self.clip * (self.num_clips + 1) - self.stride
    for ring in self.rings.values():
      ring.forget_before(oldest)

  def _found(self, k, face):
    found = {}
    for m, s in self.p.modalities.items():
      column = predictor_lib.found_column(m, s)
      if s["kind"] == "frames":
        found[column] = face is not None
      else:
        found[column] = self.signal.present(records.sample_at(k, self.audio_rate, self.fps),
                                            self._audio_stop(k))
    return found

  def _level(self, k):
    if not self.audio_specs:
      return None
    samples = self.signal.read(records.sample_at(k, self.audio_rate, self.fps),
                               self._audio_stop(k)).astype(np.float64)
    rms = np.sqrt(np.mean(samples ** 2)) if len(samples) else 0.0
    return float(20 * np.log10(rms / 32768.0)) if rms > 0 else float("-inf")

  def warm_up(self):
    """Compiles the backbone and fusion calls of every size, so that the first frames of
    a stream are not kept waiting."""
    specs = dict(self.p.modalities)
    store = stream.StreamStore(self.fps, self.p.rates, {"audio": stream.LiveSignal(1)},
                               keep=1)
    store.add_frame(0, np.zeros((self.p.frame_size,) * 2 + (3,), np.uint8)
                    if self.face is not None else np.zeros((1, 1, 3), np.uint8))
    rings = {m: stream.EmbeddingRing(r.width) for m, r in self.rings.items()}
    for size in CALL_SIZES:
      for m, r in self.p.embeddings(store, [0] * size, specs, size).items():
        rings[m].before_start = r[0]
      self.p.window_outputs(rings, self.p.window_ends(frames=np.full(size, -1)), size)
