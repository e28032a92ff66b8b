"""ViT face encoders: every hidden state, the last one and the pooled output of CLIP's
vision tower, MAE's encoder and DINOv2 equal `transformers`' PyTorch models built from
small random configs (no download), saved as `save_pretrained` saves them and converted
through `python -m jmt_jax.weights.convert`'s library; DINOv2's position embeddings are
interpolated as PyTorch's bicubic `interpolate` does."""

import jax
import numpy as np
import pytest

from conftest import load_config
from jmt_jax.benchmarks import step_timing
from jmt_jax.models import model as model_lib
from jmt_jax.models import vit
from jmt_jax.weights import torch_import

TOL = 1e-4


def _tiny_transformers_model(transformers, family):
  """(model class, config): 2 layers of width 32, 8-pixel patches; DINOv2's position
  grid (5x5) differs from the images' so that its interpolation is exercised."""
  common = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, patch_size=8)
  if family == "clip":
    return transformers.CLIPVisionModel, transformers.CLIPVisionConfig(
        intermediate_size=48, image_size=32, hidden_act="quick_gelu", **common)
  if family == "vit_mae":
    return transformers.ViTMAEModel, transformers.ViTMAEConfig(
        intermediate_size=48, image_size=32, mask_ratio=0.0, **common)
  return transformers.Dinov2Model, transformers.Dinov2Config(mlp_ratio=2, image_size=40,
                                                             **common)


def _saved(torch, transformers, family, directory, config=None, seed=0):
  """A random model saved as transformers saves one; a tiny one with every parameter
  perturbed (so LayerNorm scales, layer scales and biases are tested too), a full-size
  one (`config`) at transformers' own initialisation."""
  cls, tiny = _tiny_transformers_model(transformers, family)
  torch.manual_seed(seed)
  model = cls(config or tiny).eval()
  if config is None:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
      for p in model.parameters():
        p.add_(0.2 * torch.randn(p.shape, generator=gen))
  model.save_pretrained(directory)
  return model


def _converted(family, directory, size):
  config = load_config("affwild2", f"tiny,video_backbone=vit,vit_family={family},"
                       f"vit_config={directory},vit_input_size={size}")
  variables, _ = torch_import.convert(config, [(("video_backbone",),
                                                f"{directory}/model.safetensors")])
  encoder = model_lib.build_backbone(model_lib.build_model(config).config.backbones.video)
  return encoder, {"params": variables["params"]["video_backbone"]}


