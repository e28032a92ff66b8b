"""The on-the-fly log-mel features against librosa, with the paper's parameters (44.1 kHz; n_fft 1024, a 20 ms Hann window, 10 ms hop, 64 mels; dB with
top_db 80; (x + 14.8) / 19.895)."""

import jax
import librosa
import numpy as np

from conftest import load_config
from jmt_jax.models import frontends


def librosa_log_mel(waves, rate, a):
  """(..., n_mels, frames) normalised log-mels of float64 `waves` through librosa (HTK mel,
  no filter norm, centred reflect padding, `power_to_db(top_db=...)` per spectrogram):
  torchaudio's conventions, computed by an independent implementation."""
  mel = librosa.feature.melspectrogram(
      y=np.asarray(waves, np.float64), sr=rate, n_fft=a.n_fft, hop_length=a.hop_length,
      win_length=a.win_length, window="hann", center=True, pad_mode="reflect", power=2.0,
      n_mels=a.n_mels, htk=True, norm=None, dtype=np.float64)
  db = np.stack([librosa.power_to_db(m, ref=1.0, amin=1e-10, top_db=a.top_db)
                 for m in mel.reshape((-1,) + mel.shape[-2:])]).reshape(mel.shape)
  return (db - a.mean) / a.std


def test_log_mel_matches_librosa_with_the_papers_parameters():
  a = load_config("affwild2", "jmt").input.modalities.audio
  rate = 44100
  n = int(round(a.window_seconds * rate))
  assert n == 45599
  rng = np.random.default_rng(0)
  t = np.arange(n) / rate
  wave = 0.3 * np.sin(2 * np.pi * 220 * t) * (t > 0.3) + 0.05 * rng.normal(size=n)
  wave[:5000] = 0.0  # left zero-padding, as at the start of a recording

  ours = jax.jit(lambda x: frontends.log_mel(
      x, sample_rate=rate, n_fft=a.n_fft, win_length=a.win_length, hop_length=a.hop_length,
      n_mels=a.n_mels, top_db=a.top_db, mean=a.mean, std=a.std))(wave[None].astype(np.float32))
  want = librosa_log_mel(wave, rate, a)
  assert ours[0].shape == want.shape == (a.n_mels, 1 + n // a.hop_length)
  # 1e-3 dB, in the normalised units the model sees.
  np.testing.assert_allclose(ours[0], want, atol=1e-3 / a.std, rtol=0)
  assert np.ptp(want) * a.std > 60  # the test covers the top_db clamp's range


def test_model_input_log_mel_matches_librosa_within_a_thousandth_of_a_db():
  """The model's jitted log-mel (float32, from int16 audio windows as the data stores them)
  against librosa in float64, on voice-like audio with silence and a quiet tail."""
  a = load_config("affwild2", "jmt").input.modalities.audio
  rate, n = 44100, 45599
  rng = np.random.default_rng(1)
  t = np.arange(n) / rate
  voice = 0.4 * np.sin(2 * np.pi * (140 + 40 * np.sin(3 * t)) * t) * (np.sin(7 * t) > 0)
  waves = np.stack([voice + 0.01 * rng.normal(size=n),  # loud
                    1e-3 * rng.normal(size=n),  # very quiet
                    np.where(t < 0.6, 0.0, voice)])  # left-padded, as at a recording's start
  audio = np.round(np.clip(waves, -1, 1) * 32767).astype(np.int16)
  params = dict(n_fft=a.n_fft, win_length=a.win_length, hop_length=a.hop_length,
                n_mels=a.n_mels, top_db=a.top_db, mean=a.mean, std=a.std)
  want = librosa_log_mel(audio / 32768.0, rate, a)
  backbone = load_config("affwild2", "jmt").model.backbones.audio
  got = jax.jit(lambda x: frontends.prepare(x, backbone, dict(kind="logmel", **params),
                                            {"audio_rate": rate}))(audio)
  assert got.shape == want.shape + (1,)
  db_error = np.abs(np.asarray(got)[..., 0] - want) * a.std
  assert db_error.max() < 1e-3, db_error.max()
