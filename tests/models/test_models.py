"""Shapes of every module, the (2+1)D rules, and the Conv3D equivalence."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jmt_jax.models import attention
from jmt_jax.models import biosignal
from jmt_jax.models import fusion
from jmt_jax.models import heads
from jmt_jax.models import model as model_lib
from jmt_jax.models import resnet

KEY = jax.random.key(0)


def init_apply(module, *args, **kwargs):
  """Jitted init and apply: op-by-op execution of conv nets is many times slower."""
  variables = jax.jit(lambda *a: module.init(KEY, *a, **kwargs))(*args)
  return variables, jax.jit(lambda v, *a: module.apply(v, *a, **kwargs))(variables, *args)


def shapes(module, *args, **kwargs):
  """(variables, output) of init, as shapes only: traced, never compiled or run."""
  out, variables = jax.eval_shape(lambda: module.init_with_output(KEY, *args, **kwargs))
  return variables, out


@pytest.mark.parametrize("kernel,strides", [((3, 3, 3), (2, 2, 2)), ((1, 3, 3), (1, 2, 2)),
                                            ((3, 1, 1), (1, 1, 1)), ((3, 7, 7), (1, 2, 2)),
                                            ((1, 1, 1), (2, 2, 2))])
def test_conv3d_equals_xla_3d_convolution(kernel, strides):
  x = jax.random.normal(KEY, (2, 5, 9, 9, 3))
  module = resnet.Conv3D(4, kernel, strides)
  variables, got = init_apply(module, x)
  want = jax.lax.conv_general_dilated(x, variables["params"]["kernel"], strides,
                                      [(k // 2, k // 2) for k in kernel],
                                      dimension_numbers=("NDHWC", "DHWIO", "NDHWC"))
  assert got.shape == want.shape
  np.testing.assert_allclose(got, want, atol=1e-5)


def test_r2plus1d_midplanes_rule():
  # torchvision r2plus1d_18: 64->64 uses 144 mid channels, 64->128 uses 230.
  assert resnet.r2plus1d_midplanes(64, 64) == 144
  assert resnet.r2plus1d_midplanes(64, 128) == 230
  block = resnet.BasicBlock(128, 2, "2plus1d")
  variables, _ = shapes(block, jnp.zeros((1, 4, 8, 8, 64)), train=False)
  assert variables["params"]["conv1_spatial"]["kernel"].shape == (1, 3, 3, 64, 230)
  assert variables["params"]["conv1_temporal"]["kernel"].shape == (3, 1, 1, 230, 128)
  assert variables["params"]["conv2_spatial"]["kernel"].shape == (1, 3, 3, 128, 230)


@pytest.mark.parametrize("kind,shape,out_spatial", [
    ("resnet2d", (2, 64, 41, 1), None),
    ("r3d", (2, 8, 32, 32, 3), (1, 2, 2)),
    ("r2plus1d", (2, 8, 32, 32, 3), (1, 2, 2)),
])
@pytest.mark.parametrize("reduction", ["mean", "max", "flatten_linear"])
def test_resnet_shapes(kind, shape, out_spatial, reduction):
  net = resnet.ResNet(kind, widths=(4, 8, 8, 16), blocks=(1, 1, 1, 1), stem_width=4, stem_mid=3,
                      reduction=reduction, embed_dim=12)
  variables, out = shapes(net, jnp.zeros(shape), train=False)
  assert out.shape == (2, 12 if reduction == "flatten_linear" else 16)
  assert net.out_dim == out.shape[-1]
  if reduction == "flatten_linear" and out_spatial:
    # layer4 map (1, 2, 2) x 16 channels, flattened: the paper's 512*1*7*7 at full size.
    assert variables["params"]["reduce_fc"]["kernel"].shape == (16 * int(np.prod(out_spatial)), 12)


def test_r2plus1d_paper_layer4_map_is_1x7x7():
  net = resnet.ResNet("r2plus1d", widths=(4, 4, 4, 4), blocks=(1, 1, 1, 1), stem_width=4, stem_mid=3,
                      reduction="flatten_linear", embed_dim=5)
  variables = jax.eval_shape(lambda: net.init(KEY, jnp.zeros((1, 8, 112, 112, 3)), train=False))
  assert variables["params"]["reduce_fc"]["kernel"].shape == (4 * 1 * 7 * 7, 5)


def test_biosignal_cnn_matches_paper_flatten_size():
  net = biosignal.BiosignalCNN(embed_dim=512)
  variables = jax.eval_shape(lambda: net.init(KEY, jnp.zeros((2, 2816, 1))))
  assert variables["params"]["fc"]["kernel"].shape == (64 * 349, 512)
  _, out = shapes(biosignal.BiosignalCNN(widths=(4, 8), embed_dim=6), jnp.zeros((3, 100, 2)))
  assert out.shape == (3, 6)


def test_attention_and_encoder_shapes():
  q, kv = jnp.ones((2, 5, 8)), jnp.ones((2, 7, 8))
  _, out = shapes(attention.MultiHeadAttention(2), q, kv)
  assert out.shape == (2, 5, 8)
  _, out = shapes(attention.Encoder(2, 2, 16), jnp.ones((2, 3, 6, 8)))
  assert out.shape == (2, 3, 6, 8)
  with pytest.raises(ValueError, match="not divisible"):
    shapes(attention.MultiHeadAttention(3), q, kv)


def test_attention_is_scaled_dot_product_softmax():
  mha = attention.MultiHeadAttention(2)
  q, kv = jax.random.normal(KEY, (1, 3, 4)), jax.random.normal(jax.random.key(1), (1, 5, 4))
  variables, out = init_apply(mha, q, kv)
  p = variables["params"]
  proj = lambda x, n: (x @ p[n]["kernel"] + p[n]["bias"]).reshape(x.shape[:-1] + (2, 2))
  qh, kh, vh = proj(q, "query"), proj(kv, "key"), proj(kv, "value")
  heads_out = []
  for h in range(2):
    w = jax.nn.softmax(qh[0, :, h] @ kh[0, :, h].T / np.sqrt(2), axis=-1)
    heads_out.append(w @ vh[0, :, h])
  want = jnp.concatenate(heads_out, -1) @ p["out"]["kernel"] + p["out"]["bias"]
  np.testing.assert_allclose(out[0], want, atol=1e-5)


@pytest.mark.parametrize("output,width", [("tokens", 8), ("concat", 48)])
def test_jmt_shapes(output, width):
  jmt = fusion.JointMultimodalTransformer(num_layers=2, num_heads=2, ffn_dim=16, output=output,
                                          concat_ffn_dim=16)
  _, out = shapes(jmt, jnp.ones((3, 4, 8)), jnp.ones((3, 4, 8)))
  assert out.shape == (3, 4, width)


def test_baseline_fusion_shapes():
  _, out = shapes(fusion.FeatureConcat(1, 2, 16), jnp.ones((3, 4, 8)), jnp.ones((3, 4, 8)))
  assert out.shape == (3, 4, 8)
  _, out = shapes(fusion.Unimodal(1, 2, 16), jnp.ones((3, 4, 8)))
  assert out.shape == (3, 4, 8)


def test_head_shapes():
  x = jnp.ones((3, 4, 8))
  _, out = shapes(heads.ValenceArousalHead(hidden=6), x)
  assert out["valence"].shape == out["arousal"].shape == (3, 4)
  _, out = shapes(heads.PainHead(num_classes=2, mlp=(6, 4)), x)
  assert out["logits"].shape == (3, 2)


def test_full_model_shapes_and_parameter_groups(tiny_config):
  config = tiny_config("demo", "tiny")
  model = model_lib.build_model(config)
  batch = {m: jnp.zeros((2,) + s.shape[1:], s.dtype)
           for m, s in model_lib.input_spec(config).items()}
  assert batch["video"].shape == (2, 8, 4, 16, 16, 3) and batch["audio"].dtype == jnp.int16
  variables, out = shapes(model, batch)
  assert out["valence"].shape == out["arousal"].shape == (2, 8)
  assert set(variables["params"]) == {"video_backbone", "audio_backbone", "fusion", "head"}


def test_model_rejects_wrong_modality_count(tiny_config):
  config = tiny_config("demo", "video,tiny")
  config.model.fusion.kind = "jmt"
  with pytest.raises(ValueError, match="takes 2 modalities"):
    model_lib.build_model(config).init(KEY, {"video": jnp.zeros((1, 8, 4, 16, 16, 3), jnp.uint8)})
