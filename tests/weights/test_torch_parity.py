"""PyTorch parity: converted weights give the reference's outputs within 1e-4, and
parameter counts equal the references' (and torchvision's published ones)."""

import numpy as np
import pytest

torch = pytest.importorskip(
    "torch", reason="PyTorch parity tests need torch (pip install torch==2.13.0, CPU build)")

import jax  # pylint: disable=wrong-import-position
import jax.numpy as jnp  # pylint: disable=wrong-import-position
import torch.nn.functional as F  # pylint: disable=wrong-import-position
from safetensors.numpy import save_file  # pylint: disable=wrong-import-position

import torch_reference as ref  # pylint: disable=wrong-import-position
from conftest import load_config  # pylint: disable=wrong-import-position
from jmt_jax.models import frontends  # pylint: disable=wrong-import-position
from jmt_jax.models import fusion as fusion_lib  # pylint: disable=wrong-import-position
from jmt_jax.models import heads  # pylint: disable=wrong-import-position
from jmt_jax.models import model as model_lib  # pylint: disable=wrong-import-position
from jmt_jax.models import variables as variables_lib  # pylint: disable=wrong-import-position
from jmt_jax.weights import param_counts  # pylint: disable=wrong-import-position
from jmt_jax.weights import torch_import  # pylint: disable=wrong-import-position

TOL = 1e-4


def _abstract(config):
  return variables_lib.abstract(model_lib.build_model(config), config)


def _save(module, path):
  """The module's state dict as .pth (torch.save) or .safetensors (written from numpy)."""
  state = module.state_dict()
  if str(path).endswith(".pth"):
    torch.save(state, path)
  else:
    save_file({k: v.detach().numpy().copy() for k, v in state.items()}, str(path))
  return str(path)


def _converted(config, groups, module, path):
  variables, _ = torch_import.convert(config, [(groups, _save(module, path))])
  return variables


def _group_vars(variables, group):
  return {c: variables[c][group] for c in ("params", "batch_stats") if group in variables.get(c, {})}


def _torch_count(module, skip=()):
  """Parameters of `module`, less the modules in `skip` (built but unused by the public code)."""
  return sum(p.numel() for n, p in module.named_parameters() if not n.startswith(tuple(skip)))


def _jax_count(tree):
  return sum(x.size for x in jax.tree.leaves(tree))


def _max_diff(a, b):
  return float(np.max(np.abs(np.asarray(a) - np.asarray(b))))


def _seeded(seed):
  torch.manual_seed(seed)
  return torch.Generator().manual_seed(seed)


BACKBONE_CASES = {
    # name: (config, variant args, modality, torch reference, torch input shape)
    "r2plus1d_max": ("affwild2", "jmt", "video",
                     lambda: ref.ResNet("r2plus1d", reduction="max"), (2, 3, 8, 32, 32)),
    "r2plus1d_mean": ("affwild2", "jmt", "video",
                      lambda: ref.ResNet("r2plus1d", reduction="mean"), (2, 3, 4, 32, 32)),
    "r3d": ("biovid", "jmt", "video", lambda: ref.ResNet("r3d", reduction="mean"),
            (2, 3, 5, 32, 32)),
    "resnet18_1ch": ("affwild2", "jmt", "audio",
                     lambda: ref.ResNet("resnet2d", in_channels=1, reduction="mean"),
                     (2, 1, 64, 104)),
    "eda_cnn": ("biovid", "jmt", "eda", ref.Conv1DModel, (3, 1, 2816)),
    "i3d_tcn": ("affwild2", "jmt,video_backbone=i3d", "video", ref.I3DTCN, (1, 3, 8, 48, 48)),
}


def _backbone_case(name, tmp_path, ext):
  config_name, args, modality, make_ref, shape = BACKBONE_CASES[name]
  config = load_config(config_name, args)
  cfg = config.model.backbones[modality]
  if name == "r2plus1d_mean":
    config.model.backbones.video.reduction = "mean"
    cfg = config.model.backbones[modality]
  gen = _seeded(0)
  torch_model = ref.randomize_batch_norm(make_ref(), gen).eval()
  group = f"{modality}_backbone"
  variables = _converted(config, (group,), torch_model, tmp_path / f"{name}{ext}")
  x = torch.randn(shape, generator=gen)
  with torch.no_grad():
    want = torch_model(x).numpy()
  x_jax = jnp.asarray(np.moveaxis(x.numpy(), 1, -1))  # channels last
  module = model_lib.build_backbone(cfg, group)
  got = module.apply(_group_vars(variables, group), x_jax, train=False)
  return config, torch_model, variables, group, want, got


