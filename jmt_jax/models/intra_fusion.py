"""Intra-modal fusion: the per-clip embedding(s) of one modality's backbone(s) -> one
embedding of the inter-modal fusion's width, as the authors' Aff-Wild2 code merges two
backbones of a modality (`main.py`, `models/intra_modal_transformer_fusion.py`):

  fc: one backbone, Linear(width -> `width`) (their `FcLayer(768, 512)` on WavLM alone);
  concat_fc: [first; second] -> Linear (their `FcLayer(512 + 768, 512)`);
  encoder_self_attention: each backbone's embedding a token (a shared Linear(-> `width`)
    for those of another width, their `fc`), one post-LN encoder over the two tokens,
    one multi-head self-attention, the second token kept (their
    `Intra_modal_transformer_fusion`).

A speech encoder with layer 'all' emits every hidden state's pooled features; they are
summed here with softmax weights learnt per hidden state (SUPERB's weighted sum,
initialised equal), which with frozen backbones trains on cached embeddings.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

from jmt_jax.models.attention import Encoder
from jmt_jax.models.attention import MultiHeadAttention

KINDS = ("fc", "concat_fc", "encoder_self_attention")


class IntraModalFusion(nn.Module):
  """(B, T, D) concatenated backbone embeddings laid out as `layout` ([(hidden states,
  width)] per backbone) -> (B, T, `width`)."""

  kind: str
  layout: tuple
  width: int
  num_layers: int = 1
  num_heads: int = 1
  ffn_dim: int = 512

  @nn.compact
  def __call__(self, x):
    parts, start = [], 0
    for i, (states, width) in enumerate(self.layout):
      part = x[..., start:start + states * width]
      start += states * width
      if states > 1:
        weights = self.param(f"layer_weights_{i}", nn.initializers.zeros_init(), (states,))
        part = jnp.einsum("...lw,l->...w", part.reshape(part.shape[:-1] + (states, width)),
                          jax.nn.softmax(weights).astype(part.dtype))
      parts.append(part)
    if start != x.shape[-1]:
      raise ValueError(f"intra-modal fusion expects {start} features per clip, got {x.shape[-1]}")
    if self.kind == "fc":
      if len(parts) != 1:
        raise ValueError("intra_fusion 'fc' takes one backbone; use 'concat_fc' or "
                         "'encoder_self_attention' for two")
      return nn.Dense(self.width, name="fc_layer")(parts[0])
    if len(parts) != 2:
      raise ValueError(f"intra_fusion {self.kind!r} takes two backbones (a pair)")
    if self.kind == "concat_fc":
      return nn.Dense(self.width, name="fc_layer")(jnp.concatenate(parts, axis=-1))
    if self.kind != "encoder_self_attention":
      raise ValueError(f"intra_fusion kind {self.kind!r}: use one of {list(KINDS)}")
    other = {p.shape[-1] for p in parts if p.shape[-1] != self.width}
    if len(other) > 1:
      raise ValueError(f"intra_fusion 'encoder_self_attention' maps one other width to "
                       f"{self.width}; the backbones emit {[p.shape[-1] for p in parts]}")
    if other:
      fc = nn.Dense(self.width, name="fc")
      parts = [fc(p) if p.shape[-1] != self.width else p for p in parts]
    tokens = jnp.stack(parts, axis=-2)  # (B, T, 2, width)
    tokens = Encoder(self.num_layers, self.num_heads, self.ffn_dim, name="token_encoder")(tokens)
    return MultiHeadAttention(self.num_heads, name="token_attn")(tokens, tokens)[..., -1, :]


def build(cfg, layout):
  return IntraModalFusion(kind=cfg.kind, layout=tuple(tuple(m) for m in layout),
                          width=cfg.width, num_layers=cfg.get("num_layers", 1),
                          num_heads=cfg.get("num_heads", 1), ffn_dim=cfg.get("ffn_dim", 512))
