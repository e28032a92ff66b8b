"""A ViT face encoder's forward, jmt_jax beside `transformers`' PyTorch model on the same
weights, in one run:

  python -m jmt_jax.benchmarks.vit_encoders [--family=clip] [--batch=32] [--rounds=3]

A batch of `--batch` 224x224 frames through the family's Base model at transformers'
defaults (`--family` clip: `CLIPVisionModel` as ViT-B/16 with quick GELU, vit_mae:
`ViTMAEModel`, mask ratio 0, dinov2: `Dinov2Model`, its 37x37 position grid interpolated
to 16x16), random weights saved with `save_pretrained` and converted as a user's
download is, to the pooled output (the class token). The sides alternate `--rounds`
times; medians, frames/s, ratio (float32 against float32, jmt_jax bfloat16 beside it),
XLA's FLOPs per batch and the utilisation of the peak (on a CPU a measured matmul).
PyTorch runs on `--threads` threads (default: every core), as XLA's CPU backend does.

Needs `pip install torch transformers`.
"""

import sys
import tempfile

import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import flags

from jmt_jax.benchmarks import versus_transformers
from jmt_jax.models import model as model_lib
from jmt_jax.models import vit
from jmt_jax.runtime import cli
from jmt_jax.runtime import library_logs

FLAGS = flags.FLAGS


def build(torch, transformers, family, directory):
  """(torch model, jmt_jax encoder, its float32 variables) of the family's Base model,
  saved in `directory` as a download is."""
  reference = {
      "clip": lambda: transformers.CLIPVisionModel(transformers.CLIPVisionConfig(
          hidden_act="quick_gelu", patch_size=16)),
      "vit_mae": lambda: transformers.ViTMAEModel(transformers.ViTMAEConfig(mask_ratio=0.0)),
      "dinov2": lambda: transformers.Dinov2Model(transformers.Dinov2Config(
          image_size=518, patch_size=14)),
  }[family]
  torch.manual_seed(0)
  model = reference().eval()
  model.save_pretrained(directory)
  return (model, *versus_transformers.converted_encoder(
      f"configs/affwild2.py:video_backbone=vit,vit_family={family},vit_config={directory},"
      f"vit_input_size=224", "video", directory))


def frames_embedded(encoder, frames):
  """(M, hidden) embeddings of (M, H, W, 3) frames as feature extraction and prediction
  compute them: M clips of one frame through `run_backbone` (on a CPU, a few a call)."""
  cfg = ml_collections.ConfigDict(dict(kind="vit", clips_per_call=-1))
  return model_lib.run_backbone(encoder, cfg, frames[:, None], False)


def speed(torch, family, reference, encoder, variables):
  x = np.random.default_rng(0).standard_normal((FLAGS.batch, 224, 224, 3)).astype(np.float32)
  xt = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()

  def torch_run():
    with torch.inference_mode():
      out = reference(pixel_values=xt)
      return out.last_hidden_state[:, 0] if family == "vit_mae" else out.pooler_output
  want = torch_run().numpy()
  sides, flops = {}, {}
  for dtype in ["float32"] + (["bfloat16"] if FLAGS.bfloat16 else []):
    sides[f"jmt_jax {dtype}"], flops[dtype] = versus_transformers.jax_side(
        encoder, variables, jnp.asarray(x), getattr(jnp, dtype), method=frames_embedded,
        flops_method=encoder.embed_frames)
  got = np.asarray(sides["jmt_jax float32"]())
  print(f"pooled embeddings, jmt_jax float32 vs transformers: max |diff| "
        f"{np.abs(got - want).max():.2e}")
  sides[versus_transformers.TORCH_SIDE] = torch_run
  versus_transformers.time_sides(sides, flops, FLAGS.batch, "frames", FLAGS.rounds,
                                 f"{family} Base forward, batch {FLAGS.batch} x 224x224")


def main(argv):
  del argv
  library_logs.quiet()
  if FLAGS.family not in vit.FAMILIES:
    sys.exit(f"error: --family={FLAGS.family!r}: use one of {list(vit.FAMILIES)}")
  torch, transformers = versus_transformers.import_torch(FLAGS.threads)
  with tempfile.TemporaryDirectory() as directory:
    speed(torch, FLAGS.family, *build(torch, transformers, FLAGS.family, directory))


def _define_flags():
  flags.DEFINE_string("family", "clip", f"One of {list(vit.FAMILIES)}.")
  flags.DEFINE_integer("batch", 32, "Frames per batch.")
  flags.DEFINE_integer("rounds", 3, "Alternations of the sides.")
  flags.DEFINE_integer("threads", 0, "PyTorch threads (0: every core).")
  flags.DEFINE_bool("bfloat16", True, "Also time jmt_jax in bfloat16.")


if __name__ == "__main__":
  cli.app_run(main, _define_flags)
