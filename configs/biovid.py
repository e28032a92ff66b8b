"""BioVid Heat Pain (Part A) at the paper's sizes: R3D-18 on faces + the 1-D CNN on EDA
-> JMT with the BioVid head -> BL1 vs PA4 (BUILD_NOTES.md, Reference 1.1-1.3).

  python -m jmt_jax.prepare biovid --raw_dir=/data/BioVid/PartA --out_dir=data/biovid
  python -m jmt_jax.main --config=configs/biovid.py:data_dir=data/biovid,fold=0 \
      --workdir=workdirs/biovid_fold0

One run trains one fold of the protocol and evaluates on its held-out samples; every fold
with a table of per-fold and mean +- std accuracy:

  python -m jmt_jax.training.cross_validate --config=configs/biovid.py:data_dir=data/biovid \
      --workdir=workdirs/biovid_cv

Variants, `--config=configs/biovid.py:VARIANT[,tiny][,key=value...]`: jmt (default),
vanilla (no joint branch), concat, jca (joint cross-attention), video, eda. The
baselines are the paper's: Linear / backbone + head, no encoder. Arguments:
  init_from=DIR: start from weights converted with `python -m jmt_jax.weights.convert`;
  freeze_backbones: train the fusion and head only;
  video_backbone=r3d (default) or vit (a ViT image encoder on each frame, then
    Linear(hidden -> 512)), with the vit_family, vit_config, vit_input_size, vit_pooling
    and vit_temporal arguments of configs/affwild2.py;
  video_fc: keep a Linear(512, 512) after R3D-18's pooling, as the authors' `Visual_model2`
    (the face model their BioVid feature concatenation loads) does; weights saved from
    it need this;
  data_dir=DIR: the prepared data (default ~/jmt_jax_data/biovid);
  classes=binary (BL1 vs PA4, the paper's) or five (BL1, PA1..PA4);
  protocol=subject_kfold (default: subjects dealt into num_folds=5 folds), loso (leave one
    subject out: 87 folds) or sample_kfold (the public code's 5-fold over samples, which
    leaks subjects between training and validation); fold=K picks the fold;
  synthetic: the built-in recordings rendered at BioVid's shapes instead (112x112 faces
    at 25 fps, EDA at 512 Hz, 5.5 s samples, pain levels 0..4 standing for BL1..PA4; each
    sample its own subject), folded by the protocol like the real samples;
  tiny: shrinks widths (and the built-in data, unless data_dir is given) to run one step
    on a CPU (what the tests run); on the built-in data it takes 3 folds and all five
    levels (6 samples may lack BL1 or PA4), unless num_folds or classes is given.
"""

from jmt_jax import config_args
from jmt_jax import config_common as cc

VARIANTS = ("jmt", "vanilla", "concat", "jca", "video", "eda")


