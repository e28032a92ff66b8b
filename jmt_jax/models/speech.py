"""Self-supervised speech encoders on raw 16 kHz audio: wav2vec 2.0, HuBERT and WavLM,
with the semantics of `transformers`' `Wav2Vec2Model`, `HubertModel` and `WavLMModel`
(tests/models/test_speech.py holds every layer to them within 1e-4).

The three share a convolutional feature extractor (a group-norm first layer, or a layer
norm after every conv), a feature projection and a transformer encoder over the frames,
post-LN or pre-LN ("stable layer norm", as the Large models are), with a convolutional
position embedding. WavLM adds a gated relative position bias to every layer's
attention, the buckets' embedding held by the first layer.

Submodule names follow the `transformers` module names (`_N` for `.N`), so that
weights.torch_layout maps them one to one.
"""

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jmt_jax.models import attention

KINDS = ("wav2vec2", "hubert", "wavlm")


def _gelu(x):
  return jax.nn.gelu(x, approximate=False)  # transformers' "gelu" is the erf form


class _ConvLayer(nn.Module):
  dim: int
  kernel: int
  stride: int
  bias: bool
  norm: str  # 'group', 'layer' or ''

  @nn.compact
  def __call__(self, x):
    x = nn.Conv(self.dim, (self.kernel,), strides=(self.stride,), padding="VALID",
                use_bias=self.bias, name="conv")(x)
    if self.norm == "layer":
      x = nn.LayerNorm(epsilon=1e-5, name="layer_norm")(x)
    elif self.norm == "group":  # one group per channel: each normalised over time
      x = nn.GroupNorm(num_groups=self.dim, epsilon=1e-5, name="layer_norm")(x)
    return _gelu(x)


class FeatureExtractor(nn.Module):
  """(N, samples) -> (N, frames, conv_dim[-1]): strided 1-D convs, each with GELU;
  `norm` 'group': a per-channel GroupNorm after the first, 'layer': a LayerNorm over
  the channels after each."""

  conv_dim: tuple
  conv_kernel: tuple
  conv_stride: tuple
  conv_bias: bool
  norm: str

  @nn.compact
  def __call__(self, x):
    if self.norm not in ("group", "layer"):
      raise ValueError(f"feat_extract_norm={self.norm!r}: use 'group' or 'layer'")
    x = x[..., None]
    for i, (dim, k, s) in enumerate(zip(self.conv_dim, self.conv_kernel, self.conv_stride)):
      norm = self.norm if self.norm == "layer" or i == 0 else ""
      x = _ConvLayer(dim, k, s, self.conv_bias, norm, name=f"conv_layers_{i}")(x)
    return x


