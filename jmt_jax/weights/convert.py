"""Convert PyTorch state dicts into a jmt_jax checkpoint of initial weights.

  python -m jmt_jax.weights.convert --config=configs/affwild2.py:jmt --out=weights/affwild2 \\
      --weights=video_backbone=vision_r2d1.pt --weights=audio_backbone=audio_resnet18.pt \\
      --weights=fusion+head=fusion_w.pt

Each `--weights=GROUPS=FILE[,FILE...]` fills the parameter groups GROUPS (`+`-separated:
`<modality>_backbone`, `<modality>_intra_fusion`, `fusion`, `head`) from FILE
(.safetensors; .pth/.pt/.bin when PyTorch is installed; a transformers checkpoint folder,
whose config.json must describe the configured speech encoder); several files are read
as one state dict, as for the authors' flatten reduction, saved apart from its backbone
(`--weights=video_backbone=vision_r2d1.pt,vision_r2d1_fc.pt`), or a pair of backbones
(`--weights=audio_backbone=audio_resnet18.pt,weights/wavlm-base-plus`). Key names and layouts:
jmt_jax/weights/torch_layout.py. A file must provide every
parameter of its groups with the right shape; keys it has beyond those are an error
unless the public code is known to carry them unused (classifier heads, BatchNorm
counters...), and those are listed. Train from the result with
`--config=...:init_from=weights/affwild2` (which also freezes the backbones).
"""

import os
import sys

from absl import app
from absl import flags
from ml_collections import config_flags

from jmt_jax.runtime import cli
from jmt_jax.runtime import library_logs
from jmt_jax.weights import torch_import

FLAGS = flags.FLAGS


def _parse_weights(specs):
  sources = []
  for spec in specs:
    groups, sep, path = spec.partition("=")
    if not sep or not groups or not path:
      raise torch_import.ConversionError(
          f"--weights={spec!r}: expected GROUPS=FILE[,FILE...], e.g. "
          f"video_backbone=r2plus1d.pth")
    sources.append((tuple(groups.split("+")), tuple(path.split(","))))
  if not sources:
    raise torch_import.ConversionError("no --weights given")
  return sources


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  library_logs.quiet()
  try:
    variables, manifest = torch_import.convert(FLAGS.config, _parse_weights(FLAGS.weights))
  except (ValueError, OSError) as e:
    sys.exit(f"error: {e}")
  torch_import.save(variables, manifest, FLAGS.out)
  for src in manifest["sources"]:
    print(f"{'+'.join(src['groups'])}: {src['loaded']} tensors from {src['file']}"
          + (f" (prefix {src['prefix']!r})" if src["prefix"] else ""))
    for note in src["adapted"]:
      print(f"  adapted {note}")
    counters = [k for k in src["ignored"] if k.endswith("num_batches_tracked")]
    unused = [k for k in src["ignored"] if k not in counters]
    if counters:
      print(f"  ignored {len(counters)} BatchNorm step counters (num_batches_tracked)")
    if unused:
      print(f"  ignored, unused by the public code: {torch_import.names(unused)}")
    for group, n in src["left_for"].items():
      print(f"  left for {group} (not converted from this file): {n} tensors")
    if src["outside_prefix"]:
      print(f"  ignored, outside the prefix: {torch_import.names(src['outside_prefix'])}")
  print(f"wrote {os.path.abspath(FLAGS.out)}")


def _define_flags():
  config_flags.DEFINE_config_file("config", None, "Config whose model the weights fill.")
  flags.DEFINE_string("out", None, "Directory for the converted checkpoint.")
  flags.DEFINE_multi_string(
    "weights", [], "GROUPS=FILE[,FILE...]: parameter groups ('+'-separated) and the state "
    "dict for them (several files: read as one).")
  flags.mark_flags_as_required(["config", "out"])


if __name__ == "__main__":
  cli.app_run(main, _define_flags)
