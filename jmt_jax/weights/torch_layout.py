"""Where each jmt_jax parameter lives in the public PyTorch state dicts, and how its
array is laid out there.

Backbones follow torchvision (`resnet18`, `r3d_18`, `r2plus1d_18`), the BioVid
`Conv1D_model` and the authors' I3D + TCN (`I3D_WSDDA`). The fusion and head follow the
authors' Aff-Wild2 code (`Two_transformers`: `mm_transformer.*`, `vregressor.*`,
`aregressor.*`) or, with the pain head, their BioVid `Multi_cross_attention`
(top-level names, `out_layer1..5`). Joint cross-attention follows Praveen et al.'s `CAM`.

`expected_keys` walks a jmt_jax variable tree and yields, per leaf, the PyTorch key, the
PyTorch shape and the function that turns the PyTorch array into the jmt_jax one.
"""

import dataclasses
import re
from typing import Callable
from typing import Optional

import numpy as np
from flax import traverse_util

from jmt_jax.models import speech

# Keys present in the public state dicts that no jmt_jax parameter corresponds to:
# BatchNorm step counters, classifier heads the backbones drop, modules the public code
# builds but never calls, and weight-norm aliases (`net.0` is `conv1` in TemporalBlock).
# torchvision's own `fc` is told apart by its shape (`is_ignored`).
IGNORED = tuple(re.compile(p) for p in (
    r"(^|\.)num_batches_tracked$",
    r"^fc\.\d\.(weight|bias)$",  # the authors' Sequential(Dropout, Linear) classifier
    r"^fc2\.(weight|bias)$",  # BioVid Conv1D_model classifier
    r"^i3d_WSDDA\.logits\.", r"^predictions\.", r"^(v|a)regressor\.",  # I3D_WSDDA heads
    r"^temporal\.network\.\d+\.net\.",
    r"^(mm_transformer\.)?final_encoder\.",  # Aff-Wild2 JMT: built, unused by SELF_ATTEN
    r"^(mm_transformer\.)?gated_attention\.",
    r"^cross_attention_all\.", r"^out_layer_ca\.", r"^out_layerAll\d\.",  # BioVid: unused
    r"^regressor\.",  # CAM's regressor: jmt_jax uses its own heads
    # transformers speech models: SpecAugment's mask vector (training only)
    r"(^|\.)masked_spec_embed$",
    # DINOv2's mask token (its masked-image pre-training only)
    r"(^|\.)embeddings\.mask_token$",
))

_RESNET_BLOCK_2D = {"conv1": "conv1", "bn1": "bn1", "conv2": "conv2", "bn2": "bn2"}
_RESNET_BLOCK_3D = {"conv1": "conv1.0", "bn1": "conv1.1", "conv2": "conv2.0", "bn2": "conv2.1"}
_RESNET_BLOCK_2PLUS1D = {
    "conv1_spatial": "conv1.0.0", "conv1_mid_bn": "conv1.0.1", "conv1_temporal": "conv1.0.3",
    "bn1": "conv1.1",
    "conv2_spatial": "conv2.0.0", "conv2_mid_bn": "conv2.0.1", "conv2_temporal": "conv2.0.3",
    "bn2": "conv2.1",
}
_RESNET_STEM = {
    "resnet2d": {"stem_conv": "conv1", "stem_bn": "bn1"},
    "r3d": {"stem_conv": "stem.0", "stem_bn": "stem.1"},
    "r2plus1d": {"stem_conv_spatial": "stem.0", "stem_bn_spatial": "stem.1",
                 "stem_conv_temporal": "stem.3", "stem_bn_temporal": "stem.4"},
}
_RESNET_BLOCK = {"resnet2d": _RESNET_BLOCK_2D, "r3d": _RESNET_BLOCK_3D,
                 "r2plus1d": _RESNET_BLOCK_2PLUS1D}

_ENCODERS = {"v_encoder": "visual_encoder", "a_encoder": "physiological_encoder",
             "j_encoder": "joint_representation_encoder", "token_encoder": "final_visual_encoder",
             "concat_encoder": "final_encoder"}
_ENCODER_LAYER = {"self_attn": "attention", "linear1": "feed_forward.0",
                  "linear2": "feed_forward.2", "norm1": "layer_norm1", "norm2": "layer_norm2"}
_JMT = {"joint": "out_layer_pv", "cross_attention/v_attn": "cross_attention_v",
        "cross_attention/a_attn": "cross_attention_p", "cross_attention/j_attn": "cross_attention_pv",
        "token_attn": "final_self_attention", "fc_out": "out_layer1"}
