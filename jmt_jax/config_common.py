"""Building blocks shared by the files in `configs/`: the training skeleton and the
standard backbone, input and head sub-configs. Each config file composes these."""

import json
import os

import ml_collections

KINETICS_MEAN = (0.43216, 0.394666, 0.37645)
KINETICS_STD = (0.22803, 0.22145, 0.216989)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def base_config():
  """Everything but data, input and model, with defaults a config may override."""
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.task = "valence_arousal"  # or "pain"
  # grad_accum_steps: micro-batches per step (exact for the CCC loss too, see train_step).
  # read_workers: Grain worker processes making training batches (-1: none on a CPU
  # backend, all cores but one on an accelerator host: data.pipeline.default_workers),
  # each with read_threads threads.
  c.train = dict(num_steps=1000, batch_size=16, grad_accum_steps=1, log_every=50,
                 eval_every=500, checkpoint_every=200, keep_checkpoints=3, read_threads=2,
                 read_workers=-1)
  # smoothing: moving-average frames per dimension after clipping to [-1, 1] (0: none);
  # ABAW entries commonly use valence=20, arousal=50 (see jmt_jax.evaluation.abaw).
  # robustness: the rates `--mode=robustness` degrades each modality at (jmt_jax.evaluation.robustness).
  c.eval = dict(split="validation", batch_size=32, smoothing=dict(valence=0, arousal=0),
                robustness=dict(dropped=(0.25, 0.5), silenced=(0.25, 0.5), noise=(0.1, 0.3),
                                span_seconds=0.5, seed=0))
  c.optimizer = dict(name="adamw", learning_rate=1e-3, warmup_steps=100, schedule="cosine",
                     weight_decay=1e-4, momentum=0.9, nesterov=True, grad_clip_norm=1.0)
  # Mesh axis name -> size (-1: all remaining devices); the batch is split over all axes.
  # Train-state arrays take the first matching rule (see jmt_jax.runtime.sharding): with
  # mesh.fsdp > 1 the backbones' parameters and optimizer state are fully sharded.
  c.mesh = dict(data=-1, fsdp=1)
  c.sharding = dict(rules=(("_backbone/", "fsdp"), (".*", "replicate")), fsdp_axis="fsdp",
                    min_size=2**14)
  # "float32", "bfloat16" (bfloat16 compute, float32 parameters) or "auto" (float32 on a
  # CPU, bfloat16 on GPUs and TPUs: models.model.resolve_compute_dtype).
  c.compute_dtype = "float32"
  c.compilation_cache_dir = "~/.cache/jmt_jax/xla"
  c.init_from = ""  # a converted checkpoint (python -m jmt_jax.weights.convert) to start from
  # With frozen backbones: a cache written by `python -m jmt_jax.data.extract_features` that
  # training and evaluation read embeddings from instead of running the backbones.
  c.feature_cache = ""
  return c


# Every dataset config has `signals`: the frame size and the signal rates its records
# hold, what the model's input shapes follow (models.model.input_spec).
def synthetic_data(split_sizes, segment_frames, frame_size, audio_rate, bio_rate, **render):
  """The built-in dataset (jmt_jax.data.synthetic) at `signals`, rendered as `render` says."""
  return dict(name="synthetic", data_dir="", seed=0, segment_frames=segment_frames,
              split_sizes=split_sizes, render=render,
              signals=dict(frame_size=frame_size, audio_rate=audio_rate, bio_rate=bio_rate))


def prepared_data(name, data_dir, frame_size=112, audio_rate=0, bio_rate=0, protocol=None):
  """A dataset written by `python -m jmt_jax.prepare NAME --out_dir=DATA_DIR`. `signals`
  must match what it was prepared with (0: not used); BioVid takes a fold `protocol`."""
  c = dict(name=name, data_dir=data_dir,
           signals=dict(frame_size=frame_size, audio_rate=audio_rate, bio_rate=bio_rate))
  if protocol is not None:
    c["protocol"] = protocol
  return c


def frames_input(frames_per_clip, face_crop="aligned", face_margin=0.2, missing_face="zeros"):
  """Face crops. `face_crop`, `face_margin` and `missing_face` say how `jmt_jax.inference.predict`
  crops a new recording so that it matches the training crops (see faces.crops):
  'aligned' to the landmark template as Aff-Wild2's, or the 'box' (with `face_margin`)
  as BioVid's; 'zeros' where the data has a zero frame for no face, 'hold' where it
  borrows the nearest frame's face."""
  return dict(kind="frames", frames_per_clip=frames_per_clip, face_crop=face_crop,
              face_margin=face_margin, missing_face=missing_face)


