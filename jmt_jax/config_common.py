"""Building blocks shared by the files in `configs/`: the training skeleton and the
standard backbone, input and head sub-configs. Each config file composes these."""

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


def biosignal_input(window_seconds, channels=(0,), baseline="mean", scale=1.0):
  return dict(kind="biosignal", window_seconds=window_seconds, channels=channels,
              baseline=baseline, scale=scale)


# Every backbone config also holds how it is computed, which changes no result:
#   conv3d: 3-D convolutions 'native' (XLA's), 'per_tap' (2-D convolutions per temporal
#     tap) or 'auto' (per_tap on CPUs, native on GPUs and TPUs): models.resnet.Conv3D;
#   remat: '' (keep activations for the backward pass) or a jax.checkpoint_policies name
#     ('nothing_saveable', 'dots_saveable'...): recompute them, to fine-tune the backbone
#     at a larger batch in the same memory.
COMPUTE = dict(conv3d="auto", remat="")


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
