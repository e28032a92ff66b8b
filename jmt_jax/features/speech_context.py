"""A speech encoder over a whole recording in long chunks, pooled per clip: the
alternative to encoding each clip's window on its own (the authors' way).

Aff-Wild2 puts a clip at every frame, each ~1 s window overlapping its neighbours by
all but one frame, so per-clip encoding runs the encoder about `fps` times over each
second of audio; chunked encoding runs it once (plus the chunks' context margins). A
clip's embedding is then the mean of the encoder frames lying wholly inside its window,
the frames per-clip encoding would average, but each seen with its chunk's context
rather than its window's: benchmarks/speech_encoders.py measures how far the two differ.

Encoder frames sit on a grid of `hop` samples (320 at 16 kHz for every wav2vec 2.0,
HuBERT and WavLM form), each `receptive` samples wide (400).
"""

import numpy as np

from jmt_jax.models import speech


def frame_geometry(cfg):
  """(hop, receptive field) in samples of the feature extractor of speech config `cfg`."""
  hop, field = 1, 1
  for k, s in zip(cfg.conv_kernel, cfg.conv_stride):
    field += (k - 1) * hop
    hop *= s
  return hop, field


def encode_recording(frames_of, waveform, cfg, chunk_seconds=10.0, margin_seconds=1.0,
                     batch=4):
  """(num_frames, ...) encoder frames of a whole recording's `waveform` (at the encoder's
  rate, float32), on the global grid: frame j covers samples [j * hop, j * hop + field).
  `frames_of` maps (N, samples) -> (N, frames, ...) (`SpeechEncoder.frames`, jitted). The
  recording is cut into chunks of `chunk_seconds` (a whole number of hops), each encoded
  with `margin_seconds` of its neighbours' audio either side (zeros past the ends), and
  each chunk's frames starting inside it are kept; `batch` chunks go per call."""
  hop, field = frame_geometry(cfg)
  rate = cfg.sample_rate
  step = max(1, int(round(chunk_seconds * rate / hop))) * hop
  margin = int(np.ceil(margin_seconds * rate / hop)) * hop
  total = max(0, (len(waveform) - field) // hop + 1)
  if not total:
    return None
  width = margin + step + margin + field - hop
  starts = np.arange(0, total * hop, step)
  padded = np.concatenate([np.zeros(margin, np.float32), np.asarray(waveform, np.float32),
                           np.zeros(width, np.float32)])
  chunks = np.stack([padded[s:s + width] for s in starts])
  keep = step // hop
  assert speech.frames_of(width, cfg.conv_kernel, cfg.conv_stride) >= margin // hop + keep
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
