"""The whole network: one backbone per modality, a fusion, a task head.

Everything is chosen by `config.model`; modality names appear only in configs.
Parameters are grouped as `<modality>_backbone`, `fusion` and `head`.
"""

import flax.linen as nn
import jax.numpy as jnp
import ml_collections

from jmt_jax.models import biosignal
from jmt_jax.models import fusion as fusion_lib
from jmt_jax.models import heads
from jmt_jax.models import resnet


def build_backbone(cfg, name):
  if cfg.kind in ("resnet2d", "r3d", "r2plus1d"):
    return resnet.ResNet(kind=cfg.kind, widths=tuple(cfg.widths), blocks=tuple(cfg.blocks),
                         stem_width=cfg.stem_width, stem_mid=cfg.get("stem_mid", 45),
                         reduction=cfg.reduction, embed_dim=cfg.embed_dim, name=name)
  if cfg.kind == "biosignal_cnn":
    return biosignal.BiosignalCNN(widths=tuple(cfg.widths), kernel=cfg.kernel,
                                  first_stride=cfg.first_stride, embed_dim=cfg.embed_dim, name=name)
  raise ValueError(f"unknown backbone kind {cfg.kind!r}")


def _prepare_input(x, cfg):
  """Clip batch -> backbone input: uint8 pixels normalised, spectrograms given a channel."""
  if x.dtype == jnp.uint8:
    x = (x.astype(jnp.float32) / 255.0 - jnp.asarray(cfg.mean)) / jnp.asarray(cfg.std)
  elif cfg.kind == "resnet2d" and x.ndim == 3:
    x = x[..., None]
  return x


class MultimodalModel(nn.Module):
  """batch[modality]: (B, T, ...) per-clip inputs -> head outputs per clip or window."""

  config: ml_collections.FrozenConfigDict

  @nn.compact
  def __call__(self, batch, train=False):
    cfg = self.config
    fusion, arity = fusion_lib.build_fusion(cfg.fusion)
    if len(cfg.modalities) != arity:
      raise ValueError(f"fusion {cfg.fusion.kind!r} takes {arity} modalities, "
                       f"config.model.modalities has {list(cfg.modalities)}")
    embeddings = []
    for m in cfg.modalities:
      x = batch[m]
      b, t = x.shape[:2]
      x = _prepare_input(x.reshape((b * t,) + x.shape[2:]), cfg.backbones[m])
      e = build_backbone(cfg.backbones[m], name=f"{m}_backbone")(x, train=train)
      embeddings.append(e.reshape(b, t, -1))
    dims = {e.shape[-1] for e in embeddings}
    if len(dims) != 1:
      raise ValueError(f"backbone embeddings of {list(cfg.modalities)} differ in width: "
                       f"{[e.shape[-1] for e in embeddings]}")
    return heads.build_head(cfg.head)(fusion(*embeddings), train=train)


def build_model(model_config):
  return MultimodalModel(ml_collections.FrozenConfigDict(model_config))
