"""Training augmentation of face clips, drawn per clip as the authors' clip transforms do.

The parameters are drawn on the host (`draw`, from the Grain iterator's per-example
seed, so a restored iterator draws them again exactly) and applied by the model on the
device (`apply`), where the pixel arithmetic is cheap. Brightness and contrast follow
torchvision's `adjust_brightness` / `adjust_contrast` (contrast blends each frame with the
mean of its grayscale image), so an all-zero frame (no face found) stays all-zero.
"""

import jax.numpy as jnp
import numpy as np

_GRAY = (0.299, 0.587, 0.114)


def draw(rng, num_clips, flip_prob=0.0, brightness=0.0, contrast=0.0):
  """(num_clips, 3) float32 [flip, brightness factor, contrast factor] per clip: flip with
  probability `flip_prob`, factors from [1 - b, 1 + b] and [1 - c, 1 + c]."""
  flip = rng.random(num_clips) < flip_prob
  b = rng.uniform(max(0.0, 1 - brightness), 1 + brightness, num_clips)
  c = rng.uniform(max(0.0, 1 - contrast), 1 + contrast, num_clips)
  return np.stack([flip, b, c], axis=-1).astype(np.float32)


def apply(pixels, params):
  """(..., clips, frames, H, W, 3) float pixels in [0, 255] and (..., clips, 3) parameters
  -> the augmented pixels, rounded to whole values as a uint8 image would be."""
  per_clip = lambda v: v[..., None, None, None, None]
  x = jnp.where(per_clip(params[..., 0] > 0.5), pixels[..., ::-1, :], pixels)
  x = jnp.clip(x * per_clip(params[..., 1]), 0, 255)
  gray_mean = (x @ jnp.asarray(_GRAY, x.dtype)).mean(axis=(-2, -1), keepdims=True)[..., None]
  c = per_clip(params[..., 2])
  return jnp.round(jnp.clip(c * x + (1 - c) * gray_mean, 0, 255))
