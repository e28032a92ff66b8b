"""Vision transformers over face images: CLIP's vision tower, MAE's encoder (masking off)
and DINOv2, with the semantics of `transformers`' `CLIPVisionModel`, `ViTMAEModel` and
`Dinov2Model` (tests/models/test_vit.py holds every layer and the pooled output to them
within 1e-4).

The three are one pre-LN transformer over a class token and the image's patches. They
differ in a few switches, each read from the checkpoint's config.json
(`config_common.vit_architecture`): CLIP normalises the embeddings before the first layer
(`pre_layrnorm`) and only the pooled class token after the last (`post_layernorm`), has
no bias on its patch projection and uses its `hidden_act` (quick GELU for OpenAI's);
MAE and DINOv2 normalise the whole last hidden state; DINOv2 scales each residual branch
by a learned vector (layer scale) and interpolates its position embeddings to the image's
grid (bicubic, as PyTorch does), having been trained at 518x518.

Modules are named for their role, one name for all three families, and
weights.torch_layout maps them to each family's checkpoint keys; the parameters the
families hold apart (class token, position embeddings, layer scales) keep their names.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jmt_jax.models import attention

FAMILIES = ("clip", "vit_mae", "dinov2")
POOLINGS = ("cls", "mean")

_ACTIVATIONS = {
    "gelu": lambda x: jax.nn.gelu(x, approximate=False),
    "quick_gelu": lambda x: x * jax.nn.sigmoid(1.702 * x),
    "gelu_new": lambda x: jax.nn.gelu(x, approximate=True),
    "gelu_pytorch_tanh": lambda x: jax.nn.gelu(x, approximate=True),
}
ACTIVATIONS = tuple(_ACTIVATIONS)


def _cubic(t, a=-0.75):
  """PyTorch's bicubic convolution weights of the 4 taps around a point at fraction t."""
  t = np.asarray(t, np.float64)
  near = lambda d: ((a + 2) * d - (a + 3)) * d * d + 1  # noqa: E731  |d| <= 1
  far = lambda d: ((a * d - 5 * a) * d + 8 * a) * d - 4 * a  # noqa: E731  1 < |d| < 2
  return np.stack([far(t + 1), near(t), near(1 - t), far(2 - t)], -1)


def bicubic_matrix(size_in, size_out):
  """(size_out, size_in) matrix of `torch.nn.functional.interpolate(mode='bicubic',
  align_corners=False)` along one axis (no antialiasing; borders replicated)."""
  m = np.zeros((size_out, size_in))
  x = (np.arange(size_out) + 0.5) * (size_in / size_out) - 0.5
  x0 = np.floor(x).astype(int)
  for tap, w in enumerate(_cubic(x - x0).T):
    np.add.at(m, (np.arange(size_out), np.clip(x0 - 1 + tap, 0, size_in - 1)), w)
  return m


class SelfAttention(nn.Module):
  """Multi-head self-attention with transformers' q/k/v/out projections (`q_proj`...),
  q, k and v in one matmul; with `first_only`, the first token's output alone (its
  query against every key)."""

  num_heads: int

  @nn.compact
  def __call__(self, x, first_only=False):
    dim = x.shape[-1]
    params = [attention.DenseParams(name=f"{p}_proj")(dim) for p in "qkv"]
    if first_only:
      qkv = attention.project(x[:, :1], params[:1]) + attention.project(x, params[1:])
    else:
      qkv = attention.project(x, params)
    out, _ = attention.heads_attention(*qkv, self.num_heads)
    return attention.project(out, [attention.DenseParams(name="out_proj")(dim)])[0]


class LayerScale(nn.Module):
  """x * lambda1, a learned vector (DINOv2's `layer_scale1`, `layer_scale2`)."""

  @nn.compact
  def __call__(self, x):
    return x * self.param("lambda1", nn.initializers.ones_init(), (x.shape[-1],)).astype(x.dtype)


class Layer(nn.Module):
  """x + s1 * attn(LN1(x)); then x + s2 * MLP(LN2(x)); s1, s2 layer scales (DINOv2) or 1.
  With `first_only`, the first token's output alone."""

  num_heads: int
  mlp_dim: int
  act: str
  eps: float
  layer_scale: bool

  @nn.compact
  def __call__(self, x, first_only=False):
    dim = x.shape[-1]
    y = SelfAttention(self.num_heads, name="attn")(
        nn.LayerNorm(epsilon=self.eps, name="norm1")(x), first_only)
    if self.layer_scale:
      y = LayerScale(name="scale1")(y)
    x = (x[:, :1] if first_only else x) + y
    y = nn.LayerNorm(epsilon=self.eps, name="norm2")(x)
    y = nn.Dense(dim, name="fc2")(_ACTIVATIONS[self.act](nn.Dense(self.mlp_dim, name="fc1")(y)))
    if self.layer_scale:
      y = LayerScale(name="scale2")(y)
    return x + y


