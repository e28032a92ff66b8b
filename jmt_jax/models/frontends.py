"""What turns a stored input into a backbone's input, inside the jitted model: pixels
normalised (after the training augmentation drawn on the host), audio windows turned
into the paper's log-mel spectrograms on the device.

`log_mel` follows `torchaudio.transforms.MelSpectrogram` (HTK mel scale, no filter norm,
centred reflect-padded frames, periodic Hann window of `win_length` centred in `n_fft`)
then `AmplitudeToDB(top_db=...)` per spectrogram and the paper's affine normalisation
`(x - mean) / std`, in float32; tests/test_logmel.py holds it to librosa and to a
float64 numpy version within 1e-3 dB.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from jmt_jax.models import resample

_GRAY = (0.299, 0.587, 0.114)


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
  """A periodic Hann window of `win_length` samples centred in `n_fft` (torch.stft's)."""
  out = np.zeros(n_fft)
  left = (n_fft - win_length) // 2
  out[left:left + win_length] = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(win_length) / win_length)
  return out


def log_mel(waveforms, *, sample_rate, n_fft, win_length, hop_length, n_mels, top_db=80.0,
            mean=0.0, std=1.0):
  """(..., samples) float waveforms -> (..., n_mels, frames) float32 normalised log-mels."""
  x = jnp.asarray(waveforms, jnp.float32)
  pad = n_fft // 2
  x = jnp.pad(x, [(0, 0)] * (x.ndim - 1) + [(pad, pad)], mode="reflect")
  num_frames = 1 + (x.shape[-1] - n_fft) // hop_length
  idx = np.arange(n_fft)[None, :] + hop_length * np.arange(num_frames)[:, None]
  frames = x[..., idx] * jnp.asarray(window(n_fft, win_length), jnp.float32)
  spectrum = jnp.fft.rfft(frames, axis=-1)
  power = jnp.real(spectrum) ** 2 + jnp.imag(spectrum) ** 2
  mel = jnp.matmul(power, jnp.asarray(mel_filterbank(sample_rate, n_fft, n_mels),
                                      jnp.float32), precision=jax.lax.Precision.HIGHEST)
  db = 10.0 * jnp.log10(jnp.maximum(mel, 1e-10))
  db = jnp.maximum(db, db.max(axis=(-2, -1), keepdims=True) - top_db)
  return (jnp.swapaxes(db, -1, -2) - mean) / std


def augment(pixels, params):
  """(..., clips, frames, H, W, 3) float pixels in [0, 255] and (..., clips, 3) parameters
  drawn by `data.augment.draw` -> the augmented pixels, rounded to whole values as a uint8
  image would be. Brightness and contrast follow torchvision's `adjust_brightness` /
  `adjust_contrast` (contrast blends each frame with the mean of its grayscale image), so
  an all-zero frame (no face found) stays all-zero."""
  per_clip = lambda v: v[..., None, None, None, None]
  x = jnp.where(per_clip(params[..., 0] > 0.5), pixels[..., ::-1, :], pixels)
  x = jnp.clip(x * per_clip(params[..., 1]), 0, 255)
  gray_mean = (x @ jnp.asarray(_GRAY, x.dtype)).mean(axis=(-2, -1), keepdims=True)[..., None]
  c = per_clip(params[..., 2])
  return jnp.round(jnp.clip(c * x + (1 - c) * gray_mean, 0, 255))


def prepare(x, backbone, spec, rates, augment_params=None):
  """A (N, ...) batch of stored per-clip inputs of a modality read as `spec` (its input
  config) says -> the backbone's input (a pair of backbones: a tuple of their inputs);
  `rates` are the data's signal rates."""
  if (spec["kind"] == "features") != (backbone.kind == "precomputed"):
    raise ValueError(f"a {backbone.kind} backbone with {spec['kind']!r} inputs: features "
                     f"extracted elsewhere go with the 'precomputed' backbone, alone")
  if spec["kind"] == "features":
    return x
  if backbone.kind == "pair":
    return tuple(prepare(x, backbone[k], spec, rates, augment_params) for k in ("first", "second"))
  if "sample_rate" in backbone:  # a speech encoder: the window's waveform at its rate
    if spec["kind"] not in ("logmel", "waveform"):
      raise ValueError(f"a {backbone.kind} backbone reads audio, not {spec['kind']!r} inputs")
    return waveform(x, rates["audio_rate"], backbone.sample_rate, backbone.normalize_waveform)
  if spec["kind"] == "waveform":
    raise ValueError(f"a {backbone.kind} backbone does not read waveforms")
  if spec["kind"] == "logmel":
    x = log_mel(x.astype(jnp.float32) / 32768.0, sample_rate=rates["audio_rate"],
                n_fft=spec["n_fft"], win_length=spec["win_length"],
                hop_length=spec["hop_length"], n_mels=spec["n_mels"], top_db=spec["top_db"],
                mean=spec["mean"], std=spec["std"])
    return x[..., None]
  if spec["kind"] == "frames":
    x = x.astype(jnp.float32)
    if augment_params is not None:
      x = augment(x, augment_params)
    x = (x / 255.0 - jnp.asarray(backbone.mean)) / jnp.asarray(backbone.std)
  return resize(x, backbone.get("resize_to"))


def waveform(x, rate, to_rate, normalize):
  """(N, samples) int16 audio at `rate` -> float32 in [-1, 1) at `to_rate`; with
  `normalize`, zero mean and unit variance per clip (transformers' feature extractors'
  `do_normalize`: (x - mean) / sqrt(var + 1e-7))."""
  x = resample.resample(x.astype(jnp.float32) / 32768.0, rate, to_rate)
  return normalized(x) if normalize else x


def normalized(x):
  """Zero mean and unit variance along the last axis: (x - mean) / sqrt(var + 1e-7)."""
  mean = x.mean(axis=-1, keepdims=True)
  return (x - mean) / jnp.sqrt(jnp.square(x - mean).mean(axis=-1, keepdims=True) + 1e-7)


@functools.cache
def _bilinear_matrix(size_in, size_out):
  """(size_out, size_in) weights of `jax.image.resize`'s 'bilinear' along one axis: it is
  linear and separable, so resizing the identity gives them."""
  with jax.ensure_compile_time_eval():
    return np.asarray(jax.image.resize(np.eye(size_in, dtype=np.float32),
                                       (size_out, size_in), "bilinear"))


def resize(x, size):
  """(..., H, W, C) frames resized to `size` x `size` (None: as they are), bilinear with
  half-pixel centres, as the authors' `F.interpolate(..., mode='trilinear')` resizes
  clips for their I3D: `jax.image.resize`'s weights, applied here as two matmuls so
  that they carry the caller's name scope (the front end's, in a lowered program)."""
  h, w = x.shape[-3:-1]
  if size and (h, w) != (size, size):
    x = jnp.einsum("hi,...ijc,wj->...hwc", _bilinear_matrix(h, size), x,
                   _bilinear_matrix(w, size), precision=jax.lax.Precision.HIGHEST)
  return x
