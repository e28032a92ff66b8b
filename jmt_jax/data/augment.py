"""Training augmentation of face clips, drawn per clip as the authors' clip transforms do.

The parameters are drawn on the host (`draw`, from the Grain iterator's per-example
seed, so a restored iterator draws them again exactly) and applied by the model on the
device (`models.frontends.augment`), where the pixel arithmetic is cheap.
"""

import numpy as np


def draw(rng, num_clips, flip_prob=0.0, brightness=0.0, contrast=0.0):
  """(num_clips, 3) float32 [flip, brightness factor, contrast factor] per clip: flip with
  probability `flip_prob`, factors from [1 - b, 1 + b] and [1 - c, 1 + c]."""
  flip = rng.random(num_clips) < flip_prob
  b = rng.uniform(max(0.0, 1 - brightness), 1 + brightness, num_clips)
  c = rng.uniform(max(0.0, 1 - contrast), 1 + contrast, num_clips)
  return np.stack([flip, b, c], axis=-1).astype(np.float32)
