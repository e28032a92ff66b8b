"""Fusion of per-clip modality embeddings (B, T, d) into per-clip features.

`JointMultimodalTransformer` follows SPEC section 1.2. Inside the fusion the two
modalities play the roles "v" (first) and "a" (second) of the paper, and "j" is the
joint branch; which real modalities fill those roles is config.
"""

import flax.linen as nn
import jax.numpy as jnp

from jmt_jax.models.attention import Encoder
from jmt_jax.models.attention import EncoderLayer
from jmt_jax.models.attention import MultiHeadAttention

# The six cross-attended outputs, in the order the Aff-Wild2 head stacks them
# (its last token, a_j, is the one kept).
CROSS_OUTPUTS = ("v_a", "a_v", "j_v", "v_j", "j_a", "a_j")


def l2_normalize(x, eps=1e-12):
  """torch.nn.functional.normalize(x, dim=-1): x / max(||x||, eps).

  The norm is taken as sqrt(max(sum x^2, eps^2)) so that the gradient stays finite at
  x = 0 (a backbone whose ReLUs are all off emits exactly zero), where the gradient of
  jnp.linalg.norm is NaN.
  """
  sumsq = jnp.sum(jnp.square(x), axis=-1, keepdims=True)
  return x / jnp.sqrt(jnp.maximum(sumsq, eps * eps))


class KeyBasedCrossAttention(nn.Module):
  """One attention module per query source, each attending to the two other sources."""

  num_heads: int

  @nn.compact
  def __call__(self, v, a, j):
    attn = {s: MultiHeadAttention(self.num_heads, name=f"{s}_attn") for s in "vaj"}
    sources = {"v": v, "a": a, "j": j}
    return {name: attn[name[0]](sources[name[0]], sources[name[2]]) for name in CROSS_OUTPUTS}


class JointMultimodalTransformer(nn.Module):
  """JMT: joint branch, per-source encoders, key-based cross-attention, then either
  the Aff-Wild2 output ('tokens': six tokens per clip -> encoder -> attention -> last
  token, (B, T, d)) or the BioVid output ('concat': (B, T, 6d) -> encoder)."""

  num_layers: int
  num_heads: int
  ffn_dim: int
  output: str = "tokens"
  concat_ffn_dim: int = 512

  @nn.compact
  def __call__(self, v, a):
    v, a = l2_normalize(v), l2_normalize(a)
    d = v.shape[-1]
    j = nn.Dense(d, name="joint")(jnp.concatenate([v, a], axis=-1))
    enc = lambda name: Encoder(self.num_layers, self.num_heads, self.ffn_dim, name=name)
    v, a, j = enc("v_encoder")(v), enc("a_encoder")(a), enc("j_encoder")(j)
    outs = KeyBasedCrossAttention(self.num_heads, name="cross_attention")(v, a, j)
    if self.output == "tokens":
      tokens = jnp.stack([outs[k] for k in CROSS_OUTPUTS], axis=-2)  # (B, T, 6, d)
      tokens = EncoderLayer(self.num_heads, self.ffn_dim, name="token_encoder")(tokens)
      tokens = MultiHeadAttention(self.num_heads, name="token_attn")(tokens, tokens)
      return tokens[..., -1, :]
    if self.output == "concat":
      x = jnp.concatenate([outs[k] for k in CROSS_OUTPUTS], axis=-1)
      return EncoderLayer(self.num_heads, self.concat_ffn_dim, name="concat_encoder")(x)
    raise ValueError(f"unknown JMT output {self.output!r}; use 'tokens' or 'concat'")


class FeatureConcat(nn.Module):
  """Linear([v; a] -> d), then the same temporal encoder the JMT branches have."""

  num_layers: int
  num_heads: int
  ffn_dim: int

  @nn.compact
  def __call__(self, v, a):
    x = jnp.concatenate([l2_normalize(v), l2_normalize(a)], axis=-1)
    x = nn.Dense(v.shape[-1], name="proj")(x)
    return Encoder(self.num_layers, self.num_heads, self.ffn_dim, name="encoder")(x)


class Unimodal(nn.Module):
  """One modality through the same temporal encoder the JMT branches have."""

  num_layers: int
  num_heads: int
  ffn_dim: int

  @nn.compact
  def __call__(self, x):
    return Encoder(self.num_layers, self.num_heads, self.ffn_dim, name="encoder")(l2_normalize(x))


def build_fusion(cfg):
  """(fusion module, number of modalities it takes) from `config.model.fusion`."""
  common = dict(num_layers=cfg.num_layers, num_heads=cfg.num_heads, ffn_dim=cfg.ffn_dim)
  if cfg.kind == "jmt":
    return JointMultimodalTransformer(output=cfg.output, concat_ffn_dim=cfg.concat_ffn_dim,
                                      name="fusion", **common), 2
  if cfg.kind == "concat":
    return FeatureConcat(name="fusion", **common), 2
  if cfg.kind == "unimodal":
    return Unimodal(name="fusion", **common), 1
  raise ValueError(f"unknown fusion kind {cfg.kind!r}; use 'jmt', 'concat' or 'unimodal'")
