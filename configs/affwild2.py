"""Aff-Wild2 at the paper's sizes: R(2+1)D-18 on faces + ResNet-18 on log-mels -> JMT
-> per-frame valence/arousal (BUILD_NOTES.md, Reference 1.1-1.3).

  python -m jmt_jax.prepare affwild2 --raw_dir=/data/Aff-Wild2 --out_dir=data/affwild2
  python -m jmt_jax.main --config=configs/affwild2.py:data_dir=data/affwild2 \
      --workdir=workdirs/affwild2

Trains on the organisers' train split and evaluates on their validation split, each
frame the last frame of one clip (Reference 2.1).

Variants, `--config=configs/affwild2.py:VARIANT[,tiny][,key=value...]`: jmt (default),
vanilla (no joint branch), concat, jca (joint cross-attention, Praveen et al. 2022),
video, audio. The baselines are the paper's: Linear / backbone + head, no encoder.
Arguments:
  video_backbone=r2plus1d (default), i3d (I3D + TCN, clips resized to 224x224),
    r2plus1d+i3d (both, merged per clip by `intra_fusion`) or vit (a ViT image encoder on
    each frame, then Linear(hidden -> 512)): vit_family=clip (default), vit_mae or
    dinov2; vit_config=PATH: the architecture from a transformers checkpoint's
    config.json (default: the family's Base, ViT-B/16 or DINOv2-B/14);
    vit_input_size=N: faces resized to NxN (default: the checkpoint's size for clip and
    vit_mae, which take no other; 224 for dinov2); vit_pooling=cls (default) or mean (of
    the patches); vit_temporal=mean (default) or max over the clip's frames' embeddings,
    conv (a residual temporal convolution over 3 frames, then their mean) or transformer
    (one encoder layer over the frames, then their mean): trained with the fusion, on
    embeddings cached once per frame when the encoder is frozen (features.cache);
  audio_backbone=resnet18 (default, on log-mels), a speech encoder on the clip's audio at
    16 kHz: wavlm, wav2vec2 or hubert (alone: then Linear(hidden -> 512), the authors'
    FcLayer), or resnet18+wavlm (the authors' README command; likewise +wav2vec2, +hubert);
  intra_fusion=encoder_self_attention (default, the authors' encoder_plus_self_attention)
    or concat_fc (feat_concat_fc): how two backbones of one modality are merged;
  speech_size=base (default) or large; speech_config=PATH: the architecture from a
    transformers checkpoint's config.json instead (its preprocessor_config.json too);
  speech_layer=-1 (default: the last hidden state), 0..num_layers (one hidden state) or
    all (a learned weighted sum of every hidden state, as SUPERB);
  speech_chunk_seconds=S: encode each recording's voice once, in chunks of S seconds
    (1 s of context either side), pooled per clip, into the feature cache (frozen
    backbones only); 0 (default): each clip's window alone, as the authors do;
  audio_backbone=precomputed,features_dir=DIR[,features_dim=768]: per-clip voice features
    extracted elsewhere, DIR/<recording>/<NNNNN>.npy for the clip ending at frame NNNNN
    (features_pattern=... for another layout), then Linear(768 -> 512);
  video_reduction=max (default, the paper's), mean or flatten_linear (flatten the
    512x1x7x7 map + Linear(25088, 512), the authors' `vision_r2d1_fc`): R(2+1)D's
    per-clip embedding from its last feature map;
  init_from=DIR: start from weights converted with `python -m jmt_jax.weights.convert`, with the
    backbones frozen as in the paper (add freeze_backbones=false to fine-tune them):
      python -m jmt_jax.main --config=configs/affwild2.py:jmt,init_from=weights/affwild2 \
          --workdir=workdirs/affwild2
  feature_cache=DIR: with frozen backbones, read their embeddings from a cache written
    once by `python -m jmt_jax.data.extract_features --config=<this config>` (no augmentation);
  data_dir=DIR: the prepared data (default ~/jmt_jax_data/affwild2);
  synthetic: the built-in recordings rendered at Aff-Wild2's shapes (112x112 faces at
    30 fps, 44.1 kHz audio) instead, to run and time the paper-size model without the data;
  tiny: shrinks widths (and the built-in data, unless data_dir is given) to run one step
    on a CPU (what the tests run).
"""

