"""Speech encoders: every hidden state of wav2vec 2.0, HuBERT and WavLM equals
`transformers`' PyTorch models built from small random configs (no download) and
converted through `python -m jmt_jax.weights.convert`'s library; the 16 kHz resampler
equals scipy's polyphase one."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import signal

from conftest import load_config
from jmt_jax.models import intra_fusion
from jmt_jax.models import model as model_lib
from jmt_jax.models import resample
from jmt_jax.models import speech
from jmt_jax.models import variables as variables_lib
from jmt_jax.weights import torch_import

TOL = 1e-4


@pytest.mark.parametrize("rate_in,rate_out,n", [(44100, 16000, 45599), (8000, 16000, 4000),
                                                (48000, 16000, 1001), (22050, 16000, 333)])
def test_resampler_matches_scipy_resample_poly(rate_in, rate_out, n):
  x = np.random.default_rng(n).standard_normal((2, n)).astype(np.float32)
  g = np.gcd(rate_in, rate_out)
  want = signal.resample_poly(x.astype(np.float64), rate_out // g, rate_in // g, axis=-1)
  got = np.asarray(jax.jit(lambda y: resample.resample(y, rate_in, rate_out))(x))
  assert got.shape == want.shape
  np.testing.assert_allclose(got, want, atol=2e-6)


def test_relative_position_buckets_match_wavlm():
  torch = pytest.importorskip("torch")
  transformers = pytest.importorskip("transformers")
  attn = transformers.models.wavlm.modeling_wavlm.WavLMAttention(
      8, 2, num_buckets=320, max_distance=800)
  rel = torch.arange(900)[None, :] - torch.arange(900)[:, None]
  want = attn._relative_positions_bucket(rel).numpy()  # pylint: disable=protected-access
  np.testing.assert_array_equal(speech.relative_position_buckets(900, 320, 800), want)


def _tiny_transformers_config(transformers, kind, large):
  """A Base-like (group-norm extractor, post-LN) or Large-like (layer-norm extractor,
  stable layer norm, conv bias) config, small enough for a CPU."""
  cls = {"wav2vec2": transformers.Wav2Vec2Config, "hubert": transformers.HubertConfig,
         "wavlm": transformers.WavLMConfig}[kind]
  extra = dict(num_buckets=32, max_bucket_distance=64) if kind == "wavlm" else {}
  return cls(hidden_size=32, num_hidden_layers=3, num_attention_heads=4, intermediate_size=37,
             conv_dim=(16, 16, 24), conv_kernel=(10, 3, 3), conv_stride=(5, 2, 2),
             num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4,
             feat_extract_norm="layer" if large else "group", do_stable_layer_norm=large,
             conv_bias=large, **extra)


def _randomised(torch, model, seed):
  """Every parameter perturbed, so that LayerNorm scales, gate constants and biases
  (initialised to ones and zeros) are tested too."""
  gen = torch.Generator().manual_seed(seed)
  with torch.no_grad():
    for p in model.parameters():
      p.add_(0.2 * torch.randn(p.shape, generator=gen))
  return model.eval()


def _saved(torch, transformers, kind, large, directory, seed=0, config=None):
  """A random model saved as transformers saves one; a tiny one with every parameter
  perturbed, a full-size one (`config`) at transformers' own initialisation (perturbing
  every weight of a 12-layer model by 0.2 makes activations in the thousands, where
  float32 rounding alone differs by more than the tolerance)."""
  cls = {"wav2vec2": transformers.Wav2Vec2Model, "hubert": transformers.HubertModel,
         "wavlm": transformers.WavLMModel}[kind]
  torch.manual_seed(seed)
  model = cls(config or _tiny_transformers_config(transformers, kind, large)).eval()
  if config is None:
    model = _randomised(torch, model, seed)
  model.save_pretrained(directory)
  return model


def _converted_encoder(kind, directory, layer="-1"):
  config = load_config("affwild2", f"tiny,audio_backbone={kind},speech_config={directory}/"
                       f"config.json,speech_layer={layer}")
  variables, _ = torch_import.convert(config, [(("audio_backbone",),
                                                f"{directory}/model.safetensors")])
  encoder = model_lib.build_backbone(model_lib.build_model(config).config.backbones.audio)
  return encoder, {"params": variables["params"]["audio_backbone"]}


def _assert_hidden_states_match(torch, reference, encoder, variables, x, count):
  """Every hidden state and the last one of `encoder` on `x` equal the reference's;
  returns the reference's outputs."""
  with torch.no_grad():
    want = reference(torch.from_numpy(x), output_hidden_states=True)
  states, last = jax.jit(lambda v, y: encoder.apply(v, y, method=encoder.hidden_states))(
      variables, x)
  assert len(states) == len(want.hidden_states) == count
  for i, (got, expected) in enumerate(zip(states, want.hidden_states)):
    np.testing.assert_allclose(np.asarray(got), expected.numpy(), atol=TOL,
                               err_msg=f"hidden state {i}")
  np.testing.assert_allclose(np.asarray(last), want.last_hidden_state.numpy(), atol=TOL)
  return want


