"""The whole network: one backbone per modality, a fusion, a task head.

Everything is chosen by `config.model`; modality names appear only in configs.
Parameters are grouped as `<modality>_backbone`, `fusion` and `head`.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jmt_jax.data import clips
from jmt_jax.models import biosignal
from jmt_jax.models import frontends
from jmt_jax.models import fusion as fusion_lib
from jmt_jax.models import heads
from jmt_jax.models import i3d
from jmt_jax.models import intra_fusion
from jmt_jax.models import resnet
from jmt_jax.models import speech
from jmt_jax.models import temporal as temporal_lib
from jmt_jax.models import vit

BACKBONE_KINDS = ("resnet2d", "r3d", "r2plus1d", "biosignal_cnn", "i3d_tcn", *speech.KINDS,
                  "vit", "pair", "precomputed")
# The two backbones of a `pair`, in the order their embeddings are concatenated.
PAIR = ("first", "second")
# Backbones embedding each frame of a clip on its own: a temporal model (models.temporal)
# makes the clip's embedding of them, after the backbones.
FRAME_ENCODER_KINDS = ("vit",)


def is_frame_encoder(cfg):
  """Whether backbone config `cfg` embeds frames one by one (`embed` then emits a clip's
  frames' embeddings side by side, and caches store one per frame: features.cache)."""
  return cfg.kind in FRAME_ENCODER_KINDS


def is_backbone(module_name):
  """Whether a top-level parameter group holds a backbone (`<modality>_backbone`)."""
  return module_name.endswith("_backbone")


def _rematerialised(cls, policy):
  """`cls` recomputing its activations in the backward pass rather than keeping them, but
  for what the `jax.checkpoint_policies` member named `policy` saves ('': keep all)."""
  if not policy:
    return cls
  if not hasattr(jax.checkpoint_policies, policy):
    raise ValueError(f"remat={policy!r} is not a jax.checkpoint_policies member (e.g. "
                     f"'nothing_saveable', 'dots_saveable')")
  return nn.remat(cls, policy=getattr(jax.checkpoint_policies, policy), static_argnums=(2,))


def build_backbone(cfg, name=None):
  """The backbone of `cfg`; call it as backbone(x, train)."""
  remat = cfg.get("remat", "")
  if cfg.kind in ("resnet2d", "r3d", "r2plus1d"):
    return _rematerialised(resnet.ResNet, remat)(
        kind=cfg.kind, widths=tuple(cfg.widths), blocks=tuple(cfg.blocks),
        stem_width=cfg.stem_width, stem_mid=cfg.get("stem_mid", 45), reduction=cfg.reduction,
        projection=cfg.get("projection", False), embed_dim=cfg.embed_dim,
        conv3d=cfg.get("conv3d", "auto"), name=name)
  if cfg.kind == "biosignal_cnn":
    return _rematerialised(biosignal.BiosignalCNN, remat)(
        widths=tuple(cfg.widths), kernel=cfg.kernel, first_stride=cfg.first_stride,
        embed_dim=cfg.embed_dim, name=name)
  if cfg.kind == "i3d_tcn":
    return _rematerialised(i3d.I3DTCN, remat)(
        tcn_widths=tuple(cfg.tcn_widths), tcn_kernel=cfg.tcn_kernel,
        tcn_dropout=cfg.tcn_dropout, conv3d=cfg.get("conv3d", "auto"), name=name)
  if cfg.kind in speech.KINDS:
    fields = {f: cfg[f] for f in SPEECH_FIELDS}
    return _rematerialised(speech.SpeechEncoder, remat)(
        kind=cfg.kind, layer=cfg.layer, **fields, name=name)
  if cfg.kind == "vit":
    return _rematerialised(vit.ViT, remat)(
        family=cfg.family, hidden=cfg.hidden, num_layers=cfg.num_layers,
        num_heads=cfg.num_heads, mlp_dim=cfg.mlp_dim, patch=cfg.patch,
        image_size=cfg.image_size, act=cfg.act, eps=cfg.eps, pooling=cfg.pooling, name=name)
  if cfg.kind == "pair":
    if any(is_frame_encoder(c) for c in members(cfg)):
      raise ValueError("a frame encoder (video_backbone=vit) goes alone, not in a pair: its "
                       "frames' embeddings are cached and merged per frame, a pair's per clip")
    return BackbonePair(cfg, name=name)
  if cfg.kind == "precomputed":
    return Precomputed(name=name)
  raise ValueError(f"unknown backbone kind {cfg.kind!r}; use one of {list(BACKBONE_KINDS)}")


SPEECH_FIELDS = ("hidden", "num_layers", "num_heads", "ffn_dim", "conv_dim", "conv_kernel",
                 "conv_stride", "conv_bias", "feat_extract_norm", "stable_layer_norm",
                 "pos_conv_kernel", "pos_conv_groups", "feat_proj_layer_norm", "layer_norm_eps",
                 "num_buckets", "max_distance")


def members(cfg):
  """The backbone configs inside backbone config `cfg`: its `first` and `second` for a
  pair, else itself."""
  return tuple(cfg[k] for k in PAIR) if cfg.kind == "pair" else (cfg,)


def embedding_layout(cfg):
  """[(hidden states, width)] of each backbone of `cfg`, in the order of its embedding
  (a frame encoder's after its temporal model): a speech encoder with layer 'all' emits
  num_layers + 1 pooled hidden states."""
  out = []
  for c in members(cfg):
    if c.kind in speech.KINDS:
      out.append((c.num_layers + 1 if c.layer == "all" else 1, c.hidden))
    elif c.kind == "i3d_tcn":
      out.append((1, c.tcn_widths[-1]))
    elif c.kind == "precomputed":
      out.append((1, c.dim))
    elif c.kind == "vit":
      out.append((1, c.hidden))
    else:
      out.append((1, c.embed_dim))
  return out


def embedding_width(cfg):
  """Features per clip that the backbone(s) of `cfg` emit (`MultimodalModel.embed`); per
  frame for a frame encoder."""
  return sum(states * width for states, width in embedding_layout(cfg))


def frames_embedded(config, modality):
  """Embeddings per clip of `modality` in `embed`'s output: its input's frames_per_clip
  for a frame encoder, else 1."""
  if is_frame_encoder(config.model.backbones[modality]):
    return config.input.modalities[modality].frames_per_clip
  return 1


def clip_embedding_width(config, modality):
  """Features per clip of `modality` in `MultimodalModel.embed`'s output under `config`."""
  return (frames_embedded(config, modality)
          * embedding_width(config.model.backbones[modality]))


class Precomputed(nn.Module):
  """The backbone of features extracted elsewhere (input kind 'features'): they pass as
  they are."""

  @nn.compact
  def __call__(self, x, train=False):
    del train
    return x


class BackbonePair(nn.Module):
  """Two backbones of one modality on their own inputs -> their embeddings, concatenated
  (first, second): merged per clip after the backbones (models.intra_fusion), so that
  with frozen backbones the merge trains on cached embeddings."""

  config: ml_collections.FrozenConfigDict

  def setup(self):
    self.first = build_backbone(self.config.first)
    self.second = build_backbone(self.config.second)

  def __call__(self, inputs, train=False):
    outs = [run_backbone(getattr(self, k), self.config[k], x, train)
            for k, x in zip(PAIR, inputs)]
    return jnp.concatenate([o.reshape(o.shape[0], -1) for o in outs], axis=-1)


def run_backbone(backbone, cfg, x, train):
  """`backbone(x, train)` on N clips' inputs `x` (arrays (N, ...), or a tuple of them),
  computed `cfg.clips_per_call` (`resolve_clips_per_call`) clips at a time in a loop when
  the backbone runs in inference mode (train False) and that count is below N. Each clip
  is embedded on its own either way, so the numbers agree to rounding; on a CPU the
  smaller calls' activations stay in cache. A frame encoder's (N, F, ...) clips go as N
  x F clips of one frame: the count is of frames."""
  if is_frame_encoder(cfg) and not train and x.shape[1] > 1:
    n, f = x.shape[:2]
    return run_backbone(backbone, cfg, x.reshape((n * f, 1) + x.shape[2:]), train).reshape(n, -1)
  n = jax.tree.leaves(x)[0].shape[0]
  clips_per_call = resolve_clips_per_call(cfg.get("clips_per_call", -1), cfg.kind)
  # A batch of symbolic size (an export's) is embedded in one call.
  if (train or not isinstance(n, int) or not 0 < clips_per_call < n
      or backbone.is_initializing()):
    return backbone(x, train)
  variables, unbound = backbone.variables, backbone.clone(parent=None)
  call = lambda y: unbound.apply(variables, y, False)  # noqa: E731
  whole = n - n % clips_per_call
  out = jax.lax.map(call, jax.tree.map(
      lambda y: y[:whole].reshape((-1, clips_per_call) + y.shape[1:]), x))
  out = out.reshape((whole,) + out.shape[2:])
  if whole == n:
    return out
  return jnp.concatenate([out, call(jax.tree.map(lambda y: y[whole:], x))])


def chunked_member(cfg):
  """(index in the embedding layout, name in the pair or None, config) of the speech
  encoder of backbone config `cfg` that encodes whole recordings in chunks
  (`chunk_seconds` > 0: features.speech_context), or None."""
  names = PAIR if cfg.kind == "pair" else (None,)
  for i, (name, c) in enumerate(zip(names, members(cfg))):
    if c.kind in speech.KINDS and c.get("chunk_seconds", 0) > 0:
      return i, name, c
  return None


def context_columns(cfg):
  """(lo, hi): the columns of the embedding of backbone config `cfg` that its chunked
  speech encoder fills (`chunked_member`)."""
  index = chunked_member(cfg)[0]
  layout = embedding_layout(cfg)
  lo = sum(n * w for n, w in layout[:index])
  return lo, lo + layout[index][0] * layout[index][1]


def context_key(modality):
  """The batch entry holding a modality's chunked speech embeddings (features.speech_context)."""
  return f"{modality}/context"


CHUNKED_NEEDS_CACHE = ("chunked speech context (chunk_seconds > 0) encodes whole recordings "
                       "once, in the feature cache's extraction and in prediction on a video, "
                       "not clip by clip: train and evaluate from a feature cache "
                       "(feature_cache=DIR, frozen backbones); such a model cannot be exported")


# The name scope of the inputs' front ends (models.frontends): pixels normalised and
# augmented, log-mel spectrograms in decibels, waveforms resampled, all in float32.
FRONTEND_SCOPE = "frontend"


class MultimodalModel(nn.Module):
  """Three entry points: `embed` (batch[modality] (B, T, ...) per-clip inputs -> {modality:
  (B, T, D)} backbone embeddings), `fuse` (those embeddings -> head outputs) and the whole
  model, `__call__(batch)` = `fuse(embed(batch))`. `fuse` on stored embeddings is what
  training on the feature cache (jmt_jax.features) and prediction on a recording
  (which embeds each clip once) run.

  With `config.freeze_backbones` (the paper's Aff-Wild2 setting) the backbones always run
  in inference mode (BatchNorm running statistics, no dropout) and pass no gradient.
  `config.compute_dtype` (`dtype`) is the dtype inputs are cast to; parameters come in
  the dtype the caller chooses (`variables.cast` casts float32 ones for bfloat16 compute).
  `config.inputs` ({modality: input config}) and `config.rates` say what the stored inputs
  are (pixels, audio windows, biosignal windows: see models.frontends), and
  `batch["augment"][modality]`, in training, the augmentation drawn for each clip.
  """

  config: ml_collections.FrozenConfigDict

  def setup(self):
    cfg = self.config
    self.fusion, arity = fusion_lib.build_fusion(cfg.fusion)
    if len(cfg.modalities) != arity:
      raise ValueError(f"fusion {cfg.fusion.kind!r} takes {arity} modalities, "
                       f"config.model.modalities has {list(cfg.modalities)}")
    # Parameter groups are named `<modality>_backbone`, as the converted checkpoints are.
    for m in cfg.modalities:
      setattr(self, f"{m}_backbone", build_backbone(cfg.backbones[m]))
      if is_frame_encoder(cfg.backbones[m]):
        setattr(self, f"{m}_temporal", temporal_lib.build(
            cfg.get("temporal", {}).get(m, ml_collections.ConfigDict({"kind": "mean"})),
            cfg.inputs[m]["frames_per_clip"], embedding_width(cfg.backbones[m])))
      merge = cfg.get("intra_fusion", {}).get(m)
      if merge is not None:
        setattr(self, f"{m}_intra_fusion", intra_fusion.build(
            merge, embedding_layout(cfg.backbones[m])))
    self.head = heads.build_head(cfg.task, cfg.head)

  @property
  def dtype(self):
    return COMPUTE_DTYPES[self.config.compute_dtype]

  def embed(self, batch, train=False):
    """{modality: (B, T, D)} of the modalities `batch` holds (a frame encoder's: its
    frames' embeddings side by side, D = frames x width); a chunked speech encoder's
    columns come from batch[context_key(modality)] (features.speech_context), which it
    must hold."""
    cfg = self.config
    frozen = cfg.get("freeze_backbones", False)
    embeddings = {}
    for m in (m for m in cfg.modalities if m in batch):
      x = batch[m]
      b, t = x.shape[:2]
      aug = batch.get("augment", {}).get(m) if train else None
      # Front ends compute in float32 whatever the compute dtype (tests/runtime/test_lowering).
      with jax.named_scope(FRONTEND_SCOPE):
        x = frontends.prepare(x.reshape((b * t,) + x.shape[2:]), cfg.backbones[m],
                              cfg.inputs[m], cfg.rates, None if aug is None else aug.reshape(
                                  b * t, -1))
      x = jax.tree.map(lambda y: y.astype(self.dtype), x)
      e = run_backbone(getattr(self, f"{m}_backbone"), cfg.backbones[m], x,
                       train and not frozen).reshape(b * t, -1)
      e = self._with_context(m, e, batch)
      if frozen:
        e = jax.lax.stop_gradient(e)
      embeddings[m] = e.reshape(b, t, -1)
    return embeddings

  def _with_context(self, m, e, batch):
    """`e` with the chunked speech encoder's part taken from the batch's context (XLA
    then drops the per-clip encoder's work)."""
    chunked = chunked_member(self.config.backbones[m])
    if chunked is None or self.is_initializing():
      return e
    if context_key(m) not in batch:
      raise ValueError(CHUNKED_NEEDS_CACHE)
    lo, hi = context_columns(self.config.backbones[m])
    context = batch[context_key(m)].reshape(e.shape[0], -1).astype(e.dtype)
    return jnp.concatenate([e[:, :lo], context, e[:, hi:]], axis=-1)

  def context_frames(self, m, waveforms):
    """(N, frames, ...) float32 frames of modality `m`'s chunked speech encoder on (N,
    samples) waveforms at its rate (each normalised alone if the checkpoint's are)."""
    _, name, cfg = chunked_member(self.config.backbones[m])
    encoder = getattr(self, f"{m}_backbone")
    if name is not None:
      encoder = getattr(encoder, name)
    x = frontends.normalized(waveforms) if cfg.normalize_waveform else waveforms
    return encoder.frames(x.astype(self.dtype)).astype(jnp.float32)

  def fuse(self, embeddings, train=False):
    cfg = self.config
    merged = cfg.get("intra_fusion", {})
    embeddings = {m: getattr(self, f"{m}_temporal")(e) if is_frame_encoder(cfg.backbones[m])
                  else e for m, e in embeddings.items()}
    embeddings = {m: getattr(self, f"{m}_intra_fusion")(e) if m in merged else e
                  for m, e in embeddings.items()}
    dims = {embeddings[m].shape[-1] for m in cfg.modalities}
    if len(dims) != 1:
      raise ValueError(f"backbone embeddings of {list(cfg.modalities)} differ in width: "
                       f"{[embeddings[m].shape[-1] for m in cfg.modalities]}")
    fused = self.fusion(*(embeddings[m].astype(self.dtype) for m in cfg.modalities))
    outputs = self.head(fused, train=train)
    return jax.tree.map(lambda x: x.astype(jnp.float32), outputs)

  def __call__(self, batch, train=False):
    return self.fuse(self.embed(batch, train), train)


# What a config's `compute_dtype` may name, besides "auto".
COMPUTE_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def resolve_compute_dtype(name, platform=None):
  """'float32' or 'bfloat16' for a config's `compute_dtype` on `platform` (default: this
  host's backend); 'auto' is float32 on a CPU, bfloat16 on GPUs and TPUs, whose matrix
  units run it at several times the float32 rate."""
  if name == "auto":
    return "float32" if (platform or jax.default_backend()) == "cpu" else "bfloat16"
  if name not in COMPUTE_DTYPES:
    raise ValueError(f"compute_dtype={name!r}: use one of {['auto', *COMPUTE_DTYPES]}")
  return name


# Clips per call of a 3-D convolutional backbone in inference mode on a CPU: the frozen
# R(2+1)D-18 step at the paper's shapes runs 1.15x faster at 4 than with its 32 clips in
# one call, I3D's embedding 1.28x; the log-mel ResNet-18 and the speech encoders, whose
# activations are small, run no faster (BUILD_NOTES.md).
CPU_CLIPS_PER_CALL = 4
CONV3D_KINDS = ("r3d", "r2plus1d", "i3d_tcn")
CHUNKED_ON_CPU = CONV3D_KINDS + FRAME_ENCODER_KINDS  # a ViT's frames: BUILD_NOTES.md


def resolve_clips_per_call(value, kind, platform=None):
  """A backbone config's `clips_per_call` for a backbone of `kind` on `platform` (default:
  this host's backend): -1 is CPU_CLIPS_PER_CALL for a 3-D convolutional backbone on a
  CPU, else 0 (the whole batch in one call; GPUs and TPUs want large batches); a count
  >= 0 stays (`run_backbone`)."""
  if value == -1:
    cpu = (platform or jax.default_backend()) == "cpu"
    return CPU_CLIPS_PER_CALL if cpu and kind in CHUNKED_ON_CPU else 0
  if isinstance(value, bool) or not isinstance(value, int) or value < 0:
    raise ValueError(f"clips_per_call={value!r}: use a count of clips, 0 for the whole "
                     f"batch in one call or -1 for this platform's choice")
  return value


def set_clips_per_call(config, clips):
  """Sets the `clips_per_call` of every backbone of `config` (a ConfigDict) to `clips`."""
  for backbone in config.model.backbones.values():
    for c in members(backbone):
      c.clips_per_call = clips


def model_inputs(config):
  """({modality: input config}, signal rates): what the stored inputs `data.clips` reads
  are, which the model turns into its backbones' inputs (models.frontends)."""
  signals = config.data.signals
  inputs = {m: config.input.modalities[m].to_dict() for m in config.model.modalities}
  return inputs, {"audio_rate": signals.audio_rate, "bio_rate": signals.bio_rate}


def input_spec(config):
  """{modality: jax.ShapeDtypeStruct} of a one-window batch, from the config alone (for
  shapes without opening the data): what `data.clips.read_clips` produces."""
  c, signals = config.input, config.data.signals
  spec = {}
  for m in config.model.modalities:
    s = c.modalities[m]
    if s.kind == "frames":
      shape = (1, c.num_clips, s.frames_per_clip, signals.frame_size, signals.frame_size, 3)
      spec[m] = jax.ShapeDtypeStruct(shape, np.uint8)
    elif s.kind in ("logmel", "waveform"):
      spec[m] = jax.ShapeDtypeStruct((1, c.num_clips, clips.signal_window(s, signals)), np.int16)
    elif s.kind == "features":
      spec[m] = jax.ShapeDtypeStruct((1, c.num_clips, s.dim), np.float32)
    elif s.kind == "biosignal":
      n = clips.signal_window(s, signals)
      spec[m] = jax.ShapeDtypeStruct((1, c.num_clips, n, len(s.channels)), np.float32)
    else:
      raise ValueError(f"unknown input kind {s.kind!r} for modality {m!r}")
  return spec


def build_model(config, platform=None):
  """The model of `config`: its `model`, the head of its `task`, computing in its
  `compute_dtype` on the inputs its data stores (`model_inputs`), with the `auto` choices
  (compute dtype, 3-D convolutions, clips per backbone call) made for `platform` ('cpu',
  'cuda', 'rocm', 'tpu'; default: this host's backend), so a program can be lowered here
  for another one."""
  cfg = ml_collections.ConfigDict(config.model.to_dict())
  cfg.task = config.task
  cfg.compute_dtype = resolve_compute_dtype(config.compute_dtype, platform)
  for m in cfg.modalities:
    for c in members(cfg.backbones[m]):
      if c.kind in CONV3D_KINDS:
        c.conv3d = resnet.conv3d_impl(c.get("conv3d", "auto"), platform)
      c.clips_per_call = resolve_clips_per_call(c.get("clips_per_call", -1), c.kind, platform)
  cfg.inputs, cfg.rates = model_inputs(config)
  return MultimodalModel(ml_collections.FrozenConfigDict(cfg))
