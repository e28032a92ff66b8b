"""Multi-head attention and the post-LN transformer encoder layer, with PyTorch's
semantics (`nn.MultiheadAttention`, `nn.TransformerEncoderLayer(norm_first=False)`)."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

# torch.nn.LayerNorm's default epsilon.
_LN_EPS = 1e-5


class DenseParams(nn.Module):
  """`nn.Dense`'s parameters (same names, shapes and initialisers), returned rather than
  applied, so that projections of one input can share one matmul. `features` 0: as many
  as the input has."""

  features: int = 0

  @nn.compact
  def __call__(self, in_features):
    out = self.features or in_features
    kernel = self.param("kernel", nn.initializers.lecun_normal(), (in_features, out))
    bias = self.param("bias", nn.initializers.zeros_init(), (out,))
    return kernel, bias


def project(x, params):
  """x @ [k_1 | k_2 | ...] + [b_1 | b_2 | ...], split back: one matmul for every
  projection of the same input (wider matmuls run closer to the CPU's peak)."""
  kernel = jnp.concatenate([k for k, _ in params], axis=1).astype(x.dtype)
  bias = jnp.concatenate([b for _, b in params]).astype(x.dtype)
  y = x @ kernel + bias
  return jnp.split(y, np.cumsum([k.shape[1] for k, _ in params])[:-1], axis=-1)


def heads_attention(q, k, v, num_heads, bias=None):
  """softmax(Q K^T / sqrt(d_head) + bias) V per head, on projected (B, T, dim) queries
  and (B, S, dim) keys and values -> ((B, T, dim), weights (B, heads, T, S)); `bias`
  broadcasts to (B, heads, T, S). The softmax is in float32 and both matmuls in the
  compute dtype, so that in bfloat16 the backward pass's matmuls are bfloat16 too
  (tests/benchmarks/test_lowering.py), where jax.nn.dot_product_attention keeps the
  logits' cotangent float32. Heads are moved next to the batch first: XLA's CPU
  matmuls over batch axes that lead both operands ran 2-3x faster here (a ViT-B layer's
  attention over 32 frames: 187 against 391 ms)."""
  dim = q.shape[-1]
  if dim % num_heads:
    raise ValueError(f"model width {dim} is not divisible by num_heads={num_heads}")
  head_dim = dim // num_heads
  heads = lambda y: y.reshape(y.shape[:2] + (num_heads, head_dim)).transpose(0, 2, 1, 3)  # noqa: E731
  logits = jnp.einsum("bhqd,bhkd->bhqk", heads(q), heads(k)) / jnp.sqrt(head_dim).astype(q.dtype)
  logits = logits.astype(jnp.float32)
  if bias is not None:
    logits = logits + bias.astype(jnp.float32)
  weights = jax.nn.softmax(logits, axis=-1).astype(v.dtype)
  out = jnp.einsum("bhqk,bhkd->bhqd", weights, heads(v)).transpose(0, 2, 1, 3)
  return out.reshape(q.shape[:2] + (dim,)), weights


class MultiHeadAttention(nn.Module):
  """softmax(Q K^T / sqrt(d_head)) V per head over the sequence axis, batch-first.

  q/k/v/out projections with biases: torch's packed `in_proj_weight` is the
  concatenation of the q, k and v kernels (transposed). Self-attention (`key_value` is
  `query`) projects q, k and v in one matmul, cross-attention k and v; a caller with
  more projections of one input takes `projections` and calls `attend`.
  """

  num_heads: int

  def setup(self):
    self.query, self.key, self.value, self.out = (DenseParams() for _ in range(4))

  def projections(self, dim, names):
    """The (kernel, bias) of the named projections ('query', 'key', 'value')."""
    return [getattr(self, n)(dim) for n in names]

  def attend(self, q, k, v):
    """Attention over projected (..., T, dim) queries, keys and values, then `out`."""
    dim = q.shape[-1]
    shape = q.shape  # (..., queries, dim)
    flat = lambda y: y.reshape((-1,) + y.shape[-2:])  # noqa: E731
    out, weights = heads_attention(flat(q), flat(k), flat(v), self.num_heads)
    if self.is_mutable_collection("intermediates"):  # the maps are asked for: keep them
      self.sow("intermediates", "attention_weights", weights.reshape(shape[:-2] + weights.shape[1:]))
    return project(out.reshape(shape), [self.out(dim)])[0]

  def __call__(self, query, key_value):
    dim = query.shape[-1]
    if key_value is query:
      return self.attend(*project(query, self.projections(dim, ("query", "key", "value"))))
    (q,) = project(query, self.projections(dim, ("query",)))
    return self.attend(q, *project(key_value, self.projections(dim, ("key", "value"))))


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
