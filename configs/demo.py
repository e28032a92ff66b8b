"""Demo: the Joint Multimodal Transformer on the built-in synthetic recordings.

Face video + voice -> per-frame valence/arousal, trained from scratch on a 2-core CPU
in under 10 minutes (the dataset is generated and cached on first use):

  python -m jmt_jax.main --config=configs/demo.py --workdir=workdirs/demo

Variants, `--config=configs/demo.py:VARIANT[,tiny]`:
  jmt (default), vanilla (no joint branch), concat, jca (joint cross-attention), video,
  audio: the paper's fusion comparison, same budget;
  pain: JMT with the BioVid head on face video + EDA, pain level 0 vs 4.
  tiny: a few steps on a minute dataset (what the tests run);
  video_backbone=r2plus1d (default) or vit: a small random-init CLIP-form ViT on each
    face, then vit_temporal=transformer (default), conv, mean or max over each clip's
    frames (configs/affwild2.py loads pretrained ones);
  freeze_backbones: the backbones stay as initialised, the rest trains, here from
    embeddings extracted once into a feature cache (a frame encoder's: once per frame):
      python -m jmt_jax.features.extract \
          --config=configs/demo.py:video_backbone=vit,freeze_backbones,feature_cache=cache/demo
      python -m jmt_jax.main \
          --config=configs/demo.py:video_backbone=vit,freeze_backbones,feature_cache=cache/demo \
          --workdir=workdirs/demo_vit
Any field can be overridden, e.g. `--config.train.num_steps=300`.
"""

from jmt_jax import config_args
from jmt_jax import config_common as cc

VARIANTS = ("jmt", "vanilla", "concat", "jca", "video", "audio", "pain")


def get_config(arg=None):
  a = config_args.parse_arg(arg, variant="jmt", tiny=False, video_backbone="r2plus1d",
                            vit_temporal="transformer", freeze_backbones=False,
                            feature_cache="")
  c = cc.base_config()

  c.data = cc.synthetic_data({"train": 160, "validation": 20}, segment_frames=32,
                            frame_size=24, fps=10.0, audio_rate=8000,
                            bio_rate=64, min_frames=240, max_frames=360)
  c.input = dict(
      clip_frames=4, num_clips=8, train_stride=2, pain_classes=(),
      modalities=dict(
          video=cc.frames_input(frames_per_clip=4),
          audio=cc.logmel_input(window_seconds=0.4, n_fft=256, win_length=160, hop_length=80,
                                n_mels=32, mean=-18.0, std=6.0),
          eda=cc.biosignal_input(window_seconds=2.0),
      ),
  )
  width = 64
  frame_size = 16 if a.tiny else c.data.signals.frame_size
  video = dict(
      r2plus1d=lambda: cc.resnet("r2plus1d", widths=(8, 16, 32, width), blocks=(1, 1, 1, 1),
                                 stem_width=8, stem_mid=8, reduction="max",
                                 mean=cc.KINETICS_MEAN, std=cc.KINETICS_STD),
      vit=lambda: cc.vit_encoder("clip", hidden=width, num_layers=2, num_heads=4,
                                 mlp_dim=2 * width, patch=8, image_size=frame_size))
  backbones = dict(
      video=cc.backbones(a.video_backbone, video, "video_backbone"),
      audio=cc.resnet("resnet2d", widths=(16, 32, 48, width), blocks=(1, 1, 1, 1), stem_width=16,
                      reduction="mean"),
      eda=cc.biosignal_cnn(embed_dim=width, widths=(16, 32)),
  )
  fusion_kwargs = dict(num_layers=1, num_heads=2, ffn_dim=width, attn_dim=32, attn_hidden=16)
  if a.variant == "pain":
    c.task = "pain"
    c.input.pain_classes = (0, 4)
    modalities, fusion = ("video", "eda"), cc.fusion("jmt", output="concat", concat_ffn_dim=width,
                                                     **fusion_kwargs)
    head = cc.pain_head(num_classes=2, mlp=(128, 64, 32))
  else:
    modalities, fusion = cc.select_fusion(a.variant, ("video", "audio"), fusion_kwargs)
    head = cc.valence_arousal_head(hidden=32, dropout=0.1)
  c.model = dict(modalities=modalities, backbones={m: backbones[m] for m in modalities},
                 fusion=fusion, head=head, freeze_backbones=a.freeze_backbones)
  c.feature_cache = a.feature_cache
  if a.video_backbone == "vit" and "video" in modalities:
    c.model.temporal = dict(video=cc.temporal_model(a.vit_temporal, num_heads=4))

  c.train.num_steps = 1200
  c.train.batch_size = 16
  c.train.eval_every = 400
  c.optimizer.learning_rate = 2e-3

  if a.tiny:
    c.data.split_sizes = {"train": 4, "validation": 2}
    c.data.signals.frame_size = frame_size
    c.data.render.update(min_frames=40, max_frames=60)
    c.data.segment_frames = 16
    c.train.update(num_steps=4, batch_size=4, log_every=2, eval_every=4, checkpoint_every=2)
    c.eval.batch_size = 8
    c.optimizer.warmup_steps = 1
    if a.variant == "pain":  # all synthetic pain levels: 4 recordings may lack level 0 or 4
      c.input.pain_classes = ()
      c.model.head.num_classes = 5
  return c