@pytest.mark.parametrize("name,ext", [("r2plus1d_max", ".pth"), ("r2plus1d_mean", ".safetensors"),
                                      ("r3d", ".safetensors"), ("resnet18_1ch", ".pth"),
                                      ("eda_cnn", ".pth"), ("i3d_tcn", ".pth")])
def test_backbone_matches_pytorch(name, ext, tmp_path):
  _, torch_model, variables, group, want, got = _backbone_case(name, tmp_path, ext)
  assert got.shape == want.shape
  assert _max_diff(got, want) < TOL, name
  assert _jax_count(variables["params"][group]) == _torch_count(torch_model)


def _video_features(config, variables, x):
  module = model_lib.build_backbone(config.model.backbones.video, "video_backbone")
  return module.apply(_group_vars(variables, "video_backbone"),
                      jnp.asarray(np.moveaxis(x.numpy(), 1, -1)))


def test_r2plus1d_flatten_linear_matches_pytorch(tmp_path):
  """Flatten + Linear(25088, 512) needs the paper's input: 8 frames of 112x112. The
  authors keep the Linear beside the backbone: all_backbones.pt holds vision_r2d1.* and
  vision_r2d1_fc.*; vision_r2d1.pt and vision_r2d1_fc.pt hold them apart."""
  config = load_config("affwild2", "jmt,video_reduction=flatten_linear")
  torch_model = ref.randomize_batch_norm(ref.R2D1Flatten(), _seeded(1)).eval()
  x = torch.randn(1, 3, 8, 112, 112)
  with torch.no_grad():
    want = torch_model(x).numpy()
  together = _converted(config, ("video_backbone",), torch_model, tmp_path / "all.pth")
  assert _max_diff(_video_features(config, together, x), want) < TOL

  trunk = _save(torch_model.vision_r2d1, tmp_path / "vision_r2d1.pth")
  fc = _save(torch_model.vision_r2d1_fc, tmp_path / "vision_r2d1_fc.pth")
  apart, _ = torch_import.convert(config, [(("video_backbone",), (trunk, fc))])
  assert jax.tree.all(jax.tree.map(np.array_equal, apart, together))

  with pytest.raises(torch_import.ConversionError,
                     match=r"missing keys: vision_r2d1_fc.bias, vision_r2d1_fc.weight; the "
                           r"authors save the flatten reduction's Linear apart, as "
                           r"vision_r2d1_fc.pt: give both files"):
    torch_import.convert(config, [(("video_backbone",), trunk)])
  # A flatten-trained file for the paper's max reduction would drop a used layer.
  with pytest.raises(torch_import.ConversionError,
                     match=r"vision_r2d1_fc.weight is the flatten reduction's Linear, which the "
                           r"configured 'max' reduction has no place for: convert with "
                           r"--config=configs/affwild2.py:video_reduction=flatten_linear"):
    torch_import.convert(load_config("affwild2", "jmt"),
                          [(("video_backbone",), str(tmp_path / "all.pth"))])


def test_biovid_visual_model2_projection_is_kept(tmp_path):
  """Visual_model2's 512x512 `fc` is part of the features its BioVid concatenation model
  takes (out_layers emptied): with video_fc it converts and matches; without, it is
  refused with the option that fits. Visual_model's 2-class `fc` is a classifier that
  VIS_PHY_MODEL replaces by nothing: ignored, and refused as a projection."""
  gen = _seeded(4)
  x = torch.randn(2, 3, 5, 32, 32, generator=gen)
  model2 = ref.randomize_batch_norm(ref.VisualModel2(), gen).eval()
  path2 = _save(model2, tmp_path / "visual_model2.pth")
  config = load_config("biovid", "jmt,video_fc")
  variables, manifest = torch_import.convert(config, [(("video_backbone",), path2)])
  with torch.no_grad():
    want = model2.features(x).numpy()
  assert _max_diff(_video_features(config, variables, x), want) < TOL
  assert manifest["sources"][0]["outside_prefix"][0].startswith("out_layers.")
  with pytest.raises(torch_import.ConversionError,
                     match=r"unknown keys: visual_model.fc.bias, visual_model.fc.weight; "
                           r"fc.weight \(512, 512\) is a projection after the pooling .* "
                           r"convert with --config=configs/biovid.py:video_fc"):
    torch_import.convert(load_config("biovid", "jmt"), [(("video_backbone",), path2)])

  classifier = ref.randomize_batch_norm(ref.ResNet("r3d", fc_out=2), gen).eval()
  wrapped = torch.nn.Module()
  wrapped.visual_model = classifier  # the authors' Visual_model
  path1 = _save(wrapped, tmp_path / "visual_model.pth")
  variables, manifest = torch_import.convert(load_config("biovid", "jmt"),
                                              [(("video_backbone",), path1)])
  assert {"visual_model.fc.weight", "visual_model.fc.bias"} <= set(
      manifest["sources"][0]["ignored"])
  classifier.fc = torch.nn.Identity()  # VIS_PHY_MODEL: visual_model.fc = nn.Sequential()
  with torch.no_grad():
    want = classifier(x).numpy()
  assert _max_diff(_video_features(load_config("biovid", "jmt"), variables, x), want) < TOL
  with pytest.raises(torch_import.ConversionError,
                     match=r"fc.weight \(2, 512\) is a classifier, not a projection"):
    torch_import.convert(config, [(("video_backbone",), path1)])