def logmel_input(window_seconds, n_fft, win_length, hop_length, n_mels, mean, std, top_db=80.0):
  return dict(kind="logmel", window_seconds=window_seconds, n_fft=n_fft, win_length=win_length,
              hop_length=hop_length, n_mels=n_mels, top_db=top_db, mean=mean, std=std)


def waveform_input(window_seconds):
  """The clip's audio window as it is, for a speech encoder (which resamples it)."""
  return dict(kind="waveform", window_seconds=window_seconds)


def features_input(directory, dim, pattern="{recording}/{frame:05d}.npy"):
  """Per-clip features extracted elsewhere (the authors read WavLM features so): one .npy
  of `dim` floats per clip, at `directory`/`pattern`, `frame` the clip's last frame
  counted from 1; the modality's backbone is then `precomputed`."""
  return dict(kind="features", directory=directory, dim=dim, pattern=pattern)


def biosignal_input(window_seconds, channels=(0,), baseline="mean", scale=1.0):
  return dict(kind="biosignal", window_seconds=window_seconds, channels=channels,
              baseline=baseline, scale=scale)


# Every backbone config also holds how it is computed, which changes no result:
#   conv3d: 3-D convolutions 'native' (XLA's), 'per_tap' (2-D convolutions per temporal
#     tap) or 'auto' (per_tap on CPUs, native on GPUs and TPUs): models.resnet.Conv3D;
#   remat: '' (keep activations for the backward pass) or a jax.checkpoint_policies name
#     ('nothing_saveable', 'dots_saveable'...): recompute them, to fine-tune the backbone
#     at a larger batch in the same memory;
#   clips_per_call: clips embedded per call when the backbone runs in inference mode
#     (frozen, evaluating, extracting, predicting): 0 for the whole batch at once, -1
#     for 4 for 3-D convolutional backbones on CPUs, else 0: models.model.run_backbone.
COMPUTE = dict(conv3d="auto", remat="", clips_per_call=-1)


def resnet(kind, widths, blocks, stem_width, reduction, mean=None, std=None, stem_mid=45,
           projection=False):
  """`reduction`: 'max', 'mean' or 'flatten_linear' of the last feature map; `projection`:
  a Linear(widths[-1] -> widths[-1]) after it (torchvision's `fc` slot)."""
  c = dict(kind=kind, widths=widths, blocks=blocks, stem_width=stem_width, stem_mid=stem_mid,
           reduction=reduction, projection=projection, embed_dim=widths[-1], **COMPUTE)
  if mean is not None:
    c.update(mean=mean, std=std)
  return c


def biosignal_cnn(embed_dim, widths=(32, 64), kernel=5, first_stride=2):
  return dict(kind="biosignal_cnn", widths=widths, kernel=kernel, first_stride=first_stride,
              embed_dim=embed_dim, **COMPUTE)


def i3d_tcn(tcn_widths=(512, 512, 512, 512), tcn_kernel=5, tcn_dropout=0.1, resize_to=224,
            mean=None, std=None):
  """I3D + TCN; clips are resized to `resize_to` pixels first, as the authors' code does."""
  c = dict(kind="i3d_tcn", tcn_widths=tcn_widths, tcn_kernel=tcn_kernel, tcn_dropout=tcn_dropout,
           resize_to=resize_to, **COMPUTE)
  if mean is not None:
    c.update(mean=mean, std=std)
  return c


# The speech encoders' architectures as their public checkpoints have them (Base:
# facebook/wav2vec2-base, facebook/hubert-base-ls960, microsoft/wavlm-base-plus; Large:
# the stable-layer-norm form of wav2vec2-large-lv60, hubert-large-ll60k, wavlm-large).
# `speech_encoder(..., transformers_config=PATH)` reads them from a checkpoint's
# config.json instead (speech_architecture).
SPEECH_SIZES = {
    "base": dict(hidden=768, num_layers=12, num_heads=12, ffn_dim=3072, conv_bias=False,
                 feat_extract_norm="group", stable_layer_norm=False),
    "large": dict(hidden=1024, num_layers=24, num_heads=16, ffn_dim=4096, conv_bias=True,
                  feat_extract_norm="layer", stable_layer_norm=True),
}