_VANILLA = {"v_attn": "cross_attention_v", "a_attn": "cross_attention_p", "proj": "final_layer"}
_CONCAT = {"proj": "fc"}

# torchvision's classifier slot: (400 Kinetics / 1000 ImageNet / 2 pain classes, 512), which
# the public code replaces by nothing before it takes features (VIS_PHY_MODEL,
# TwoStreamAuralVisualModel). A square one is no classifier: it is the 512x512 projection
# of BioVid's Visual_model2, which the features go through (ResNet's `projection`).
_TORCHVISION_FC = re.compile(r"^fc\.(weight|bias)$")

# Modules of a backbone that the authors keep beside it rather than inside it: the
# flatten reduction's Linear(25088, 512) is TwoStreamAuralVisualModel.vision_r2d1_fc,
# saved in all_backbones.pt next to vision_r2d1.* and alone as vision_r2d1_fc.pt.
SAVED_APART = ("vision_r2d1_fc",)
_FLATTEN_FC = re.compile(r"(^|\.)vision_r2d1_fc\.weight$")


class LayoutError(ValueError):
  """A jmt_jax module with no counterpart in the public PyTorch code."""


def _resnet_module(kind, path):
  if path[0] in _RESNET_STEM[kind]:
    return _RESNET_STEM[kind][path[0]]
  if path[0] == "reduce_fc":
    return SAVED_APART[0]
  if path[0] == "fc":
    return "fc"
  layer, block = re.fullmatch(r"layer(\d+)_(\d+)", path[0]).groups()
  sub = {"downsample_conv": "downsample.0", "downsample_bn": "downsample.1"}.get(path[1])
  return f"layer{layer}.{block}.{sub or _RESNET_BLOCK[kind][path[1]]}"


def _i3d_module(path):
  m = re.fullmatch(r"temporal_network_(\d+)", path[0])
  if m:
    return f"temporal.network.{m.group(1)}.{path[1]}"
  return "i3d_WSDDA." + ".".join(path)


def _encoder_module(path):
  """(v_encoder, layers_0, self_attn) -> visual_encoder.layers.0.attention."""
  if path[0] not in _ENCODERS:
    raise LayoutError(f"'{'/'.join(path)}' has no counterpart in the public code")
  layer = re.fullmatch(r"layers_(\d+)", path[1]).group(1)
  return f"{_ENCODERS[path[0]]}.layers.{layer}.{_ENCODER_LAYER[path[2]]}"


def _speech_module(path):
  """transformers' module names: `layers_3` is `layers.3`; the position embedding's conv
  is `pos_conv_embed.conv`."""
  parts = []
  for p in path:
    m = re.fullmatch(r"(conv_layers|layers)_(\d+)", p)
    parts.append(f"{m.group(1)}.{m.group(2)}" if m else
                 {"pos_conv_embed": "pos_conv_embed.conv"}.get(p, p))
  return ".".join(parts)


# ViT modules -> transformers' modules, per family (as save_pretrained writes them).
_VIT = {
    "clip": {"": "embeddings", "patch": "embeddings.patch_embedding",
             "position_embedding": "embeddings.position_embedding",
             "pre_norm": "pre_layrnorm", "norm": "post_layernorm",
             "layer": "encoder.layers", "norm1": "layer_norm1", "norm2": "layer_norm2",
             "attn": "self_attn", "fc1": "mlp.fc1", "fc2": "mlp.fc2"},
    "vit_mae": {"": "embeddings", "patch": "embeddings.patch_embeddings.projection",
                "norm": "layernorm", "layer": "encoder.layer", "norm1": "layernorm_before",
                "norm2": "layernorm_after", "attn": "attention",
                "fc1": "intermediate.dense", "fc2": "output.dense"},
    "dinov2": {"": "embeddings", "patch": "embeddings.patch_embeddings.projection",
               "norm": "layernorm", "layer": "encoder.layer", "norm1": "norm1",
               "norm2": "norm2", "attn": "attention", "fc1": "mlp.fc1", "fc2": "mlp.fc2",
               "scale1": "layer_scale1", "scale2": "layer_scale2"},
}
# The attention's projections: CLIP's names, or ViT's (MAE, DINOv2).
_VIT_ATTENTION = {"q_proj": "attention.query", "k_proj": "attention.key",
                  "v_proj": "attention.value", "out_proj": "output.dense"}


