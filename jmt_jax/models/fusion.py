"""Fusion of per-clip modality embeddings (B, T, d) into per-clip features.

`JointMultimodalTransformer` follows the paper (BUILD_NOTES.md, Reference 1.2). Inside the fusion the two
modalities play the roles "v" (first) and "a" (second) of the paper, and "j" is the
joint branch; which real modalities fill those roles is config.
"""

import flax.linen as nn
import jax.numpy as jnp

from jmt_jax.models import attention
from jmt_jax.models.attention import Encoder
from jmt_jax.models.attention import MultiHeadAttention

# The six cross-attended outputs, in the order the Aff-Wild2 head stacks them
# (its last token, a_j, is the one kept).
CROSS_OUTPUTS = ("v_a", "a_v", "j_v", "v_j", "j_a", "a_j")


def inputs(normalize, *xs):
  """The backbone embeddings as a fusion takes them: L2-normalised (the authors'
  Aff-Wild2 code) or as they are (their BioVid `main.py`: `VIS_PHY_MODEL.model_out_feats`
  feeds every fusion raw features); `config.model.fusion.normalize_inputs`."""
  return tuple(l2_normalize(x) for x in xs) if normalize else xs


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
    d = v.shape[-1]
    # Every projection of one source in one matmul: the query of its own module, the
    # keys and values of the two modules that attend to it.
    queries, keys_values = {}, {}
    for s, x in sources.items():
      others = [o for o in "vaj" if o != s]
      params = attn[s].projections(d, ("query",)) + [
          p for o in others for p in attn[o].projections(d, ("key", "value"))]
      q, *kv = attention.project(x, params)
      queries[s] = q
      keys_values.update({(o, s): kv[2 * i:2 * i + 2] for i, o in enumerate(others)})
    return {name: attn[name[0]].attend(queries[name[0]], *keys_values[(name[0], name[2])])
            for name in CROSS_OUTPUTS}


def cross_attention_maps(intermediates):
  """{output name: (..., heads, T queries, T keys)} attention weights of the six
  key-based cross-attentions, from the `intermediates` of a JMT model applied with
  `mutable=["intermediates"]`. Each query source's module is called twice, in the
  order of CROSS_OUTPUTS, and its weights are sown in that order."""
  modules = intermediates["fusion"]["cross_attention"]
  calls = {s: [n for n in CROSS_OUTPUTS if n[0] == s] for s in "vaj"}
  return {n: modules[f"{n[0]}_attn"]["attention_weights"][calls[n[0]].index(n)]
          for n in CROSS_OUTPUTS}


class _EncoderFusion(nn.Module):
  """What the transformer fusions share: their encoders' depth, heads and width, and
  whether the embeddings are layer-normalised first."""

  num_layers: int
  num_heads: int
  ffn_dim: int
  normalize_inputs: bool = True

  def encoder(self, name, ffn_dim=None):
    return Encoder(self.num_layers, self.num_heads, ffn_dim or self.ffn_dim, name=name)


class JointMultimodalTransformer(_EncoderFusion):
  """JMT: joint branch, per-source encoders, key-based cross-attention, then one of the
  public code's output formats:
    'tokens' (Aff-Wild2, SELF_ATTEN): six tokens per clip -> encoder -> self-attention
             -> last token, (B, T, d);
    'concat' (BioVid): (B, T, 6d) -> encoder of width 6d, (B, T, 6d);
    'fc'     (Aff-Wild2, FC): (B, T, 6d) -> Linear(6d -> 2d), (B, T, 2d).
  """

  output: str = "tokens"
  concat_ffn_dim: int = 512

  @nn.compact
  def __call__(self, v, a):
    v, a = inputs(self.normalize_inputs, v, a)
    d = v.shape[-1]
    j = nn.Dense(d, name="joint")(jnp.concatenate([v, a], axis=-1))
    enc = self.encoder
    v, a, j = enc("v_encoder")(v), enc("a_encoder")(a), enc("j_encoder")(j)
    outs = KeyBasedCrossAttention(self.num_heads, name="cross_attention")(v, a, j)
    if self.output == "tokens":
      tokens = jnp.stack([outs[k] for k in CROSS_OUTPUTS], axis=-2)  # (B, T, 6, d)
      tokens = enc("token_encoder")(tokens)
      # Only the last token's output is kept, so only its query is computed.
      return MultiHeadAttention(self.num_heads, name="token_attn")(tokens[..., -1:, :],
                                                                   tokens)[..., 0, :]
    x = jnp.concatenate([outs[k] for k in CROSS_OUTPUTS], axis=-1)
    if self.output == "concat":
      return enc("concat_encoder", self.concat_ffn_dim)(x)
    if self.output == "fc":
      return nn.Dense(2 * d, name="fc_out")(x)
    raise ValueError(f"unknown JMT output {self.output!r}; use 'tokens', 'concat' or 'fc'")


