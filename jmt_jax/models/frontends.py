"""What turns a stored input into a backbone's input, inside the jitted model: pixels
normalised (after the training augmentation drawn on the host), audio windows turned
into the paper's log-mel spectrograms on the device.

`log_mel` is `data.logmel.log_mel` (torchaudio's conventions) in jax.numpy, float32;
tests/test_logmel.py holds it to the numpy version and to librosa within 1e-3 dB.
"""

import jax
import jax.numpy as jnp
import numpy as np

from jmt_jax.data import augment
from jmt_jax.data import logmel


def log_mel(waveforms, *, sample_rate, n_fft, win_length, hop_length, n_mels, top_db=80.0,
            mean=0.0, std=1.0):
  """(..., samples) float waveforms -> (..., n_mels, frames) float32 normalised log-mels."""
  x = jnp.asarray(waveforms, jnp.float32)
  pad = n_fft // 2
  x = jnp.pad(x, [(0, 0)] * (x.ndim - 1) + [(pad, pad)], mode="reflect")
  num_frames = 1 + (x.shape[-1] - n_fft) // hop_length
  idx = np.arange(n_fft)[None, :] + hop_length * np.arange(num_frames)[:, None]
  frames = x[..., idx] * jnp.asarray(logmel.window(n_fft, win_length), jnp.float32)
  spectrum = jnp.fft.rfft(frames, axis=-1)
  power = jnp.real(spectrum) ** 2 + jnp.imag(spectrum) ** 2
  mel = jnp.matmul(power, jnp.asarray(logmel.mel_filterbank(sample_rate, n_fft, n_mels),
                                      jnp.float32), precision=jax.lax.Precision.HIGHEST)
  db = 10.0 * jnp.log10(jnp.maximum(mel, 1e-10))
  db = jnp.maximum(db, db.max(axis=(-2, -1), keepdims=True) - top_db)
  return (jnp.swapaxes(db, -1, -2) - mean) / std


def prepare(x, backbone, spec=None, rates=None, augment_params=None):
  """A (N, ...) batch of stored per-clip inputs -> the backbone's input.

  `spec` is the modality's input config (None: `x` is already the backbone's input, as
  in unit tests of the backbones), `rates` the data's signal rates.
  """
  kind = spec["kind"] if spec is not None else None
  if kind == "logmel" or (kind is None and backbone.kind == "resnet2d" and x.ndim == 3):
    if kind == "logmel":
      x = log_mel(x.astype(jnp.float32) / 32768.0, sample_rate=rates["audio_rate"],
                  n_fft=spec["n_fft"], win_length=spec["win_length"],
                  hop_length=spec["hop_length"], n_mels=spec["n_mels"], top_db=spec["top_db"],
                  mean=spec["mean"], std=spec["std"])
    return x[..., None]
  if x.dtype == jnp.uint8:
    x = x.astype(jnp.float32)
    if augment_params is not None:
      x = augment.apply(x, augment_params)
    x = (x / 255.0 - jnp.asarray(backbone.mean)) / jnp.asarray(backbone.std)
  size = backbone.get("resize_to")
  if size and x.shape[-3:-1] != (size, size):
    x = jax.image.resize(x, x.shape[:-3] + (size, size, x.shape[-1]), "bilinear")
  return x