def vit_module(family, path):
  """transformers' module of the ViT module `path` (models.vit) of `family`."""
  table = _VIT[family]
  if not path or not path[0].startswith("layers_"):
    return table["/".join(path)]
  parts = [f"{table['layer']}.{path[0].split('_')[1]}"]
  if len(path) > 1:
    parts.append(table[path[1]])
  if len(path) > 2:  # an attention projection
    parts.append(path[2] if family == "clip" else _VIT_ATTENTION[path[2]])
  return ".".join(parts)


def _intra_fusion_module(path):
  """The authors' FcLayer (`fc_layer`) or Intra_modal_transformer_fusion."""
  if not path:
    raise LayoutError("the weighted sum of hidden states has no counterpart in the public code")
  if path[0] == "token_encoder":
    return _encoder_module(path)
  return {"token_attn": "final_self_attention"}.get(path[0], path[0])


def _fusion_module(kind, path):
  if kind == "jca":
    return path[0]
  table = {"jmt": _JMT, "vanilla": _VANILLA, "concat": _CONCAT}.get(kind)
  if table is None:
    raise LayoutError(f"fusion kind {kind!r} has no public PyTorch layout")
  for n in (2, 1):
    if "/".join(path[:n]) in table:
      return table["/".join(path[:n])]
  return _encoder_module(path)


def _head_module(model_cfg, path):
  cfg = model_cfg.head
  if model_cfg.task == "valence_arousal":
    dim, layer = path[0].split("_")
    return f"{dim[0]}regressor.{ {'fc1': 0, 'fc2': 3}[layer] }"
  if path[0] == "logits":
    return f"out_layer{len(cfg.mlp) + 1}"
  return f"out_layer{int(path[0].split('_')[1]) + 1}"


def fusion_prefix(model_cfg):
  """The public code nests the fusion under `mm_transformer.` with the Aff-Wild2 head
  (`Two_transformers`); the BioVid and CAM modules are top-level."""
  if model_cfg.fusion.kind == "jca" or model_cfg.task == "pain":
    return ""
  return "mm_transformer."


def torch_module(model_cfg, group, path):
  """PyTorch module path of the jmt_jax module `path` inside the top-level `group`."""
  if group.endswith("_intra_fusion"):
    return _intra_fusion_module(path)
  if group.endswith("_backbone"):
    cfg = model_cfg.backbones[group[:-len("_backbone")]]
    if cfg.kind == "pair":  # each member in its own layout (torch_import locates them apart)
      cfg, path = cfg[path[0]], path[1:]
    if cfg.kind in speech.KINDS:  # transformers' layout
      return _speech_module(path)
    if cfg.kind == "vit":
      return vit_module(cfg.family, path)
    if cfg.kind in _RESNET_STEM:
      return _resnet_module(cfg.kind, path)
    if cfg.kind == "biosignal_cnn":
      return {"fc": "fc1"}.get(path[0], path[0])
    if cfg.kind == "i3d_tcn":
      return _i3d_module(path)
    raise LayoutError(f"backbone kind {cfg.kind!r} has no PyTorch layout")
  if group == "fusion":
    return fusion_prefix(model_cfg) + _fusion_module(model_cfg.fusion.kind, path)
  if group == "head":
    if model_cfg.task == "pain" and model_cfg.fusion.kind != "jmt":
      raise LayoutError("the public BioVid code has a pain head only after JMT")
    return _head_module(model_cfg, path)
  raise LayoutError(f"unknown parameter group {group!r}")


@dataclasses.dataclass(frozen=True)
class Entry:
  torch_key: str
  torch_shape: tuple
  collection: str  # 'params' or 'batch_stats'
  path: tuple  # inside the collection, starting with the top-level group
  to_jax: Callable[[np.ndarray], np.ndarray]
  # MultiheadAttention's packed in_proj: which third of the torch tensor this is.
  packed_index: Optional[int] = None


def _kernel_from_torch(ndim):
  """PyTorch (out, in, *spatial) -> flax (*spatial, in, out); Linear (out, in) -> (in, out)."""
  perm = tuple(range(2, ndim)) + (1, 0)
  return lambda w: np.transpose(w, perm)