# transformers config.json field -> speech encoder config field.
_TRANSFORMERS_FIELDS = dict(
    hidden_size="hidden", num_hidden_layers="num_layers", num_attention_heads="num_heads",
    intermediate_size="ffn_dim", conv_dim="conv_dim", conv_kernel="conv_kernel",
    conv_stride="conv_stride", conv_bias="conv_bias", feat_extract_norm="feat_extract_norm",
    do_stable_layer_norm="stable_layer_norm", num_conv_pos_embeddings="pos_conv_kernel",
    num_conv_pos_embedding_groups="pos_conv_groups", feat_proj_layer_norm="feat_proj_layer_norm",
    layer_norm_eps="layer_norm_eps", num_buckets="num_buckets",
    max_bucket_distance="max_distance")


def _transformers_config(path):
  """(path of, contents of) the config.json at `path`, a file or its folder."""
  path = os.path.expanduser(path)
  if os.path.isdir(path):
    path = os.path.join(path, "config.json")
  try:
    with open(path, encoding="utf-8") as f:
      return path, json.load(f)
  except (OSError, ValueError) as e:
    raise ValueError(f"{path}: not a readable transformers config.json ({e})") from e


def speech_architecture(path, kind):
  """The speech encoder fields of a `transformers` checkpoint's config.json at `path`
  (and `normalize_waveform` from the preprocessor_config.json beside it, if any)."""
  path, given = _transformers_config(path)
  if given.get("model_type") != kind:  # transformers' model_type is our kind
    raise ValueError(f"{path}: model_type is {given.get('model_type')!r}, not {kind!r}")
  for unsupported in ("add_adapter", "use_weighted_layer_sum"):
    if given.get(unsupported):
      raise ValueError(f"{path}: {unsupported}=true is not supported")
  arch = {ours: tuple(given[k]) if isinstance(given[k], list) else given[k]
          for k, ours in _TRANSFORMERS_FIELDS.items() if k in given}
  if given.get("feat_extract_activation", "gelu") != "gelu" or given.get(
      "hidden_act", "gelu") != "gelu":
    raise ValueError(f"{path}: only the 'gelu' activations of the public checkpoints are "
                     f"supported")
  pre = os.path.join(os.path.dirname(path), "preprocessor_config.json")
  if os.path.isfile(pre):
    with open(pre, encoding="utf-8") as f:
      arch["normalize_waveform"] = bool(json.load(f).get("do_normalize", False))
  return arch


def speech_encoder(kind, size="base", layer=-1, transformers_config="", **fields):
  """wav2vec2, hubert or wavlm (models.speech) on the clip's audio resampled to
  `sample_rate`: `layer` -1 (the last hidden state), a hidden state 0..num_layers, or
  'all' (every one, for a learned weighted sum: models.intra_fusion). `normalize_waveform`:
  zero mean and unit variance per clip first, as the checkpoints whose feature extractor
  says `do_normalize` were trained (wav2vec2-base, the Large ones). `chunk_seconds` > 0:
  with frozen backbones, each recording is encoded once in chunks of that length (with
  `chunk_margin_seconds` of context either side) and pooled per clip
  (features.speech_context), into the feature cache; 0: each clip's window alone."""
  if transformers_config:
    arch = speech_architecture(transformers_config, kind)
  elif size in SPEECH_SIZES:
    arch = dict(SPEECH_SIZES[size])
  else:
    raise ValueError(f"speech size {size!r}: use one of {list(SPEECH_SIZES)} or give "
                     f"transformers_config")
  c = dict(kind=kind, conv_dim=(512,) * 7, conv_kernel=(10, 3, 3, 3, 3, 2, 2),
           conv_stride=(5, 2, 2, 2, 2, 2, 2), pos_conv_kernel=128, pos_conv_groups=16,
           feat_proj_layer_norm=True, layer_norm_eps=1e-5, num_buckets=320, max_distance=800,
           sample_rate=16000, normalize_waveform=False, chunk_seconds=0.0,
           chunk_margin_seconds=1.0)
  c.update(arch)
  c.update(fields)
  c.update(layer=layer, **COMPUTE)
  return c


