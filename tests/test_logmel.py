"""The on-the-fly log-mel features against librosa with the paper's parameters (SPEC.md 1.1)."""

import librosa
import numpy as np

from conftest import load_config
from jmt_jax.data import logmel


def test_log_mel_matches_librosa_with_the_papers_parameters():
  a = load_config("affwild2", "jmt").input.modalities.audio
  rate = 44100
  n = int(round(a.window_seconds * rate))
  assert n == 45599
  rng = np.random.default_rng(0)
  t = np.arange(n) / rate
  wave = 0.3 * np.sin(2 * np.pi * 220 * t) * (t > 0.3) + 0.05 * rng.normal(size=n)
  wave[:5000] = 0.0  # left zero-padding, as at the start of a recording

  ours = logmel.log_mel(wave[None], sample_rate=rate, n_fft=a.n_fft, win_length=a.win_length,
                        hop_length=a.hop_length, n_mels=a.n_mels, top_db=a.top_db, mean=a.mean,
                        std=a.std)[0]
  mel = librosa.feature.melspectrogram(
      y=wave, sr=rate, n_fft=a.n_fft, hop_length=a.hop_length, win_length=a.win_length,
      window="hann", center=True, pad_mode="reflect", power=2.0, n_mels=a.n_mels, htk=True,
      norm=None)
  db = librosa.power_to_db(mel, ref=1.0, amin=1e-10, top_db=a.top_db)
  want = (db - a.mean) / a.std
  assert ours.shape == want.shape == (a.n_mels, 1 + n // a.hop_length)
  # 1e-3 dB, in the normalised units the model sees.
  np.testing.assert_allclose(ours, want, atol=1e-3 / a.std, rtol=0)
  assert (db.max() - db.min()) > 60  # the test covers the top_db clamp's range
