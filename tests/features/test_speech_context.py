"""Chunked speech encoding: every frame of the recording's grid comes from exactly one
chunk, and a clip pools the frames wholly inside its window."""

import numpy as np
import pytest

from conftest import load_config
from jmt_jax.features import speech_context
from jmt_jax.models import speech


def _cfg():
  return load_config("affwild2", "audio_backbone=wavlm").model.backbones.audio


def _framing(hop, field):
  """A stand-in encoder whose frame is a function of its own samples only: the sum of
  each frame's samples weighted by their position in it."""
  weights = np.linspace(1, 2, field, dtype=np.float64)

  def frames_of(x):
    n = (x.shape[1] - field) // hop + 1
    idx = np.arange(n)[:, None] * hop + np.arange(field)[None]
    return (x[:, idx] * weights).sum(-1, keepdims=True)
  return frames_of


@pytest.mark.parametrize("seconds,chunk,margin", [(7.3, 2.0, 0.5), (1.0, 10.0, 1.0),
                                                  (3.0, 0.64, 0.0)])
def test_chunks_tile_the_recording_frame_grid(seconds, chunk, margin):
  cfg = _cfg()
  hop, field = speech.frame_geometry(cfg.conv_kernel, cfg.conv_stride)
  assert (hop, field) == (320, 400)
  wave = np.random.default_rng(0).standard_normal(int(seconds * 16000)).astype(np.float32)
  frames_of = _framing(hop, field)
  got = speech_context.encode_recording(frames_of, wave, cfg, chunk, margin, batch=3)
  np.testing.assert_allclose(got, frames_of(wave[None])[0], rtol=1e-6)


def test_a_clip_pools_the_frames_inside_its_window():
  frames = np.random.default_rng(1).standard_normal((50, 3)).astype(np.float32)
  starts, stops = np.array([-2000, 0, 321, 9000]), np.array([400, 1040, 5000, 9100])
  got = speech_context.pool_clips(frames, starts, stops, 320, 400)
  want = []
  for s, e in zip(starts, stops):
    inside = [j for j in range(50) if j * 320 >= s and j * 320 + 400 <= e]
    want.append(frames[inside].mean(0) if inside else np.zeros(3))
  np.testing.assert_allclose(got, np.array(want), rtol=1e-6)