def _leaf_entry(module, collection, path, leaf, shape):
  name = path[-1]
  if collection == "batch_stats":
    return Entry(f"{module}.running_{name}", shape, collection, path, np.asarray)
  if name in ("kernel", "weight_v"):
    torch_shape = (shape[-1], shape[-2]) + tuple(shape[:-2])
    suffix = "weight" if name == "kernel" else "weight_v"
    return Entry(f"{module}.{suffix}", torch_shape, collection, path, _kernel_from_torch(len(shape)))
  if name == "weight_g":  # torch weight_norm keeps g as (out, 1, 1), or (1, 1, K) with dim=2
    torch_shape = (1, 1, shape[0]) if module.endswith("pos_conv_embed.conv") else (shape[0], 1, 1)
    return Entry(f"{module}.weight_g", torch_shape, collection, path,
                 lambda w: np.reshape(w, (-1,)))
  if name == "embedding":
    return Entry(f"{module}.weight", tuple(shape), collection, path, np.asarray)
  if name in ("gru_rel_pos_const", "class_embedding", "cls_token", "position_embeddings",
              "lambda1"):
    return Entry(f"{module}.{name}", tuple(shape), collection, path, np.asarray)
  if name in ("scale", "bias"):
    return Entry(f"{module}.{'weight' if name == 'scale' else 'bias'}", tuple(shape), collection,
                 path, np.asarray)
  raise LayoutError(f"parameter {'/'.join(path)} ({leaf}) has no PyTorch counterpart")


def _attention_entry(module, collection, path, shape):
  """q/k/v Dense of jmt_jax MultiHeadAttention <- packed in_proj_{weight,bias}."""
  index = ("query", "key", "value").index(path[-2])
  if path[-1] == "kernel":
    return Entry(f"{module}.in_proj_weight", (3 * shape[1], shape[0]), collection, path,
                 lambda w: w.T, index)
  return Entry(f"{module}.in_proj_bias", (3 * shape[0],), collection, path, np.asarray, index)


def expected_keys(model_cfg, variables, groups):
  """Entries for every leaf of `variables` ({'params': ..., 'batch_stats': ...}) in the
  top-level `groups`, in a deterministic order; `model_cfg` is the built model's config
  (`config.model` with the `task` it was built for)."""
  entries = []
  for collection in ("params", "batch_stats"):
    flat = traverse_util.flatten_dict(variables.get(collection, {}))
    for path, leaf in sorted(flat.items()):
      if path[0] not in groups:
        continue
      inner = path[1:-1]
      if inner and inner[-1] in ("query", "key", "value"):
        module = torch_module(model_cfg, path[0], inner[:-1])
        entries.append(_attention_entry(module, collection, path, leaf.shape))
        continue
      if inner and inner[-1] == "out" and _is_attention(flat, path):
        module = torch_module(model_cfg, path[0], inner[:-1]) + ".out_proj"
      else:
        module = torch_module(model_cfg, path[0], inner)
      entries.append(_leaf_entry(module, collection, path, leaf, leaf.shape))
  return entries


def _is_attention(flat, path):
  return path[:-2] + ("query", "kernel") in flat


def is_ignored(key, shape_of):
  """Whether the public code's forward pass leaves `key` unused; `shape_of(key)` gives the
  shape of another key of the same module (None if absent)."""
  if _TORCHVISION_FC.search(key):
    weight = shape_of("fc.weight")
    return weight is not None and len(weight) == 2 and weight[0] != weight[1]
  return any(p.search(key) for p in IGNORED)


def another_config(model_cfg, group, key, shape):
  """The config that has a place for `key` (a file's key, relative to the group's prefix),
  which the configured backbone of `group` has none for and the public code uses; None
  when it is not such a key."""
  if not group.endswith("_backbone"):
    return None
  cfg = model_cfg.backbones[group[:-len("_backbone")]]
  if _FLATTEN_FC.search(key) and cfg.kind == "r2plus1d" and cfg.reduction != "flatten_linear":
    return (f"{key} is the flatten reduction's Linear, which the configured "
            f"{cfg.reduction!r} reduction has no place for: convert with "
            f"--config=configs/affwild2.py:video_reduction=flatten_linear")
  if cfg.kind != "r3d":
    return None
  square = len(shape) == 2 and shape[0] == shape[1]
  if key == "fc.weight" and square and not cfg.get("projection", False):
    return (f"fc.weight {tuple(shape)} is a projection after the pooling (the authors' "
            f"Visual_model2), which their features go through: convert with "
            f"--config=configs/biovid.py:video_fc")
  if key == "fc.weight" and not square and cfg.get("projection", False):
    return (f"fc.weight {tuple(shape)} is a classifier, not a projection: convert without "
            f"video_fc")
  return None
