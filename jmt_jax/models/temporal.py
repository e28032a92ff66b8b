"""Temporal models: the per-frame embeddings of a clip (a frame encoder's, models.vit)
-> the clip's embedding, of the same width.

  mean, max: over the clip's frames, no parameters;
  conv: x + GELU(Conv1d(x)) over the frames (kernel `kernel`, 'same' padding), then
    their mean;
  transformer: learned frame-position embeddings added, a post-LN encoder of
    `num_layers` layers over the frames (models.attention.Encoder), then their mean.

They run after the backbones, in `MultimodalModel.fuse`, so that with a frozen frame
encoder the per-frame embeddings are computed once per stored frame (features.cache)
and the temporal model trains on them; its parameters are the group
`<modality>_temporal`, trained whether or not the backbones are frozen.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

from jmt_jax.models.attention import Encoder

KINDS = ("mean", "max", "conv", "transformer")


class TemporalModel(nn.Module):
  """(..., frames * width) per-frame embeddings side by side -> (..., width)."""

  kind: str
  frames: int
  width: int
  kernel: int = 3
  num_layers: int = 1
  num_heads: int = 8
  ffn_dim: int = 0  # 0: 4 * width

  @nn.compact
  def __call__(self, x):
    if self.kind not in KINDS:
      raise ValueError(f"temporal model {self.kind!r}: use one of {list(KINDS)}")
    if x.shape[-1] != self.frames * self.width:
      raise ValueError(f"a temporal model over {self.frames} frames of {self.width} features "
                       f"takes {self.frames * self.width} per clip, got {x.shape[-1]}")
    lead = x.shape[:-1]
    x = x.reshape((-1, self.frames, self.width))
    if self.kind == "max":
      return x.max(axis=1).reshape(lead + (self.width,))
    if self.kind == "conv":
      x = x + jax.nn.gelu(nn.Conv(self.width, (self.kernel,), padding="SAME", name="conv")(x))
    elif self.kind == "transformer":
      position = self.param("position_embeddings", nn.initializers.normal(0.02),
                            (self.frames, self.width))
      x = Encoder(self.num_layers, self.num_heads, self.ffn_dim or 4 * self.width,
                  name="encoder")(x + position.astype(x.dtype))
    return jnp.mean(x, axis=1).reshape(lead + (self.width,))


def build(cfg, frames, width):
  """The temporal model of config `cfg` (kind, kernel, num_layers, num_heads, ffn_dim)
  over `frames` frames of `width` features."""
  return TemporalModel(kind=cfg.kind, frames=frames, width=width, kernel=cfg.get("kernel", 3),
                       num_layers=cfg.get("num_layers", 1), num_heads=cfg.get("num_heads", 8),
                       ffn_dim=cfg.get("ffn_dim", 0))
