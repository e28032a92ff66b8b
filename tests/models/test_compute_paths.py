"""The compute paths chosen for speed give the numbers of the plain ones: 3-D
convolutions native and per temporal tap, small-map 2-D convolutions as one matmul;
forward and gradient. (Packed attention projections are held to PyTorch's modules by
test_torch_parity.)"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import load_config
from jmt_jax.benchmarks import step_timing
from jmt_jax.models import model as model_lib
from jmt_jax.models import resnet

TOL = 2e-5


def _lax_conv(x, kernel, strides, pads):
  spatial = "DHW"[3 - (x.ndim - 2):]
  dims = (f"N{spatial}C", f"{spatial}IO", f"N{spatial}C")
  return jax.lax.conv_general_dilated(x, kernel, strides, pads, dimension_numbers=dims,
                                      precision=jax.lax.Precision.HIGHEST)


def _forward_and_grads(fn, x, kernel):
  """Output and the gradients of a fixed random projection of it, w.r.t. x and kernel."""
  out = fn(x, kernel)
  probe = jax.random.normal(jax.random.key(9), out.shape)
  grads = jax.grad(lambda x, k: jnp.vdot(fn(x, k), probe), argnums=(0, 1))(x, kernel)
  return out, grads


def _close(a, b):
  scale = max(1.0, float(jnp.max(jnp.abs(b))))
  return float(jnp.max(jnp.abs(a - b))) / scale


@pytest.mark.parametrize("kernel,strides,pads", [
    ((3, 3, 3), (1, 1, 1), None),  # R3D-18
    ((3, 3, 3), (2, 2, 2), None),
    ((1, 3, 3), (1, 2, 2), None),  # (2+1)D spatial, strided
    ((3, 1, 1), (2, 1, 1), None),  # (2+1)D temporal, strided: a matmul per tap
    ((1, 7, 7), (1, 2, 2), None),  # (2+1)D stem
    ((7, 7, 7), (1, 2, 2), ((3, 3), (2, 3), (2, 3))),  # I3D's asymmetric 'SAME'
])
@pytest.mark.parametrize("impl", ["native", "per_tap"])
def test_conv3d_implementations_agree_with_lax(impl, kernel, strides, pads):
  x = jax.random.normal(jax.random.key(0), (2, 6, 11, 11, 5))
  conv = resnet.Conv3D(7, kernel, strides, padding=pads, impl=impl)
  variables = conv.init(jax.random.key(1), x)
  pads = pads or [(k // 2, k // 2) for k in kernel]
  out, grads = _forward_and_grads(lambda x, k: conv.apply({"params": {"kernel": k}}, x), x,
                                  variables["params"]["kernel"])
  want, want_grads = _forward_and_grads(lambda x, k: _lax_conv(x, k, strides, pads), x,
                                        variables["params"]["kernel"])
  assert out.shape == want.shape
  assert _close(out, want) < TOL
  for g, w in zip(grads, want_grads):
    assert _close(g, w) < TOL


@pytest.mark.parametrize("shape,strides", [((3, 2, 4, 24), (1, 1)), ((3, 3, 5, 24), (2, 2)),
                                           ((3, 12, 13, 8), (1, 1))])
def test_small_map_conv2d_is_the_convolution(shape, strides):
  """Maps of at most 16 positions go through one matmul over patches, larger ones through
  XLA's convolution: the same numbers either way."""
  x = jax.random.normal(jax.random.key(0), shape)
  kernel = jax.random.normal(jax.random.key(1), (3, 3, shape[-1], 6))
  pads = [(1, 1), (1, 1)]
  out, grads = _forward_and_grads(lambda x, k: resnet.conv2d(x, k, strides, pads), x, kernel)
  want, want_grads = _forward_and_grads(lambda x, k: _lax_conv(x, k, strides, pads), x, kernel)
  assert _close(out, want) < TOL
  for g, w in zip(grads, want_grads):
    assert _close(g, w) < TOL