# The ViT face encoders' architectures as the public checkpoints have them
# (openai/clip-vit-base-patch16, facebook/vit-mae-base, facebook/dinov2-base), with the
# pixel statistics their image processors normalise by. `vit_encoder(...,
# transformers_config=PATH)` reads a checkpoint's config.json instead (vit_architecture).
OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
VIT_BASE = dict(hidden=768, num_layers=12, num_heads=12, mlp_dim=3072)
VIT_FAMILIES = {
    "clip": dict(VIT_BASE, patch=16, image_size=224, act="quick_gelu", eps=1e-5,
                 mean=OPENAI_CLIP_MEAN, std=OPENAI_CLIP_STD),
    "vit_mae": dict(VIT_BASE, patch=16, image_size=224, act="gelu", eps=1e-12,
                    mean=IMAGENET_MEAN, std=IMAGENET_STD),
    "dinov2": dict(VIT_BASE, patch=14, image_size=518, act="gelu", eps=1e-6,
                   mean=IMAGENET_MEAN, std=IMAGENET_STD),
}
# transformers' model_type of each family's vision model (a CLIPModel's config.json is
# 'clip', its vision tower's fields under vision_config).
VIT_MODEL_TYPES = {"clip": ("clip_vision_model", "clip"), "vit_mae": ("vit_mae",),
                   "dinov2": ("dinov2",)}
_VIT_TRANSFORMERS_FIELDS = dict(
    hidden_size="hidden", num_hidden_layers="num_layers", num_attention_heads="num_heads",
    intermediate_size="mlp_dim", patch_size="patch", image_size="image_size",
    hidden_act="act", layer_norm_eps="eps")


def vit_architecture(path, family):
  """The ViT fields of a `transformers` checkpoint's config.json at `path` (a file or its
  folder), of `family`, and its image processor's `mean` and `std` from the
  preprocessor_config.json beside it, if any."""
  path, given = _transformers_config(path)
  if given.get("model_type") not in VIT_MODEL_TYPES[family]:
    raise ValueError(f"{path}: model_type is {given.get('model_type')!r}, not a {family} "
                     f"model ({'/'.join(VIT_MODEL_TYPES[family])})")
  if given.get("model_type") == "clip":
    given = given.get("vision_config", {})
  if given.get("use_swiglu_ffn"):
    raise ValueError(f"{path}: use_swiglu_ffn=true (DINOv2-giant's SwiGLU MLP) is not supported")
  arch = {ours: given[k] for k, ours in _VIT_TRANSFORMERS_FIELDS.items() if k in given}
  if family == "dinov2":  # DINOv2's MLP width is a ratio of its width
    arch["mlp_dim"] = int(given.get("hidden_size", 768) * given.get("mlp_ratio", 4))
  pre = os.path.join(os.path.dirname(path), "preprocessor_config.json")
  if os.path.isfile(pre):
    with open(pre, encoding="utf-8") as f:
      processor = json.load(f)
    if "image_mean" in processor:
      arch.update(mean=tuple(processor["image_mean"]), std=tuple(processor["image_std"]))
  return arch


def vit_encoder(family, transformers_config="", input_size=0, pooling="cls", **fields):
  """A ViT face encoder of `family` (clip, vit_mae, dinov2: models.vit) on each frame of
  a clip, resized to `input_size` (0: the checkpoint's own size for CLIP and MAE, which
  take no other, and 224 for DINOv2, whose position embeddings are interpolated to any),
  pooled per frame by `pooling` ('cls' or 'mean' of the patches); a `temporal_model`
  makes the clip's embedding of its frames'."""
  if family not in VIT_FAMILIES:
    raise ValueError(f"vit family {family!r}: use one of {list(VIT_FAMILIES)}")
  c = dict(kind="vit", family=family, **VIT_FAMILIES[family])
  if transformers_config:
    c.update(vit_architecture(transformers_config, family))
  c.update(fields)
  own = c["image_size"] if family != "dinov2" else 224
  if family != "dinov2" and input_size not in (0, own):
    raise ValueError(f"vit_input_size={input_size}: a {family} encoder takes the "
                     f"{own}x{own} frames of its checkpoint")
  c.update(resize_to=input_size or own, pooling=pooling, **COMPUTE)
  return c


