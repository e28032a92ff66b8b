"""A speech encoder over a whole recording in long chunks, pooled per clip: the
alternative to encoding each clip's window on its own (the authors' way).

Aff-Wild2 puts a clip at every frame, each ~1 s window overlapping its neighbours by
all but one frame, so per-clip encoding runs the encoder about `fps` times over each
second of audio; chunked encoding runs it once (plus the chunks' context margins). A
clip's embedding is then the mean of the encoder frames lying wholly inside its window,
the frames per-clip encoding would average, but each seen with its chunk's context
rather than its window's: benchmarks/speech_encoders.py measures how far the two differ.

Encoder frames sit on a grid of `hop` samples (320 at 16 kHz for every wav2vec 2.0,
HuBERT and WavLM form), each `field` samples wide (400): models.speech.frame_geometry.
"""

import math

import numpy as np
from scipy import signal

from jmt_jax.data import clips as clips_lib
from jmt_jax.data import records
from jmt_jax.models import model as model_lib
from jmt_jax.models import speech
from jmt_jax.runtime import compiler


def encode_recording(frames_of, waveform, cfg, chunk_seconds=10.0, margin_seconds=1.0,
                     batch=4):
  """(num_frames, ...) encoder frames of a whole recording's `waveform` (at the encoder's
  rate, float32), on the global grid: frame j covers samples [j * hop, j * hop + field).
  `frames_of` maps (N, samples) -> (N, frames, ...) (`SpeechEncoder.frames`, jitted). The
  recording is cut into chunks of `chunk_seconds` (a whole number of hops), each encoded
  with `margin_seconds` of its neighbours' audio either side (zeros past the ends), and
  each chunk's frames starting inside it are kept; `batch` chunks go per call."""
  hop, field = speech.frame_geometry(cfg.conv_kernel, cfg.conv_stride)
  rate = cfg.sample_rate
  step = max(1, int(round(chunk_seconds * rate / hop))) * hop
  margin = int(np.ceil(margin_seconds * rate / hop)) * hop
  total = speech.frames_of(len(waveform), cfg.conv_kernel, cfg.conv_stride)
  if not total:
    return None
  width = margin + step + margin + field - hop
  starts = np.arange(0, total * hop, step)
  padded = np.concatenate([np.zeros(margin, np.float32), np.asarray(waveform, np.float32),
                           np.zeros(width, np.float32)])
  chunks = np.stack([padded[s:s + width] for s in starts])
  keep = step // hop  # a chunk's width gives margin // hop + keep + margin // hop frames
  parts = []
  for first in range(0, len(chunks), batch):
    part = chunks[first:first + batch]
    part = np.concatenate([part, np.zeros((batch - len(part), width), np.float32)])
    parts.append(np.asarray(frames_of(part))[:, margin // hop:margin // hop + keep])
  out = np.concatenate(parts)[:len(chunks)]
  return out.reshape((-1,) + out.shape[2:])[:total]


def pool_clips(frames, starts, stops, hop, field):
  """(clips, ...) mean of the frames lying wholly in each window [start, stop) of
  samples; a window holding none (or only before the recording) gets zeros."""
  total = len(frames)
  csum = np.concatenate([np.zeros((1,) + frames.shape[1:], np.float64),
                         np.cumsum(frames, axis=0, dtype=np.float64)])
  first = np.clip(-(-np.asarray(starts) // hop), 0, total)
  last = np.clip((np.asarray(stops) - field) // hop + 1, 0, total)
  last = np.maximum(last, first)
  count = (last - first).reshape((-1,) + (1,) * (frames.ndim - 1))
  sums = csum[last] - csum[first]
  return np.where(count > 0, sums / np.maximum(count, 1), 0.0).astype(np.float32)


class ContextEmbedder:
  """The chunked speech embeddings of a model's clips, one recording at a time: for each
  modality whose speech encoder has `chunk_seconds` > 0, `batch entries` for
  `model.embed` ({modality/context: (clips, width)}) of the clips of a recording of a
  store ending at given frames. A recording is encoded once, at its first request."""

  def __init__(self, model, variables, specs):
    self.specs = specs
    self.members = {m: c for m in specs
                    for c in [model_lib.chunked_member(model.config.backbones[m])] if c}
    self._frames = {m: compiler.jit(lambda w, m=m: model.apply(variables, m, w,
                                                               method=model.context_frames))
                    for m in self.members}
    self._recording = None

  def __bool__(self):
    return bool(self.members)

  def _encode(self, store, recording):
    if self._recording is not None and self._recording[0] is store and (
        self._recording[1] == recording):
      return self._cached
    rate, fps = store.rates["audio_rate"], store.fps(recording)
    total = records.sample_at(store.num_frames(recording), rate, fps)
    audio = store.read_signal(recording, "audio", 0, total).astype(np.float64) / 32768.0
    out = {}
    for m, (_, _, cfg) in self.members.items():
      g = math.gcd(int(rate), int(cfg.sample_rate))
      # The model's front-end filter (models.resample equals it), on the host: one
      # compile for every recording length.
      wave = signal.resample_poly(audio, int(cfg.sample_rate) // g, int(rate) // g)
      out[m] = encode_recording(self._frames[m], wave.astype(np.float32), cfg,
                                cfg.chunk_seconds, cfg.chunk_margin_seconds)
    self._recording, self._cached = (store, recording), out
    return out

  def __call__(self, store, recording, ends):
    frames = self._encode(store, recording)
    rate, fps = store.rates["audio_rate"], store.fps(recording)
    out = {}
    for m, (_, _, cfg) in self.members.items():
      hop, field = speech.frame_geometry(cfg.conv_kernel, cfg.conv_stride)
      scale = cfg.sample_rate / rate
      n = math.ceil(clips_lib.signal_window(self.specs[m], store.rates) * scale)
      stops = np.round(clips_lib.window_stops(ends, rate, fps) * scale).astype(np.int64)
      if frames[m] is None:  # a recording shorter than one encoder frame
        states, width = model_lib.embedding_layout(cfg)[0]
        out[model_lib.context_key(m)] = np.zeros((len(ends), states * width), np.float32)
        continue
      pooled = pool_clips(frames[m], stops - n, stops, hop, field)
      out[model_lib.context_key(m)] = pooled.reshape(len(ends), -1)
    return out
