"""Multi-head attention and the post-LN transformer encoder layer, with PyTorch's
semantics (`nn.MultiheadAttention`, `nn.TransformerEncoderLayer(norm_first=False)`)."""

import flax.linen as nn
import jax
import jax.numpy as jnp

# torch.nn.LayerNorm's default epsilon.
_LN_EPS = 1e-5


class MultiHeadAttention(nn.Module):
  """softmax(Q K^T / sqrt(d_head)) V per head over the sequence axis, batch-first.

  q/k/v/out projections with biases: torch's packed `in_proj_weight` is the
  concatenation of the q, k and v kernels (transposed).
  """

  num_heads: int

  @nn.compact
  def __call__(self, query, key_value):
    dim = query.shape[-1]
    if dim % self.num_heads:
      raise ValueError(f"model width {dim} is not divisible by num_heads={self.num_heads}")
    head_dim = dim // self.num_heads

    def project(x, name):
      y = nn.Dense(dim, name=name)(x)
      return y.reshape(y.shape[:-1] + (self.num_heads, head_dim))

    q, k, v = project(query, "query"), project(key_value, "key"), project(key_value, "value")
    logits = jnp.einsum("...qhd,...khd->...hqk", q, k) / jnp.sqrt(head_dim).astype(q.dtype)
    weights = jax.nn.softmax(logits, axis=-1)
    self.sow("intermediates", "attention_weights", weights)
    out = jnp.einsum("...hqk,...khd->...qhd", weights, v).reshape(query.shape[:-1] + (dim,))
    return nn.Dense(dim, name="out")(out)


class EncoderLayer(nn.Module):
  """x = LN(x + MHA(x, x)); x = LN(x + FFN(x)), FFN = Linear-ReLU-Linear, no dropout."""

  num_heads: int
  ffn_dim: int

  @nn.compact
  def __call__(self, x):
    x = nn.LayerNorm(epsilon=_LN_EPS, name="norm1")(x + MultiHeadAttention(self.num_heads, name="self_attn")(x, x))
    y = nn.Dense(self.ffn_dim, name="linear1")(x)
    y = nn.Dense(x.shape[-1], name="linear2")(nn.relu(y))
    return nn.LayerNorm(epsilon=_LN_EPS, name="norm2")(x + y)


class Encoder(nn.Module):
  """A stack of `num_layers` encoder layers."""

  num_layers: int
  num_heads: int
  ffn_dim: int

  @nn.compact
  def __call__(self, x):
    for i in range(self.num_layers):
      x = EncoderLayer(self.num_heads, self.ffn_dim, name=f"layers_{i}")(x)
    return x