class ViT(nn.Module):
  """A frame encoder. A frame's embedding is its class token (`pooling` 'cls', each
  family's pooled output) or the mean of its patch tokens ('mean') in the last hidden
  state. Called on clips, it embeds each frame; a temporal model (models.temporal) makes
  the clip's embedding of them after the backbones. `image_size` is the checkpoint's
  (its position embeddings' grid); DINOv2 takes frames of other sizes, CLIP and MAE that
  one only."""

  family: str
  hidden: int
  num_layers: int
  num_heads: int
  mlp_dim: int
  patch: int
  image_size: int
  act: str = "gelu"
  eps: float = 1e-6
  pooling: str = "cls"

  def setup(self):
    if self.family not in FAMILIES:
      raise ValueError(f"vit family {self.family!r}: use one of {list(FAMILIES)}")
    if self.act not in _ACTIVATIONS:
      raise ValueError(f"hidden_act={self.act!r}: use one of {list(ACTIVATIONS)}")
    if self.pooling not in POOLINGS:
      raise ValueError(f"pooling={self.pooling!r}: use one of {list(POOLINGS)}")
    clip = self.family == "clip"
    d, grid = self.hidden, self.image_size // self.patch
    self.patch_embed = nn.Conv(d, (self.patch, self.patch), strides=(self.patch, self.patch),
                               padding="VALID", use_bias=not clip, name="patch")
    # Named as each family's checkpoint names them (weights.torch_layout).
    init = nn.initializers.normal(0.02)
    if clip:
      self.cls = self.param("class_embedding", init, (d,))
      self.position_embedding = nn.Embed(grid * grid + 1, d, embedding_init=init,
                                         name="position_embedding")
    else:
      self.cls = self.param("cls_token", init, (1, 1, d))
      self.position = self.param("position_embeddings", init, (1, grid * grid + 1, d))
    if clip:
      self.pre_norm = nn.LayerNorm(epsilon=self.eps, name="pre_norm")
    self.layers = [Layer(self.num_heads, self.mlp_dim, self.act, self.eps,
                         self.family == "dinov2", name=f"layers_{i}")
                   for i in range(self.num_layers)]
    self.norm = nn.LayerNorm(epsilon=self.eps, name="norm")

  def _positions(self, grid_h, grid_w, dtype):
    pos = (self.position_embedding.embedding if self.family == "clip" else self.position)
    pos = pos.reshape(-1, self.hidden).astype(jnp.float32)
    grid = self.image_size // self.patch
    if (grid_h, grid_w) == (grid, grid):
      return pos.astype(dtype)
    if self.family != "dinov2":
      raise ValueError(f"a {self.family} encoder takes {self.image_size}x{self.image_size} "
                       f"images, not {grid_h * self.patch}x{grid_w * self.patch}")
    patches = pos[1:].reshape(grid, grid, self.hidden)
    rows, cols = (jnp.asarray(bicubic_matrix(grid, n), jnp.float32) for n in (grid_h, grid_w))
    patches = jnp.einsum("hi,ijd,wj->hwd", rows, patches, cols,
                         precision=jax.lax.Precision.HIGHEST)
    return jnp.concatenate([pos[:1], patches.reshape(-1, self.hidden)]).astype(dtype)

  def hidden_states(self, pixels):
    """[embeddings (after CLIP's pre-norm), each layer's output]: (N, 1 + patches, hidden)
    each, as `transformers` returns them with output_hidden_states."""
    states = [self._embeddings(pixels)]
    for layer in self.layers:
      states.append(layer(states[-1]))
    return states

  def _embeddings(self, pixels):
    x = self.patch_embed(pixels)
    n, gh, gw, d = x.shape
    x = x.reshape(n, gh * gw, d)
    cls = jnp.broadcast_to(self.cls.reshape(1, 1, d).astype(x.dtype), (n, 1, d))
    x = jnp.concatenate([cls, x], axis=1) + self._positions(gh, gw, x.dtype)
    if self.family == "clip":
      x = self.pre_norm(x)
    return x

  def last_hidden_state(self, states):
    """The final sequence as each family's model returns it: MAE and DINOv2 normalised,
    CLIP not."""
    return states[-1] if self.family == "clip" else self.norm(states[-1])

  def pool(self, states):
    last = self.last_hidden_state(states)
    if self.pooling == "mean":
      return jnp.mean(last[:, 1:], axis=1)
    return self.norm(last[:, 0]) if self.family == "clip" else last[:, 0]

  def embed_frames(self, pixels):
    """(M, H, W, 3) normalised frames -> (M, hidden) pooled embeddings. When the class
    token is the embedding (pooling 'cls'), the last layer computes its output alone:
    its keys and values for every token, the rest for one (7% of ViT-B/16's FLOPs saved)."""
    if self.pooling != "cls":
      return self.pool(self.hidden_states(pixels))
    x = self._embeddings(pixels)
    for layer in self.layers[:-1]:
      x = layer(x)
    return self.pool([self.layers[-1](x, first_only=True)])

  def __call__(self, clips, train=False):
    """(N, F, H, W, 3) clips -> (N, F * hidden): each frame's embedding, side by side."""
    del train  # no dropout, no batch statistics
    n, f = clips.shape[:2]
    return self.embed_frames(clips.reshape((n * f,) + clips.shape[2:])).reshape(n, -1)