def test_auto_picks_per_tap_on_cpu():
  assert jax.default_backend() == "cpu"
  assert resnet.conv3d_impl("auto") == "per_tap"
  with pytest.raises(ValueError, match="conv3d='fast'"):
    resnet.conv3d_impl("fast")


@pytest.mark.parametrize("config_name,arg", [("affwild2", "jmt,tiny"), ("biovid", "jmt,tiny"),
                                             ("affwild2", "jmt,tiny,video_backbone=i3d")])
@pytest.mark.slow
def test_video_backbones_agree_across_implementations(config_name, arg):
  """Each config's video backbone, tiny, gives one embedding with either implementation."""
  cfg = load_config(config_name, arg).model.backbones.video
  x = jax.random.normal(jax.random.key(0), (2, 4, 32, 32, 3))
  outs = {}
  for impl in ("native", "per_tap"):
    cfg.conv3d = impl
    net = model_lib.build_backbone(cfg, "video_backbone")
    variables = net.init(jax.random.key(1), x)
    outs[impl] = net.apply(variables, x)
  assert _close(outs["native"], outs["per_tap"]) < TOL


@pytest.mark.slow
@pytest.mark.parametrize("name", ["demo", "affwild2", "biovid"])
def test_every_config_trains_its_tiny_variant_alike_with_each_implementation(name):
  """One fine-tuning train step of the whole tiny model (gradients through every
  backbone) gives the same parameters with either 3-D convolution."""
  params = {}
  for impl in ("native", "per_tap"):
    config = load_config(name, "tiny")
    config.model.freeze_backbones = False
    for backbone in config.model.backbones.values():
      backbone.conv3d = impl
    step = step_timing.compile_step(config, step_timing.synthetic_batch(config, 2))
    params[impl] = step.state.params
  leaves = jax.tree.leaves_with_path(params["native"])
  assert leaves
  for (path, a), b in zip(leaves, jax.tree.leaves(params["per_tap"])):
    assert _close(a, b) < TOL, jax.tree_util.keystr(path)


@pytest.mark.slow
def test_rematerialised_backbone_gives_the_same_gradient():
  cfg = load_config("affwild2", "jmt,tiny").model.backbones.video
  x = jax.random.normal(jax.random.key(0), (2, 4, 16, 16, 3))
  grads = {}
  for remat in ("", "nothing_saveable"):
    cfg.remat = remat
    net = model_lib.build_backbone(cfg, "video_backbone")
    variables = net.init(jax.random.key(1), x, False)

    def loss(params, net=net, variables=variables):
      out, _ = net.apply({**variables, "params": params}, x, True, mutable=["batch_stats"])
      return jnp.sum(out ** 2)
    grads[remat] = jax.grad(loss)(variables["params"])
  for a, b in zip(jax.tree.leaves(grads[""]), jax.tree.leaves(grads["nothing_saveable"])):
    assert _close(a, b) < TOL
  cfg.remat = "everything"
  with pytest.raises(ValueError, match="remat='everything'"):
    model_lib.build_backbone(cfg, "video_backbone")


def test_compute_dtype_auto_is_float32_on_cpu_and_the_paper_configs_use_it():
  assert model_lib.resolve_compute_dtype("auto") == "float32"
  assert model_lib.resolve_compute_dtype("bfloat16") == "bfloat16"
  with pytest.raises(ValueError, match="compute_dtype='fp16'"):
    model_lib.resolve_compute_dtype("fp16")
  for name in ("affwild2", "biovid"):
    assert load_config(name, "jmt").compute_dtype == "auto"