def _assert_matches(torch, reference, encoder, variables, family, size, layers):
  x = np.random.default_rng(1).standard_normal((2, size, size, 3)).astype(np.float32)
  # MAE shuffles its patches by random noise even with nothing masked; noise rising
  # along the patches keeps their order.
  patches = (size // reference.config.patch_size) ** 2
  noise = {"noise": torch.arange(patches, dtype=torch.float32).repeat(2, 1)} if (
      family == "vit_mae") else {}
  with torch.no_grad():
    want = reference(pixel_values=torch.from_numpy(x).permute(0, 3, 1, 2),
                     output_hidden_states=True, **noise)
  states = jax.jit(lambda v, y: encoder.apply(v, y, method=encoder.hidden_states))(variables, x)
  assert len(states) == len(want.hidden_states) == layers + 1
  for i, (got, expected) in enumerate(zip(states, want.hidden_states)):
    np.testing.assert_allclose(np.asarray(got), expected.numpy(), atol=TOL,
                               err_msg=f"hidden state {i}")
  last = encoder.apply(variables, states, method=encoder.last_hidden_state)
  np.testing.assert_allclose(np.asarray(last), want.last_hidden_state.numpy(), atol=TOL)
  pooled = np.asarray(encoder.apply(variables, x, method=encoder.embed_frames))
  # MAE has no pooled output; its class token in the last hidden state stands for it.
  expected = want.last_hidden_state[:, 0] if family == "vit_mae" else want.pooler_output
  np.testing.assert_allclose(pooled, expected.numpy(), atol=TOL)


@pytest.mark.parametrize("family", vit.FAMILIES)
def test_hidden_states_and_pooled_output_match_transformers(family, tmp_path):
  torch = pytest.importorskip("torch")
  transformers = pytest.importorskip("transformers")
  reference = _saved(torch, transformers, family, tmp_path)
  size = 24 if family == "dinov2" else 32  # DINOv2: a 3x3 grid from its 5x5 positions
  encoder, variables = _converted(family, tmp_path, size)
  _assert_matches(torch, reference, encoder, variables, family, size, 2)


def test_a_whole_clip_model_converts_its_vision_tower(tmp_path):
  """A CLIPModel checkpoint (model_type 'clip', as openai/clip-vit-base-patch16 is
  published): its vision_config gives the architecture, its `vision_model.` keys the
  weights, and the text tower is reported as outside the encoder."""
  torch = pytest.importorskip("torch")
  transformers = pytest.importorskip("transformers")
  _, vision = _tiny_transformers_model(transformers, "clip")
  torch.manual_seed(0)
  model = transformers.CLIPModel(transformers.CLIPConfig(
      vision_config=vision.to_dict(), projection_dim=16,
      text_config=dict(hidden_size=32, intermediate_size=48, num_hidden_layers=1,
                       num_attention_heads=4))).eval()
  model.save_pretrained(tmp_path)
  config = load_config("affwild2", f"tiny,video_backbone=vit,vit_config={tmp_path},"
                       f"vit_input_size=32")
  variables, report = torch_import.convert(config, [(("video_backbone",),
                                                     f"{tmp_path}/model.safetensors")])
  (source,) = report["sources"]
  assert source["prefix"] == "vision_model." and "text_projection.weight" in source[
      "outside_prefix"]
  encoder = model_lib.build_backbone(model_lib.build_model(config).config.backbones.video)
  x = np.random.default_rng(0).standard_normal((2, 32, 32, 3)).astype(np.float32)
  with torch.no_grad():
    want = model.vision_model(pixel_values=torch.from_numpy(x).permute(0, 3, 1, 2))
  got = encoder.apply({"params": variables["params"]["video_backbone"]}, x,
                      method=encoder.embed_frames)
  np.testing.assert_allclose(np.asarray(got), want.pooler_output.numpy(), atol=TOL)


def test_bicubic_matrix_is_torch_interpolate():
  torch = pytest.importorskip("torch")
  grid = np.random.default_rng(0).standard_normal((1, 3, 37, 37)).astype(np.float32)
  for size in (16, 9, 37, 50):
    want = torch.nn.functional.interpolate(torch.from_numpy(grid), size=(size, size),
                                           mode="bicubic", align_corners=False).numpy()
    m = vit.bicubic_matrix(37, size)
    np.testing.assert_allclose(np.einsum("hi,cij,wj->chw", m, grid[0], m), want[0], atol=1e-5)


def test_mean_pooling_and_each_frame_embedded_on_its_own(tmp_path):
  """pooling=mean is the mean of the patch tokens of the last hidden state; a clip's
  frames are embedded one by one, their embeddings side by side."""
  config = load_config("affwild2", "tiny,video_backbone=vit,vit_family=dinov2,vit_pooling=mean")
  encoder = model_lib.build_backbone(model_lib.build_model(config).config.backbones.video)
  clips = np.random.default_rng(0).standard_normal((3, 2, 16, 16, 3)).astype(np.float32)
  variables = encoder.init(jax.random.key(0), clips)
  frames = clips.reshape(6, 16, 16, 3)
  states = encoder.apply(variables, frames, method=encoder.hidden_states)
  last = encoder.apply(variables, states, method=encoder.last_hidden_state)
  per_frame = np.asarray(encoder.apply(variables, frames, method=encoder.embed_frames))
  np.testing.assert_allclose(per_frame, np.asarray(last)[:, 1:].mean(1), atol=1e-6)
  np.testing.assert_allclose(np.asarray(encoder.apply(variables, clips)),
                             per_frame.reshape(3, -1), atol=1e-6)


def test_a_checkpoint_of_another_family_or_form_is_refused(tmp_path):
  """Shapes alone do not tell an activation or a family apart: the checkpoint's
  config.json does, in the config and again in the converter."""
  torch = pytest.importorskip("torch")
  transformers = pytest.importorskip("transformers")
  _saved(torch, transformers, "dinov2", tmp_path / "dinov2")
  _saved(torch, transformers, "clip", tmp_path / "clip")
  with pytest.raises(ValueError, match="model_type is 'dinov2', not a clip model"):
    load_config("affwild2", f"tiny,video_backbone=vit,vit_config={tmp_path}/dinov2")
  with pytest.raises(ValueError, match="vit family 'siglip'"):
    load_config("affwild2", "tiny,video_backbone=vit,vit_family=siglip")
  config = load_config("affwild2", f"tiny,video_backbone=vit,vit_config={tmp_path}/clip")
  config.model.backbones.video.act = "gelu"
  with pytest.raises(torch_import.ConversionError,
                     match="another clip_vision_model than video_backbone's: act 'quick_gelu' "
                           "there, 'gelu' here"):
    torch_import.convert(config, [(("video_backbone",), str(tmp_path / "clip"))])
  with pytest.raises(torch_import.ConversionError,
                     match="a dinov2 checkpoint; the config's encoder is clip"):
    torch_import.convert(config, [(("video_backbone",), str(tmp_path / "dinov2"))])


@pytest.mark.slow
@pytest.mark.parametrize("name,frozen", [("affwild2", True), ("affwild2", False),
                                         ("biovid", False)])
def test_tiny_vit_variant_trains_a_step(name, frozen):
  config = load_config(name, "jmt,tiny,video_backbone=vit")
  config.model.freeze_backbones = frozen
  step = step_timing.compile_step(config, step_timing.synthetic_batch(config, 2))
  assert np.isfinite(step.time(1))
  assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(step.state.params))


@pytest.mark.slow
@pytest.mark.parametrize("family", vit.FAMILIES)
def test_full_size_random_checkpoint_saved_with_save_pretrained_converts_and_matches(
    family, tmp_path):
  """ViT-B/16 (CLIP, MAE) and DINOv2-B/14 at transformers' defaults for the family,
  randomly initialised: converted, every layer matches on 224x224 frames (DINOv2's
  37x37 position grid interpolated to 16x16)."""
  torch = pytest.importorskip("torch")
  transformers = pytest.importorskip("transformers")
  cls, _ = _tiny_transformers_model(transformers, family)
  config = {"clip": transformers.CLIPVisionConfig(hidden_act="quick_gelu", patch_size=16),
            "vit_mae": transformers.ViTMAEConfig(mask_ratio=0.0),
            "dinov2": transformers.Dinov2Config(image_size=518, patch_size=14)}[family]
  reference = _saved(torch, transformers, family, tmp_path, config=config)
  assert isinstance(reference, cls)
  encoder, variables = _converted(family, tmp_path, 224)
  _assert_matches(torch, reference, encoder, variables, family, 224, 12)