from jmt_jax import config_args
from jmt_jax import config_common as cc

VARIANTS = ("jmt", "vanilla", "concat", "jca", "video", "audio")
SPEECH = ("wavlm", "wav2vec2", "hubert")


def get_config(arg=None):
  a = config_args.parse_arg(arg, variant="jmt", tiny=False, video_backbone="r2plus1d",
                            video_reduction="max", init_from="", freeze_backbones=True,
                            data_dir="", synthetic=False, feature_cache="",
                            audio_backbone="resnet18", intra_fusion="encoder_self_attention",
                            speech_size="base", speech_config="", speech_layer="-1",
                            speech_chunk_seconds=0.0,
                            features_dir="", features_dim=768,
                            features_pattern="{recording}/{frame:05d}.npy",
                            vit_family="clip", vit_config="", vit_input_size=0,
                            vit_pooling="cls", vit_temporal="mean")
  if a.video_reduction not in ("max", "mean", "flatten_linear"):
    raise ValueError(f"video_reduction={a.video_reduction!r}: use 'max', 'mean' or "
                     f"'flatten_linear'")
  synthetic = a.synthetic or (a.tiny and not a.data_dir)
  c = cc.base_config()
  if synthetic:
    c.data = cc.synthetic_data({"train": 40, "validation": 10}, segment_frames=64,
                              frame_size=112, fps=30.0, audio_rate=44100,
                              bio_rate=512, min_frames=600, max_frames=900)
  else:
    c.data = cc.prepared_data("affwild2", a.data_dir or "~/jmt_jax_data/affwild2",
                              frame_size=112, audio_rate=44100)
  audio = cc.logmel_input(window_seconds=45599 / 44100, n_fft=1024, win_length=882,
                          hop_length=441, n_mels=64, mean=-14.8, std=19.895)
  if a.audio_backbone in SPEECH:  # no log-mel: the window's waveform alone
    audio = cc.waveform_input(window_seconds=audio["window_seconds"])
  if "precomputed" in a.audio_backbone:
    if a.audio_backbone != "precomputed":
      raise ValueError("audio_backbone=precomputed goes alone: features extracted elsewhere "
                       "cannot be paired with a backbone run here")
    if not a.features_dir:
      raise ValueError("audio_backbone=precomputed needs features_dir=DIR")
    audio = cc.features_input(a.features_dir, a.features_dim, a.features_pattern)
  c.input = dict(
      clip_frames=32, num_clips=16, train_stride=32, pain_classes=(),
      # Per clip, as the authors' clip transforms: flip, brightness and contrast jitter.
      augment=dict(flip_prob=0.5, brightness=0.4, contrast=0.4),
      modalities=dict(
          video=cc.frames_input(frames_per_clip=8),
          # 45,599 samples ending at the clip's last frame; (x + 14.8) / 19.895.
          audio=audio,
      ),
  )
  widths, blocks = (64, 128, 256, 512), (2, 2, 2, 2)
  if a.tiny:
    widths, blocks = (8, 8, 16, 16), (1, 1, 1, 1)
  video_kinds = dict(
      r2plus1d=lambda: cc.resnet("r2plus1d", widths=widths, blocks=blocks,
                                 stem_width=widths[0], stem_mid=45 if not a.tiny else 8,
                                 reduction=a.video_reduction, mean=cc.KINETICS_MEAN,
                                 std=cc.KINETICS_STD),
      i3d=lambda: cc.i3d_tcn(tcn_widths=(widths[-1],) * 4, resize_to=224 if not a.tiny else 32,
                             mean=cc.KINETICS_MEAN, std=cc.KINETICS_STD),
      vit=lambda: cc.vit_face_encoder(a))
  audio_kinds = dict(
      resnet18=lambda: cc.resnet("resnet2d", widths=widths, blocks=blocks,
                                 stem_width=widths[0], reduction="mean"),
      precomputed=lambda: dict(kind="precomputed", dim=a.features_dim),
      **{k: lambda k=k: _speech(k, a) for k in SPEECH})
  backbones = dict(video=cc.backbones(a.video_backbone, video_kinds, "video_backbone"),
                   audio=cc.backbones(a.audio_backbone, audio_kinds, "audio_backbone"))
  fusion_kwargs = dict(num_layers=1, num_heads=1, ffn_dim=widths[-1])
  modalities, fusion = cc.select_fusion(a.variant, ("video", "audio"), fusion_kwargs,
                                        baseline_layers=0)
  c.model = dict(modalities=modalities, backbones={m: backbones[m] for m in modalities},
                 fusion=fusion, head=cc.valence_arousal_head(hidden=128, dropout=0.1),
                 freeze_backbones=bool(a.init_from) and a.freeze_backbones)
  if a.video_backbone == "vit" and "video" in modalities:
    c.model.temporal = dict(video=cc.vit_face_temporal(a))
  intra = {m: cc.intra_fusion(backbones[m], a.intra_fusion, widths[-1], num_heads=1,
                              num_layers=1, ffn_dim=widths[-1]) for m in modalities}
  if any(f is not None for f in intra.values()):  # absent otherwise: older workdirs resume
    c.model.intra_fusion = {m: f for m, f in intra.items() if f is not None}
  c.init_from = a.init_from
  c.compute_dtype = "auto"  # bfloat16 on GPUs and TPUs, float32 on CPUs
  c.feature_cache = a.feature_cache

  # SGD with Nesterov momentum 0.9, lr from the grid {8e-4, 6e-4, 3e-4}, batch 32.
  c.optimizer.update(name="sgd", learning_rate=3e-4, warmup_steps=0, schedule="constant",
                     momentum=0.9, nesterov=True)
  c.train.update(num_steps=5000, batch_size=32, eval_every=1000, checkpoint_every=500)
  c.eval.batch_size = 32

  if a.tiny:
    if synthetic:
      c.data.split_sizes = {"train": 2, "validation": 1}
      c.data.segment_frames = 16
      c.data.signals.update(frame_size=16, audio_rate=8000, bio_rate=64)
      c.data.render.update(fps=8.0, min_frames=24, max_frames=32)
    c.input.update(clip_frames=4, num_clips=4, train_stride=4)
    c.input.modalities.video.frames_per_clip = 2
    if "window_seconds" in c.input.modalities.audio:
      c.input.modalities.audio.window_seconds = 0.5
    if c.input.modalities.audio.kind == "logmel":
      c.input.modalities.audio.update(n_fft=256, win_length=200, hop_length=100, n_mels=16)
    c.model.head.hidden = 8
    c.model.fusion.update(attn_dim=8, attn_hidden=4)
    c.train.update(num_steps=1, batch_size=2, log_every=1, eval_every=1, checkpoint_every=1)
    c.eval.batch_size = 4
  return c


def _speech(kind, a):
  layer = a.speech_layer if a.speech_layer == "all" else int(a.speech_layer)
  chunk = dict(chunk_seconds=float(a.speech_chunk_seconds))
  if a.speech_config:
    return cc.speech_encoder(kind, layer=layer, transformers_config=a.speech_config, **chunk)
  if a.tiny:  # a random-init encoder of the same form, small enough for a CPU step
    return cc.speech_encoder(kind, layer=layer, hidden=12, num_layers=2, num_heads=2, ffn_dim=24,
                             conv_dim=(8, 8, 8), conv_kernel=(10, 3, 3), conv_stride=(5, 2, 2),
                             pos_conv_kernel=8, pos_conv_groups=2, num_buckets=16,
                             max_distance=32, **chunk)
  return cc.speech_encoder(kind, a.speech_size, layer=layer, **chunk)