def frames_of(samples, conv_kernel, conv_stride):
  """Frames the feature extractor makes of `samples` samples (0 if too few)."""
  for k, s in zip(conv_kernel, conv_stride):
    samples = max(0, (samples - k) // s + 1)
  return samples


def frame_geometry(conv_kernel, conv_stride):
  """(hop, receptive field) in samples of a feature extractor's frames: frame j covers
  samples [j * hop, j * hop + field)."""
  hop, field = 1, 1
  for k, s in zip(conv_kernel, conv_stride):
    field += (k - 1) * hop
    hop *= s
  return hop, field


class PositionalConvEmbedding(nn.Module):
  """GELU(grouped Conv1d over time, `kernel` wide, 'same' length), its weight
  weight-normalised per kernel tap (torch `weight_norm(dim=2)`): weight = g * v / |v|."""

  kernel: int
  groups: int

  @nn.compact
  def __call__(self, x):
    dim = x.shape[-1]
    v = self.param("weight_v", nn.initializers.normal(2 * math.sqrt(1 / (self.kernel * dim))),
                   (self.kernel, dim // self.groups, dim))
    g = self.param("weight_g", nn.initializers.ones_init(), (self.kernel,))
    bias = self.param("bias", nn.initializers.zeros_init(), (dim,))
    norm = jnp.sqrt(jnp.sum(jnp.square(v), axis=(1, 2), keepdims=True))
    w = (g[:, None, None] * v / norm).astype(x.dtype)
    y = jax.lax.conv_general_dilated(
        x, w, window_strides=(1,), padding=[(self.kernel // 2, self.kernel // 2)],
        dimension_numbers=("NWC", "WIO", "NWC"), feature_group_count=self.groups)
    return _gelu(y[:, :x.shape[1]] + bias.astype(x.dtype))  # an even kernel makes one extra


def relative_position_buckets(length, num_buckets, max_distance):
  """(length, length) bucket of key position minus query position, as WavLM computes it
  (in float32 where it takes a log, so that the truncation lands where torch's does)."""
  rel = np.arange(length)[None, :] - np.arange(length)[:, None]
  half = num_buckets // 2
  buckets = (rel > 0).astype(np.int64) * half
  rel = np.abs(rel)
  max_exact = half // 2
  large = np.log(np.maximum(rel, 1).astype(np.float32) / np.float32(max_exact))
  large = large / np.float32(math.log(max_distance / max_exact)) * np.float32(half - max_exact)
  large = np.minimum((max_exact + large).astype(np.int64), half - 1)
  return buckets + np.where(rel < max_exact, rel, large)


class SelfAttention(nn.Module):
  """Multi-head self-attention with q/k/v/out projections (q, k and v in one matmul);
  with `gated_bias`, WavLM's: a relative position bias (`position_bias`, (heads, T, T),
  made by the first layer from `rel_attn_embed`) scaled per head and query by a gate
  computed from the query's own input."""

  num_heads: int
  gated_bias: bool = False
  relative_embedding: bool = False
  num_buckets: int = 320
  max_distance: int = 800

  @nn.compact
  def __call__(self, x, position_bias=None):
    n, t, dim = x.shape
    head_dim = dim // self.num_heads
    params = [attention.DenseParams(name=f"{p}_proj")(dim) for p in "qkv"]
    q, k, v = attention.project(x, params)
    bias = None
    if self.gated_bias:
      if self.relative_embedding:
        table = nn.Embed(self.num_buckets, self.num_heads, name="rel_attn_embed")
        buckets = relative_position_buckets(t, self.num_buckets, self.max_distance)
        position_bias = jnp.transpose(table(jnp.asarray(buckets)), (2, 0, 1))
      const = self.param("gru_rel_pos_const", nn.initializers.ones_init(),
                         (1, self.num_heads, 1, 1))
      gates = nn.Dense(8, name="gru_rel_pos_linear")(x.reshape(n, t, self.num_heads, head_dim))
      gates = jax.nn.sigmoid(gates.reshape(n, t, self.num_heads, 2, 4).sum(-1))
      gate_a, gate_b = gates[..., 0], gates[..., 1]  # (n, t, heads)
      gate = gate_a * (gate_b * const[0, :, 0, 0].astype(x.dtype) - 1.0) + 2.0
      bias = jnp.transpose(gate, (0, 2, 1))[..., None] * position_bias.astype(x.dtype)[None]
    out, _ = attention.heads_attention(q, k, v, self.num_heads, bias)
    (out,) = attention.project(out, [attention.DenseParams(name="out_proj")(dim)])
    return out, position_bias


class FeatureProjection(nn.Module):
  hidden: int
  layer_norm: bool
  eps: float

  @nn.compact
  def __call__(self, x):
    if self.layer_norm:
      x = nn.LayerNorm(epsilon=self.eps, name="layer_norm")(x)
    return nn.Dense(self.hidden, name="projection")(x)


class FeedForward(nn.Module):
  ffn_dim: int

  @nn.compact
  def __call__(self, x):
    y = _gelu(nn.Dense(self.ffn_dim, name="intermediate_dense")(x))
    return nn.Dense(x.shape[-1], name="output_dense")(y)


class EncoderLayer(nn.Module):
  """Post-LN: x = LN(x + attn(x)); x = LN'(x + FF(x)). Pre-LN (`stable`):
  x = x + attn(LN(x)); x = x + FF(LN'(x))."""

  num_heads: int
  ffn_dim: int
  eps: float
  stable: bool
  gated_bias: bool
  relative_embedding: bool
  num_buckets: int
  max_distance: int

  @nn.compact
  def __call__(self, x, position_bias=None):
    attn = SelfAttention(self.num_heads, self.gated_bias, self.relative_embedding,
                         self.num_buckets, self.max_distance, name="attention")
    norm = nn.LayerNorm(epsilon=self.eps, name="layer_norm")
    final_norm = nn.LayerNorm(epsilon=self.eps, name="final_layer_norm")
    ff = FeedForward(self.ffn_dim, name="feed_forward")
    if self.stable:
      y, position_bias = attn(norm(x), position_bias)
      x = x + y
      return x + ff(final_norm(x)), position_bias
    y, position_bias = attn(x, position_bias)
    x = norm(x + y)
    return final_norm(x + ff(x)), position_bias


class Encoder(nn.Module):
  """(N, frames, hidden) projected features -> (hidden states, last): the input of each
  layer and the last layer's output (num_layers + 1 arrays, as `transformers` returns
  them with output_hidden_states), and `last_hidden_state` (the last output, after the
  encoder's LayerNorm in the pre-LN form)."""

  num_layers: int
  num_heads: int
  ffn_dim: int
  eps: float
  stable: bool
  pos_conv_kernel: int
  pos_conv_groups: int
  gated_bias: bool
  num_buckets: int
  max_distance: int

  @nn.compact
  def __call__(self, x):
    x = x + PositionalConvEmbedding(self.pos_conv_kernel, self.pos_conv_groups,
                                    name="pos_conv_embed")(x)
    norm = nn.LayerNorm(epsilon=self.eps, name="layer_norm")
    if not self.stable:
      x = norm(x)
    states, position_bias = [x], None
    for i in range(self.num_layers):
      x, position_bias = EncoderLayer(
          self.num_heads, self.ffn_dim, self.eps, self.stable, self.gated_bias,
          self.gated_bias and i == 0, self.num_buckets, self.max_distance,
          name=f"layers_{i}")(x, position_bias)
      states.append(x)
    return states, norm(x) if self.stable else x


class SpeechEncoder(nn.Module):
  """(N, samples) 16 kHz waveforms -> a per-clip embedding: the frames of hidden state
  `layer` (an index into the num_layers + 1 hidden states, or -1: `last_hidden_state`)
  averaged over the clip, or with `layer` 'all' every hidden state's average, (N,
  num_layers + 1, hidden), for a learned weighted sum after the backbone (SUPERB's:
  models.intra_fusion), which a frozen-backbone feature cache can then hold."""

  kind: str
  hidden: int
  num_layers: int
  num_heads: int
  ffn_dim: int
  conv_dim: tuple
  conv_kernel: tuple
  conv_stride: tuple
  conv_bias: bool
  feat_extract_norm: str
  stable_layer_norm: bool
  pos_conv_kernel: int
  pos_conv_groups: int
  feat_proj_layer_norm: bool = True
  layer_norm_eps: float = 1e-5
  num_buckets: int = 320
  max_distance: int = 800
  layer: object = -1

  def setup(self):
    if self.kind not in KINDS:
      raise ValueError(f"speech encoder kind {self.kind!r}: use one of {list(KINDS)}")
    self.feature_extractor = FeatureExtractor(
        tuple(self.conv_dim), tuple(self.conv_kernel), tuple(self.conv_stride), self.conv_bias,
        self.feat_extract_norm)
    self.feature_projection = FeatureProjection(self.hidden, self.feat_proj_layer_norm,
                                                self.layer_norm_eps)
    self.encoder = Encoder(self.num_layers, self.num_heads, self.ffn_dim, self.layer_norm_eps,
                           self.stable_layer_norm, self.pos_conv_kernel, self.pos_conv_groups,
                           self.kind == "wavlm", self.num_buckets, self.max_distance)

  def hidden_states(self, waveforms):
    """(the num_layers + 1 hidden states, last_hidden_state), each (N, frames, hidden)."""
    return self.encoder(self.feature_projection(self.feature_extractor(waveforms)))

  def frames(self, waveforms):
    """(N, frames, hidden) of hidden state `layer`; with 'all', (N, frames, num_layers + 1,
    hidden)."""
    states, last = self.hidden_states(waveforms)
    if self.layer == "all":
      return jnp.stack(states, axis=2)
    layer = int(self.layer)
    if not -1 <= layer <= self.num_layers:
      raise ValueError(f"layer={self.layer!r}: use 'all', -1 (the last hidden state) or a "
                       f"hidden state 0..{self.num_layers}")
    return last if layer == -1 else states[layer]

  def __call__(self, waveforms, train=False):
    del train  # no dropout: the encoders' dropouts and LayerDrop are off, as in eval mode
    return self.frames(waveforms).mean(axis=1)
