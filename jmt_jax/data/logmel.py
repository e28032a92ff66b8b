"""Log-mel spectrograms in numpy, with torchaudio's conventions: the reference that the
model's on-device version (models.frontends.log_mel) is tested against.

Matches `torchaudio.transforms.MelSpectrogram` (HTK mel scale, no filter norm,
centred reflect-padded frames, periodic Hann window of `win_length` centred in
`n_fft`) followed by `AmplitudeToDB(top_db=...)` per spectrogram, then the affine
normalisation `(x - mean) / std` the paper applies.
"""

import functools

import numpy as np


def _hz_to_mel(f):
  return 2595.0 * np.log10(1.0 + f / 700.0)


def _mel_to_hz(m):
  return 700.0 * (10.0 ** (m / 2595.0) - 1.0)


@functools.lru_cache(maxsize=16)
def mel_filterbank(sample_rate, n_fft, n_mels, f_min=0.0, f_max=None):
  """Triangular HTK filters, (n_fft // 2 + 1, n_mels), as torchaudio.functional.melscale_fbanks."""
  f_max = sample_rate / 2 if f_max is None else f_max
  all_freqs = np.linspace(0, sample_rate // 2, n_fft // 2 + 1)
  f_pts = _mel_to_hz(np.linspace(_hz_to_mel(f_min), _hz_to_mel(f_max), n_mels + 2))
  f_diff = np.diff(f_pts)
  slopes = f_pts[None, :] - all_freqs[:, None]
  down = -slopes[:, :-2] / f_diff[:-1]
  up = slopes[:, 2:] / f_diff[1:]
  return np.maximum(0.0, np.minimum(down, up))


@functools.lru_cache(maxsize=16)
def window(n_fft, win_length):
  window = np.zeros(n_fft)
  left = (n_fft - win_length) // 2
  window[left:left + win_length] = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(win_length) / win_length)
  return window


def log_mel(waveforms, *, sample_rate, n_fft, win_length, hop_length, n_mels,
            top_db=80.0, mean=0.0, std=1.0):
  """(..., samples) float waveforms -> (..., n_mels, frames) float32 normalised log-mels."""
  waveforms = np.asarray(waveforms, np.float64)
  pad = n_fft // 2
  padded = np.pad(waveforms, [(0, 0)] * (waveforms.ndim - 1) + [(pad, pad)], mode="reflect")
  num_frames = 1 + (padded.shape[-1] - n_fft) // hop_length
  idx = np.arange(n_fft)[None, :] + hop_length * np.arange(num_frames)[:, None]
  frames = padded[..., idx] * window(n_fft, win_length)
  power = np.abs(np.fft.rfft(frames, axis=-1)) ** 2
  mel = power @ mel_filterbank(sample_rate, n_fft, n_mels)
  db = 10.0 * np.log10(np.maximum(mel, 1e-10))
  floor = db.max(axis=(-2, -1), keepdims=True) - top_db
  db = np.maximum(db, floor)
  return ((np.swapaxes(db, -1, -2) - mean) / std).astype(np.float32)


def num_frames(num_samples, hop_length):
  return 1 + num_samples // hop_length