@pytest.mark.parametrize("large", [False, True], ids=["base_like", "large_like"])
@pytest.mark.parametrize("kind", speech.KINDS)
def test_hidden_states_match_transformers(kind, large, tmp_path):
  torch = pytest.importorskip("torch")
  transformers = pytest.importorskip("transformers")
  reference = _saved(torch, transformers, kind, large, tmp_path)
  encoder, variables = _converted_encoder(kind, tmp_path)
  x = np.random.default_rng(1).standard_normal((2, 4000)).astype(np.float32)
  want = _assert_hidden_states_match(torch, reference, encoder, variables, x, 4)
  pooled = encoder.apply(variables, x)
  np.testing.assert_allclose(np.asarray(pooled), want.last_hidden_state.numpy().mean(1), atol=TOL)


def test_full_size_wavlm_saved_with_save_pretrained_converts_and_matches(tmp_path):
  """`WavLMConfig()` (WavLM-Base's architecture, 94M parameters) saved as a user's
  download is: config.json + model.safetensors, read through speech_config."""
  torch = pytest.importorskip("torch")
  transformers = pytest.importorskip("transformers")
  reference = _saved(torch, transformers, "wavlm", False, tmp_path,
                     config=transformers.WavLMConfig())
  encoder, variables = _converted_encoder("wavlm", tmp_path)
  x = np.random.default_rng(2).standard_normal((1, 16000)).astype(np.float32)
  _assert_hidden_states_match(torch, reference, encoder, variables, x, 13)


def test_every_hidden_state_pooled_for_a_weighted_sum(tmp_path):
  torch = pytest.importorskip("torch")
  transformers = pytest.importorskip("transformers")
  reference = _saved(torch, transformers, "hubert", False, tmp_path)
  encoder, variables = _converted_encoder("hubert", tmp_path, layer="all")
  x = np.random.default_rng(3).standard_normal((2, 4000)).astype(np.float32)
  with torch.no_grad():
    want = reference(torch.from_numpy(x), output_hidden_states=True).hidden_states
  got = np.asarray(encoder.apply(variables, x))
  assert got.shape == (2, 4, 32)
  np.testing.assert_allclose(got, np.stack([h.numpy().mean(1) for h in want], 1), atol=TOL)


@pytest.mark.parametrize("backbones,kind,widths", [
    ("audio_backbone=resnet18+wavlm", "encoder_self_attention", (16, 12)),
    ("audio_backbone=resnet18+wavlm", "concat_fc", (16, 12)),
    ("video_backbone=r2plus1d+i3d", "encoder_self_attention", (16, 16)),
    ("audio_backbone=wavlm", "fc", (12,)),
])
def test_intra_modal_fusion_matches_the_authors_modules(backbones, kind, widths, tmp_path):
  torch = pytest.importorskip("torch")
  import torch_reference as ref  # pylint: disable=import-outside-toplevel (needs torch)
  config = load_config("affwild2", f"tiny,{backbones},intra_fusion={kind}")
  modality = backbones.split("_")[0]
  d = config.model.intra_fusion[modality].width
  torch.manual_seed(0)
  if kind == "encoder_self_attention":
    reference = ref.IntraModalTransformerFusion(d, 1, d, 1, fc_in=12)
  else:
    reference = ref.FcLayer(sum(widths), d)
  path = str(tmp_path / "intra.pth")
  torch.save(reference.state_dict(), path)
  group = f"{modality}_intra_fusion"
  variables, _ = torch_import.convert(config, [((group,), path)])
  feats = [torch.randn(3, 4, w) for w in widths]
  with torch.no_grad():
    want = reference(*feats) if kind == "encoder_self_attention" else reference(
        torch.cat(feats, dim=-1))
  model = model_lib.build_model(config)
  layout = model_lib.embedding_layout(model.config.backbones[modality])
  merge = intra_fusion.build(model.config.intra_fusion[modality], layout)
  got = merge.apply({"params": variables["params"][group]},
                    np.concatenate([f.numpy() for f in feats], axis=-1))
  np.testing.assert_allclose(np.asarray(got), want.numpy(), atol=TOL)


