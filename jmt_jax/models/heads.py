"""Task heads on fused per-clip features (B, T, D)."""

from typing import Sequence

import flax.linen as nn

from jmt_jax.data.records import DIMENSIONS


class ValenceArousalHead(nn.Module):
  """Per clip, one Linear-ReLU-Dropout-Linear regressor for each affect dimension
  (valence and arousal)."""

  hidden: int = 128
  dropout: float = 0.0

  @nn.compact
  def __call__(self, x, train=False):
    out = {}
    for name in DIMENSIONS:
      y = nn.relu(nn.Dense(self.hidden, name=f"{name}_fc1")(x))
      y = nn.Dropout(self.dropout, deterministic=not train)(y)
      out[name] = nn.Dense(1, name=f"{name}_fc2")(y)[..., 0]
    return out


class PainHead(nn.Module):
  """Class logits from the last clip through a ReLU MLP (BioVid: 1024-512-256-64)."""

  num_classes: int
  mlp: Sequence[int] = ()

  @nn.compact
  def __call__(self, x, train=False):
    del train
    x = x[:, -1]
    for i, width in enumerate(self.mlp):
      x = nn.relu(nn.Dense(width, name=f"mlp_{i}")(x))
    return {"logits": nn.Dense(self.num_classes, name="logits")(x)}


def build_head(task, cfg):
  """The head of `task` (a config's task name: jmt_jax.tasks) with the sizes of `cfg`."""
  if task == "valence_arousal":
    return ValenceArousalHead(hidden=cfg.hidden, dropout=cfg.dropout, name="head")
  if task == "pain":
    return PainHead(num_classes=cfg.num_classes, mlp=tuple(cfg.mlp), name="head")
  raise ValueError(f"unknown task {task!r}: no head for it; use 'valence_arousal' or 'pain'")
