"""Training augmentation of face clips, drawn per clip as the authors' clip transforms do.

Brightness and contrast follow torchvision's `adjust_brightness` / `adjust_contrast`
(contrast blends each frame with the mean of its grayscale image), so an all-zero
frame (no face found) stays all-zero.
"""

import numpy as np

_GRAY = np.array([0.299, 0.587, 0.114], np.float32)


def frames(clips, rng, flip_prob=0.0, brightness=0.0, contrast=0.0):
  """(clips, frames, H, W, 3) uint8 -> the same with each clip flipped left-right with
  probability `flip_prob` and its brightness and contrast scaled by factors drawn from
  [1 - brightness, 1 + brightness] and [1 - contrast, 1 + contrast]."""
  if not (flip_prob or brightness or contrast):
    return clips
  n = clips.shape[0]
  flip = rng.random(n) < flip_prob
  b = rng.uniform(max(0.0, 1 - brightness), 1 + brightness, n).astype(np.float32)
  c = rng.uniform(max(0.0, 1 - contrast), 1 + contrast, n).astype(np.float32)
  x = clips.astype(np.float32)
  x = np.where(flip[:, None, None, None, None], x[:, :, :, ::-1], x)
  x = np.clip(x * b[:, None, None, None, None], 0, 255)
  gray_mean = (x @ _GRAY).mean(axis=(-2, -1), keepdims=True)[..., None]
  x = np.clip(c[:, None, None, None, None] * x + (1 - c[:, None, None, None, None]) * gray_mean,
              0, 255)
  return np.round(x).astype(np.uint8)