def get_config(arg=None):
  given = config_args.given(arg)
  a = config_args.parse_arg(arg, variant="jmt", tiny=False, init_from="", freeze_backbones=False,
                            video_fc=False, data_dir="", synthetic=False, classes="binary",
                            protocol="subject_kfold", fold=0, num_folds=5,
                            video_backbone="r3d", vit_family="clip", vit_config="",
                            vit_input_size=0, vit_pooling="cls", vit_temporal="mean")
  if a.classes not in ("binary", "five"):
    raise ValueError(f"classes={a.classes!r}: use 'binary' (BL1 vs PA4) or 'five'")
  synthetic = a.synthetic or (a.tiny and not a.data_dir)
  c = cc.base_config()
  c.task = "pain"
  protocol = dict(kind=a.protocol, fold=a.fold, num_folds=a.num_folds, seed=0)
  if synthetic:  # one split of samples, folded by the protocol as the prepared data is
    c.data = cc.synthetic_data({"samples": 250}, segment_frames=138,
                              frame_size=112, fps=25.0, audio_rate=8000,
                              bio_rate=512, min_frames=138, max_frames=138)
    c.data.protocol = protocol
  else:
    c.data = cc.prepared_data("biovid", a.data_dir or "~/jmt_jax_data/biovid", frame_size=112,
                              bio_rate=512, protocol=protocol)
  c.input = dict(
      # 4 clips of 30 frames (5 used, every 6th) span 4.8 s of the 5.5 s sample.
      clip_frames=30, num_clips=4, train_stride=2,
      pain_classes=(0, 4) if a.classes == "binary" else (),
      augment=dict(flip_prob=0.5),  # the paper's random horizontal flip
      modalities=dict(
          video=cc.frames_input(frames_per_clip=5, face_crop="box", missing_face="hold"),
          eda=cc.biosignal_input(window_seconds=2816 / 512),  # 2,816 samples at 512 Hz
      ),
  )
  widths, blocks, embed = (64, 128, 256, 512), (2, 2, 2, 2), 512
  if a.tiny:
    widths, blocks, embed = (8, 8, 16, 16), (1, 1, 1, 1), 16
  video_kinds = dict(
      r3d=lambda: cc.resnet("r3d", widths=widths, blocks=blocks, stem_width=widths[0],
                            reduction="mean", projection=a.video_fc, mean=cc.IMAGENET_MEAN,
                            std=cc.IMAGENET_STD),
      vit=lambda: cc.vit_face_encoder(a))
  if a.video_backbone not in video_kinds:
    raise ValueError(f"video_backbone={a.video_backbone!r}: use one of {list(video_kinds)}")
  backbones = dict(
      video=video_kinds[a.video_backbone](),
      eda=cc.biosignal_cnn(embed_dim=embed, widths=(32, 64) if not a.tiny else (4, 8)),
  )
  # The authors' BioVid main.py feeds every fusion the backbones' raw features
  # (VIS_PHY_MODEL.model_out_feats), not L2-normalised ones as their Aff-Wild2 code does.
  fusion_kwargs = dict(num_layers=1, num_heads=1, ffn_dim=embed, output="concat",
                       concat_ffn_dim=512 if not a.tiny else 16, normalize_inputs=False)
  modalities, fusion = cc.select_fusion(a.variant, ("video", "eda"), fusion_kwargs,
                                        baseline_layers=0)
  # The public code's MLPs: 3072-1024-512-256-64-2 after JMT, 1024-512-256-64-2 after the
  # other fusions (their Linear(1024 -> 512) is the fusion's), 512-2 after one backbone.
  mlp = {"jmt": (1024, 512, 256, 64)}.get(a.variant, () if a.variant in ("video", "eda")
                                          else (256, 64))
  if a.tiny:
    mlp = (16, 8)
  c.model = dict(modalities=modalities, backbones={m: backbones[m] for m in modalities},
                 fusion=fusion, head=cc.pain_head(num_classes=2 if a.classes == "binary" else 5,
                                                   mlp=mlp),
                 freeze_backbones=a.freeze_backbones)
  if a.video_backbone == "vit" and "video" in modalities:
    c.model.temporal = dict(video=cc.vit_face_temporal(a))
  video_fc = cc.intra_fusion(backbones["video"], "fc", embed)  # a ViT's width -> the fusion's
  if "video" in modalities and video_fc is not None:
    c.model.intra_fusion = dict(video=video_fc)
  c.init_from = a.init_from
  c.compute_dtype = "auto"  # bfloat16 on GPUs and TPUs, float32 on CPUs

  # Adam, lr 5e-6, batch 128, 100 epochs.
  c.optimizer.update(name="adam", learning_rate=5e-6, warmup_steps=0, schedule="constant")
  c.train.update(num_steps=10000, batch_size=128, eval_every=1000, checkpoint_every=500)
  c.eval.batch_size = 128

  if a.tiny:
    if synthetic:
      c.data.split_sizes = {"samples": 6}
      c.data.segment_frames = 16
      c.data.signals.update(frame_size=16, bio_rate=64)
      c.data.render.update(fps=10.0, min_frames=30, max_frames=30)
      if "num_folds" not in given:
        c.data.protocol.num_folds = 3
      if "classes" not in given:
        c.input.pain_classes = ()
        c.model.head.num_classes = 5
    c.input.update(clip_frames=6, num_clips=2, train_stride=6)
    c.model.fusion.update(attn_dim=8, attn_hidden=4)
    c.input.modalities.video.frames_per_clip = 2
    c.input.modalities.eda.window_seconds = 1.0
    c.train.update(num_steps=1, batch_size=2, log_every=1, eval_every=1, checkpoint_every=1)
    c.eval.batch_size = 4
  return c