def test_backbone_counts_equal_torchvision_published():
  """torchvision's published totals less the classifier: r2plus1d_18 31,505,325 - 205,200;
  r3d_18 33,371,472 - 205,200; resnet18 11,689,512 - 513,000 - 6,272 (1-channel stem)."""
  af = param_counts.counts(_abstract(load_config("affwild2", "jmt"))["params"], 1)
  bv = param_counts.counts(_abstract(load_config("biovid", "jmt"))["params"], 1)
  af, bv = {p[0]: n for p, n in af}, {p[0]: n for p, n in bv}
  assert af["video_backbone"] == 31_505_325 - 205_200
  assert af["audio_backbone"] == 11_689_512 - 513_000 - 64 * 2 * 49
  assert bv["video_backbone"] == 33_371_472 - 205_200
  assert bv["eda_backbone"] == 32 * 5 + 32 + 64 * 32 * 5 + 64 + 64 * 349 * 512 + 512
  assert _torch_count(ref.ResNet("r2plus1d")) == af["video_backbone"]


FUSION_CASES = {
    # name: (config, variant, torch reference from (d, heads, layers, config))
    "jmt_tokens": ("affwild2", "jmt",
                   lambda d, h, n, c: ref.AffWild2Fusion(ref.JMT(d, h, n, "tokens"), d)),
    "jmt_fc": ("affwild2", "jmt",
               lambda d, h, n, c: ref.AffWild2Fusion(ref.JMT(d, h, n, "fc"), 2 * d)),
    "vanilla": ("affwild2", "vanilla",
                lambda d, h, n, c: ref.AffWild2Fusion(ref.Vanilla(d, h, n), d)),
    "concat": ("affwild2", "concat",
               lambda d, h, n, c: ref.AffWild2Fusion(ref.FeatureConcatFC(d), d)),
    "biovid_jmt": ("biovid", "jmt",
                   lambda d, h, n, c: ref.BioVidJMT(d, h, n, c.model.head.mlp, 2)),
    "jca": ("affwild2", "jca", lambda d, h, n, c: ref.CAM(d, c.input.num_clips)),
}


# The paper's run (1 head, 1 layer) and a deeper, multi-head one; concat and joint
# cross-attention have neither.
FUSION_PARAMS = [(n, hl) for n in sorted(FUSION_CASES) for hl in ((1, 1), (4, 2))
                 if hl == (1, 1) or n not in ("concat", "jca")]


@pytest.mark.parametrize("name,heads_layers", FUSION_PARAMS)
def test_fusion_matches_pytorch(name, heads_layers, tmp_path):
  config_name, variant, make_ref = FUSION_CASES[name]
  config = load_config(config_name, variant)
  num_heads, num_layers = heads_layers
  if name not in ("concat", "jca"):
    config.model.fusion.update(num_heads=num_heads, num_layers=num_layers)
  if name == "jmt_fc":
    config.model.fusion.output = "fc"
  d, t = 512, config.input.num_clips
  torch_model = make_ref(d, num_heads, num_layers, config).eval()
  groups = ("fusion",) if name == "jca" else ("fusion", "head")
  variables = _converted(config, groups, torch_model, tmp_path / f"{name}.pth")
  gen = _seeded(2)
  v, a = torch.randn(3, t, d, generator=gen), torch.randn(3, t, d, generator=gen)
  with torch.no_grad():
    want = torch_model(v, a)
  fusion, _ = fusion_lib.build_fusion(config.model.fusion)
  got = fusion.apply({"params": variables["params"]["fusion"]}, jnp.asarray(v.numpy()),
                     jnp.asarray(a.numpy()))
  if name != "jca":
    got = heads.build_head(config.task, config.model.head).apply({"params": variables["params"]["head"]}, got)
    got = (got["valence"], got["arousal"]) if "valence" in got else got["logits"]
    want = tuple(w.numpy() for w in want) if isinstance(want, tuple) else want.numpy()
  else:
    want = want.numpy()
  for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
    assert g.shape == w.shape
    assert _max_diff(g, w) < TOL, name
  jax_count = sum(_jax_count(variables["params"][g]) for g in groups)
  unused = ("mm_transformer.final_encoder.", "mm_transformer.gated_attention.")
  assert jax_count == _torch_count(torch_model, skip=unused)