def temporal_model(kind, num_heads=8, kernel=3, num_layers=1, ffn_dim=0):
  """How a frame encoder's embeddings of a clip's frames become the clip's
  (models.temporal): 'mean', 'max', 'conv' (a residual temporal convolution of `kernel`
  frames) or 'transformer' (`num_layers` post-LN layers of `num_heads` heads, FFN
  `ffn_dim` wide, 0: 4x the width), each then averaged over the frames."""
  return dict(kind=kind, kernel=kernel, num_layers=num_layers, num_heads=num_heads,
              ffn_dim=ffn_dim)


def vit_face_encoder(a):
  """The `vit_encoder` and `temporal_model` that a config's arguments `a` (vit_family,
  vit_config, vit_input_size, vit_pooling, vit_temporal; tiny) describe."""
  kwargs = dict(transformers_config=a.vit_config, input_size=a.vit_input_size,
                pooling=a.vit_pooling)
  if a.tiny and not a.vit_config:  # a random-init encoder of the same form, for a CPU step
    kwargs.update(hidden=16, num_layers=1, num_heads=2, mlp_dim=32, patch=8, image_size=16,
                  input_size=a.vit_input_size or 16)
  return vit_encoder(a.vit_family, **kwargs)


def vit_face_temporal(a):
  """The `temporal_model` named by a config's argument vit_temporal (heads of 8 features
  in the tiny encoder, else 8 heads)."""
  return temporal_model(a.vit_temporal, num_heads=2 if a.tiny and not a.vit_config else 8)


def backbones(spec, kinds, arg):
  """The backbone config of `spec`: a name in `kinds` ({name: () -> config}), or two
  joined by '+', a `pair` whose embeddings intra_fusion merges."""
  names = spec.split("+")
  unknown = [n for n in names if n not in kinds]
  if unknown or len(names) > 2 or len(set(names)) != len(names):
    raise ValueError(f"{arg}={spec!r}: use one of {list(kinds)} or two of them joined by '+'")
  if len(names) == 1:
    return kinds[spec]()
  return dict(kind="pair", first=kinds[names[0]](), second=kinds[names[1]]())


def intra_fusion(backbone, kind, width, **kwargs):
  """How a modality's backbone embedding(s) become one of `width` (models.intra_fusion):
  a pair by `kind`; one backbone of another width (or emitting every hidden state) by
  'fc'; None where the embedding already is one of `width`."""
  if backbone["kind"] == "pair":
    return dict(kind=kind, width=width, **kwargs)
  emitted = backbone.get("embed_dim", backbone.get("hidden", backbone.get("dim", width)))
  if emitted != width or backbone.get("layer") == "all":
    return dict(kind="fc", width=width, **kwargs)
  return None


def fusion(kind, num_layers=1, num_heads=1, ffn_dim=512, output="tokens", concat_ffn_dim=512,
           attn_dim=128, attn_hidden=32, normalize_inputs=True):
  """`normalize_inputs`: L2-normalise the backbone embeddings first, as the authors'
  Aff-Wild2 code does (their BioVid code does not)."""
  return dict(kind=kind, num_layers=num_layers, num_heads=num_heads, ffn_dim=ffn_dim,
              output=output, concat_ffn_dim=concat_ffn_dim, attn_dim=attn_dim,
              attn_hidden=attn_hidden, normalize_inputs=normalize_inputs)


# The head's sizes; which head it is follows `config.task`.
def valence_arousal_head(hidden=128, dropout=0.1):
  return dict(hidden=hidden, dropout=dropout, mlp=(), num_classes=0)


def pain_head(num_classes, mlp=()):
  return dict(hidden=0, dropout=0.0, mlp=mlp, num_classes=num_classes)


FUSION_VARIANTS = ("jmt", "vanilla", "concat", "jca")


def select_fusion(variant, pair, fusion_kwargs, baseline_layers=None):
  """(modalities, fusion config) for a comparison variant: one of FUSION_VARIANTS or a
  modality of `pair` (unimodal). `baseline_layers`, when given, is the number of encoder
  layers of the concat and unimodal baselines (0: the paper's Linear + head)."""
  if variant not in FUSION_VARIANTS and variant not in pair:
    raise ValueError(f"unknown variant {variant!r}: use one of {list(FUSION_VARIANTS)} or "
                     f"{list(pair)}")
  kwargs = dict(fusion_kwargs)
  if baseline_layers is not None and variant not in ("jmt", "vanilla"):
    kwargs["num_layers"] = baseline_layers
  if variant in pair:
    return (variant,), fusion("unimodal", **kwargs)
  return pair, fusion(variant, **kwargs)