def test_a_checkpoint_folder_converts_and_another_architecture_is_refused(tmp_path):
  torch = pytest.importorskip("torch")
  transformers = pytest.importorskip("transformers")
  import torch_reference as ref  # pylint: disable=import-outside-toplevel (needs torch)
  _saved(torch, transformers, "wavlm", False, tmp_path / "post_ln")
  # The authors' pair: their ResNet-18 file and a WavLM folder, each found under its own prefix.
  resnet = ref.ResNet("resnet2d", in_channels=1, reduction="mean")
  torch.save({f"resnet.{k}": v for k, v in resnet.state_dict().items()}, tmp_path / "resnet.pth")
  config = load_config("affwild2", f"audio_backbone=resnet18+wavlm,speech_config="
                       f"{tmp_path}/post_ln/config.json")
  variables, manifest = torch_import.convert(
      config, [(("audio_backbone",), (f"{tmp_path}/resnet.pth", f"{tmp_path}/post_ln"))])
  assert set(variables["params"]["audio_backbone"]) == {"first", "second"}
  assert manifest["sources"][0]["file"].endswith("post_ln/model.safetensors")
  alone = torch_import.convert(load_config("affwild2", f"audio_backbone=wavlm,speech_config="
                                           f"{tmp_path}/post_ln/config.json"),
                               [(("audio_backbone",), str(tmp_path / "post_ln"))])[0]
  jax.tree.map(np.testing.assert_array_equal, variables["params"]["audio_backbone"]["second"],
               alone["params"]["audio_backbone"])
  # A pre-LN config has the same parameters as a post-LN one: config.json tells them apart.
  stable = load_config("affwild2", "tiny,audio_backbone=wavlm")
  stable.model.backbones.audio.update(
      **{k: v for k, v in load_config("affwild2", f"tiny,audio_backbone=wavlm,speech_config="
                                      f"{tmp_path}/post_ln/config.json").model.backbones.audio.items()
         if k != "stable_layer_norm"}, stable_layer_norm=True)
  with pytest.raises(torch_import.ConversionError,
                     match=r"post_ln/config.json: another wavlm than audio_backbone's: "
                           r"stable_layer_norm False there, True here"):
    torch_import.convert(stable, [(("audio_backbone",), str(tmp_path / "post_ln"))])
  hubert = load_config("affwild2", "tiny,audio_backbone=hubert")
  with pytest.raises(torch_import.ConversionError, match="a wavlm checkpoint; the config's "
                     "encoder is hubert"):
    torch_import.convert(hubert, [(("audio_backbone",), str(tmp_path / "post_ln"))])
  with pytest.raises(torch_import.ConversionError, match="a folder without model.safetensors"):
    torch_import.convert(hubert, [(("audio_backbone",), str(tmp_path))])


@pytest.mark.slow
def test_rematerialised_and_bfloat16_encoder():
  """`remat` recomputes the encoder in the backward pass with the same gradient; in
  bfloat16 (the accelerators' compute dtype) the pooled embedding stays near float32's."""
  cfg = load_config("affwild2", "tiny,audio_backbone=wavlm").model.backbones.audio
  x = jax.random.normal(jax.random.key(0), (2, 4000))
  grads = {}
  for remat in ("", "nothing_saveable"):
    cfg.remat = remat
    net = model_lib.build_backbone(cfg)
    variables = net.init(jax.random.key(1), x, False)
    grads[remat] = jax.grad(lambda p, net=net: jnp.sum(net.apply({"params": p}, x, True) ** 2))(
        variables["params"])
  for a, b in zip(jax.tree.leaves(grads[""]), jax.tree.leaves(grads["nothing_saveable"])):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
  full = net.apply(variables, x, False)
  half = net.apply(jax.tree.map(lambda p: p.astype(jnp.bfloat16), variables),
                   x.astype(jnp.bfloat16), False)
  assert half.dtype == jnp.bfloat16
  np.testing.assert_allclose(np.asarray(half, np.float32), full, atol=0.1 * float(
      jnp.abs(full).max()))


@pytest.mark.parametrize("kind", speech.KINDS)
def test_full_size_parameter_counts_equal_transformers(kind):
  """Base presets hold transformers' default (Base) models' parameters, less SpecAugment's
  mask vector; paired with the log-mel ResNet-18 they build at full size too."""
  torch = pytest.importorskip("torch")
  transformers = pytest.importorskip("transformers")
  del torch
  cls = {"wav2vec2": transformers.Wav2Vec2Model, "hubert": transformers.HubertModel,
         "wavlm": transformers.WavLMModel}[kind]
  config_cls = {"wav2vec2": transformers.Wav2Vec2Config, "hubert": transformers.HubertConfig,
                "wavlm": transformers.WavLMConfig}[kind]
  reference = cls(config_cls())
  want = sum(p.numel() for n, p in reference.named_parameters() if n != "masked_spec_embed")
  config = load_config("affwild2", f"audio_backbone=resnet18+{kind}")
  shapes = variables_lib.abstract(model_lib.build_model(config), config)["params"]
  count = lambda tree: sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))
  assert count(shapes["audio_backbone"]["second"]) == want
  assert set(shapes["audio_intra_fusion"]) == {"fc", "token_encoder", "token_attn"}