def test_unknown_missing_and_misshaped_keys_are_named(tmp_path):
  config = load_config("affwild2", "concat")
  torch_model = ref.AffWild2Fusion(ref.FeatureConcatFC(512), 512)
  state = {k: v.numpy().copy() for k, v in torch_model.state_dict().items()}
  state["mm_transformer.extra.weight"] = np.zeros((2, 2), np.float32)
  del state["vregressor.3.bias"]
  state["aregressor.0.weight"] = np.zeros((128, 511), np.float32)
  path = str(tmp_path / "bad.safetensors")
  save_file(state, path)
  with pytest.raises(torch_import.ConversionError) as e:
    torch_import.convert(config, [(("fusion", "head"), path)])
  msg = str(e.value)
  assert "\n" not in msg and path in msg
  assert "1 missing keys: vregressor.3.bias" in msg
  assert "aregressor.0.weight (128, 511) (expected (128, 512))" in msg
  assert "1 unknown keys: mm_transformer.extra.weight" in msg
  assert "nothing was converted" in msg


def test_wrapped_and_prefixed_state_dicts_load(tmp_path):
  """The authors' files: DataParallel's 'module.', a wrapper's 'resnet.', classifier heads."""
  config = load_config("affwild2", "jmt")
  torch_model = ref.ResNet("resnet2d", in_channels=1)
  state = {f"module.resnet.{k}": v for k, v in torch_model.state_dict().items()}
  state["module.resnet.fc.1.weight"] = torch.zeros(17, 512)
  torch.save({"net": state}, tmp_path / "audio.pt")
  variables, manifest = torch_import.convert(config, [(("audio_backbone",),
                                                        str(tmp_path / "audio.pt"))])
  src = manifest["sources"][0]
  assert src["prefix"] == "resnet."
  assert "resnet.fc.1.weight" in src["ignored"]
  assert any(k.endswith("num_batches_tracked") for k in src["ignored"])
  np.testing.assert_array_equal(
      variables["params"]["audio_backbone"]["stem_conv"]["kernel"],
      np.transpose(torch_model.conv1.weight.detach().numpy(), (2, 3, 1, 0)))


def test_rgb_imagenet_stem_becomes_the_log_mel_stem(tmp_path):
  """torchvision's ImageNet resnet18 (3-channel conv1) for the 1-channel audio backbone:
  conv1 is averaged over its input channels, as the authors' AudioModel does."""
  config = load_config("affwild2", "jmt")
  rgb = ref.ResNet("resnet2d", in_channels=3)
  variables, manifest = torch_import.convert(
      config, [(("audio_backbone",), _save(rgb, tmp_path / "resnet18.pth"))])
  assert manifest["sources"][0]["adapted"] == ["conv1.weight: mean of the 3 input channels"]
  mean = rgb.conv1.weight.detach().numpy().mean(axis=1, keepdims=True)
  np.testing.assert_allclose(variables["params"]["audio_backbone"]["stem_conv"]["kernel"],
                             np.transpose(mean, (2, 3, 1, 0)), rtol=1e-6)


def test_i3d_input_resize_matches_the_authors_interpolation():
  """resize_clips_for_i3d: F.interpolate(trilinear, align_corners=False) to 3x224x224 over
  (channels, H, W), i.e. bilinear in H and W."""
  cfg = load_config("affwild2", "jmt,video_backbone=i3d").model.backbones.video
  x = torch.randn(2, 3, 8, 112, 112, generator=_seeded(3))
  want = F.interpolate(x.permute(0, 2, 1, 3, 4), size=(3, 224, 224), mode="trilinear",
                       align_corners=False).permute(0, 2, 1, 3, 4)
  got = frontends.resize(jnp.asarray(np.moveaxis(x.numpy(), 1, -1)), cfg.resize_to)
  assert _max_diff(np.moveaxis(np.asarray(got), -1, 1), want.numpy()) < TOL