class VanillaMultimodalTransformer(_EncoderFusion):
  """The paper's "vanilla multimodal transformer": JMT without the joint branch.
  V and A encoders, v_a and a_v cross-attention, concat, Linear(2d -> d)."""

  @nn.compact
  def __call__(self, v, a):
    v, a = inputs(self.normalize_inputs, v, a)
    v, a = self.encoder("v_encoder")(v), self.encoder("a_encoder")(a)
    v_a = MultiHeadAttention(self.num_heads, name="v_attn")(v, a)
    a_v = MultiHeadAttention(self.num_heads, name="a_attn")(a, v)
    return nn.Dense(v.shape[-1], name="proj")(jnp.concatenate([v_a, a_v], axis=-1))


class FeatureConcat(_EncoderFusion):
  """Linear([v; a] -> d), then `num_layers` encoder layers (0 in the paper's configs)."""

  @nn.compact
  def __call__(self, v, a):
    x = jnp.concatenate(inputs(self.normalize_inputs, v, a), axis=-1)
    x = nn.Dense(v.shape[-1], name="proj")(x)
    return self.encoder("encoder")(x)


class Unimodal(_EncoderFusion):
  """One modality, then `num_layers` encoder layers (0 in the paper's configs)."""

  @nn.compact
  def __call__(self, x):
    x, = inputs(self.normalize_inputs, x)
    return self.encoder("encoder")(x)


class JointCrossAttention(nn.Module):
  """Joint cross-attention (Praveen et al., CVPRW 2022), parameters named as in their
  `CAM` module (encoder1 = the "a" role, encoder2 = "v").

  X = Linear(d -> attn_dim) per source, J = [X_a; X_v] (B, T, 2 attn_dim);
  C_a = tanh(X_a^T affine_a(J^T)^T / sqrt(2 attn_dim)); H_a = ReLU(W_ca C_a + W_a X_a^T);
  X_att_a = (W_ha H_a)^T + X_a, likewise for v; returns [X_att_v; X_att_a] (B, T, 2 attn_dim).
  The affine maps act on the clip axis, so T is fixed by the parameters.
  """

  attn_dim: int = 128
  attn_hidden: int = 32
  normalize_inputs: bool = True

  @nn.compact
  def __call__(self, v, a):
    v, a = inputs(self.normalize_inputs, v, a)
    x = {"a": nn.Dense(self.attn_dim, name="encoder1")(a),
         "v": nn.Dense(self.attn_dim, name="encoder2")(v)}
    joint = jnp.concatenate([x["a"], x["v"]], axis=-1)  # (B, T, 2k)
    t = joint.shape[1]
    dense = lambda n, name: nn.Dense(n, use_bias=False, name=name)
    out = {}
    for s in "av":
      affine = dense(t, f"affine_{s}")(jnp.swapaxes(joint, 1, 2))  # (B, 2k, T)
      corr = jnp.einsum("btk,bjt->bkj", x[s], affine) / jnp.sqrt(float(joint.shape[-1]))
      hidden = nn.relu(dense(self.attn_hidden, f"W_c{s}")(jnp.tanh(corr))
                       + dense(self.attn_hidden, f"W_{s}")(jnp.swapaxes(x[s], 1, 2)))
      out[s] = jnp.swapaxes(dense(t, f"W_h{s}")(hidden), 1, 2) + x[s]
    return jnp.concatenate([out["v"], out["a"]], axis=-1)


FUSION_KINDS = ("jmt", "vanilla", "concat", "jca", "unimodal")


def build_fusion(cfg):
  """(fusion module, number of modalities it takes) from `config.model.fusion`."""
  # Configs from before the option normalised, as the Aff-Wild2 code does.
  normalize = dict(normalize_inputs=bool(cfg.get("normalize_inputs", True)))
  common = dict(num_layers=cfg.num_layers, num_heads=cfg.num_heads, ffn_dim=cfg.ffn_dim,
                **normalize)
  if cfg.kind == "jmt":
    return JointMultimodalTransformer(output=cfg.output, concat_ffn_dim=cfg.concat_ffn_dim,
                                      name="fusion", **common), 2
  if cfg.kind == "vanilla":
    return VanillaMultimodalTransformer(name="fusion", **common), 2
  if cfg.kind == "concat":
    return FeatureConcat(name="fusion", **common), 2
  if cfg.kind == "jca":
    return JointCrossAttention(cfg.attn_dim, cfg.attn_hidden, name="fusion", **normalize), 2
  if cfg.kind == "unimodal":
    return Unimodal(name="fusion", **common), 1
  raise ValueError(f"unknown fusion kind {cfg.kind!r}; use one of {list(FUSION_KINDS)}")