def test_attention_maps_are_sown_without_changing_the_outputs():
  """Asked for its maps, attention sows them (rows summing to 1), and its outputs are
  those of a run that does not ask."""
  from jmt_jax.models import fusion as fusion_lib  # pylint: disable=import-outside-toplevel
  fusion = fusion_lib.JointMultimodalTransformer(num_layers=1, num_heads=2, ffn_dim=16)
  v, a = (jax.random.normal(jax.random.key(i), (3, 5, 8)) for i in (0, 1))
  variables = fusion.init(jax.random.key(2), v, a)
  fused = fusion.apply(variables, v, a)
  explicit, state = fusion.apply(variables, v, a, mutable=["intermediates"])
  assert _close(fused, explicit) < TOL
  maps = fusion_lib.cross_attention_maps({"fusion": state["intermediates"]})
  assert sorted(maps) == sorted(fusion_lib.CROSS_OUTPUTS)
  for m in maps.values():
    assert m.shape == (3, 2, 5, 5)
    np.testing.assert_allclose(np.asarray(m).sum(-1), 1.0, rtol=1e-5)


@pytest.mark.parametrize("name,arg", [
    ("affwild2", "jmt,tiny"), ("biovid", "jmt,tiny"),
    pytest.param("affwild2", "tiny,video_backbone=r2plus1d+i3d", marks=pytest.mark.slow)])
def test_backbones_embed_alike_in_chunks_of_clips(name, arg):
  """Embedding 2 clips per call (with a remainder: 3 windows of 4 clips, 12 / 5 for
  BioVid) gives the embeddings of one call over the batch; a pair chunks its members."""
  config = load_config(name, arg)
  batch = step_timing.synthetic_batch(config, 3)
  embeddings, loops = {}, {}
  for clips in (0, 5 if name == "biovid" else 2):
    model_lib.set_clips_per_call(config, clips)
    model = model_lib.build_model(config)
    variables = model.init(jax.random.key(0), batch)
    embed = jax.jit(lambda v, b, model=model: model.apply(v, b, method=model.embed))
    loops[clips] = str(jax.make_jaxpr(embed)(variables, batch)).count("scan[")
    embeddings[clips] = embed(variables, batch)
  chunked, whole = embeddings.values()
  assert loops[2 if name != "biovid" else 5] - loops[0] == len(config.model.modalities) + (
      "+" in arg)  # a loop per backbone
  for m in config.model.modalities:
    assert _close(chunked[m], whole[m]) < TOL, m


def test_clips_per_call_resolves_per_backbone_and_platform():
  resolve = model_lib.resolve_clips_per_call
  assert resolve(-1, "r2plus1d") == model_lib.CPU_CLIPS_PER_CALL
  assert resolve(-1, "r2plus1d", "cuda") == resolve(-1, "r3d", "tpu") == 0
  assert resolve(-1, "resnet2d") == resolve(-1, "wavlm") == 0
  assert resolve(8, "resnet2d", "tpu") == 8
  for bad in (-2, "4", 2.0, True):
    with pytest.raises(ValueError, match="clips_per_call="):
      resolve(bad, "r3d")
  for name in ("affwild2", "biovid"):
    config = load_config(name, "jmt")
    model = model_lib.build_model(config, "cpu")
    assert model.config.backbones.video.clips_per_call == model_lib.CPU_CLIPS_PER_CALL
    assert model_lib.build_model(config, "tpu").config.backbones.video.clips_per_call == 0


def test_step_flops_count_every_chunk_of_clips():
  """XLA counts a loop's body once, so a step's FLOPs (for MFU) are those of its program
  without chunks of clips, which the chunked program's own count falls short of."""
  config = load_config("affwild2", "jmt,tiny")
  config.model.freeze_backbones = True
  batch = step_timing.synthetic_batch(config, 2)
  counts = {}
  for clips in (0, 2):
    model_lib.set_clips_per_call(config, clips)
    model = model_lib.build_model(config)
    variables = jax.eval_shape(lambda m=model: m.init(jax.random.key(0), batch))
    embed = jax.jit(lambda v, b, m=model: m.apply(v, b, method=m.embed))
    own = embed.lower(variables, batch).cost_analysis()["flops"]
    counts[clips] = (step_timing.step_flops(config, batch), own)
  assert counts[2][0] == counts[0][0] > 0
  assert counts[2][1] < 0.6 * counts[0][1]  # a quarter of the backbones' clips counted
