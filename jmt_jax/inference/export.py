"""Export a trained workdir's inference function as serialized StableHLO (`jax.export`).

  python -m jmt_jax.inference.export --workdir=workdirs/demo --out=exported/demo

Writes to --out: `model.jaxexport` (the model on a batch of windows, batch size
symbolic, lowered for CPU, CUDA and TPU), `variables.npz` (its weights), `config.json`
(the training config) and `signature.json` (input names, shapes and dtypes, outputs).
`jmt_jax/inference/exported.py` runs it with JAX and numpy alone; it imports nothing else of
jmt_jax, so it can be copied next to the export and used without this package.
"""

import json
import os

import jax
import numpy as np
from absl import app
from absl import flags
from jax import export as jax_export
from ml_collections import config_flags

from jmt_jax import workdir as workdir_lib
from jmt_jax.inference import exported
from jmt_jax.models import model as model_lib
from jmt_jax.models import variables as variables_lib
from jmt_jax.runtime import cli

FLAGS = flags.FLAGS


PLATFORMS = ("cpu", "cuda", "rocm", "tpu")  # what jax.export lowers for


def check_platforms(platforms):
  for p in platforms:
    if p == "gpu":
      raise ValueError("--platforms: 'gpu' is not a platform of jax.export: use cuda (NVIDIA "
                       "GPUs) or rocm (AMD GPUs)")
    if p not in PLATFORMS:
      raise ValueError(f"--platforms: unknown platform {p!r}; use some of {list(PLATFORMS)}")
  if not platforms:
    raise ValueError(f"--platforms: name at least one of {list(PLATFORMS)}")


def export_model(config, platforms):
  """The `jax.export.Exported` of the model of `config` on a batch of windows (batch size
  symbolic) for `platforms`, taking float32 variables ({params, batch_stats}): on each
  platform the model `build_model(config, platform)` makes, so that `auto` choices
  (compute dtype, 3-D convolutions) are the platform's, whatever host exports."""
  check_platforms(platforms)
  models = {p: model_lib.build_model(config, p) for p in platforms}

  def applying(model):
    return lambda v, x: model.apply(variables_lib.cast(model, v["params"], v["batch_stats"]), x)

  if len({model.config for model in models.values()}) == 1:
    apply = applying(models[platforms[0]])
  else:
    branches = {p: applying(model) for p, model in models.items()}
    apply = lambda v, x: jax.lax.platform_dependent(v, x, **branches)
  batch = jax_export.symbolic_shape("batch")[0]
  inputs = {m: jax.ShapeDtypeStruct((batch,) + s.shape[1:], s.dtype)
            for m, s in model_lib.input_spec(config).items()}
  abstract = variables_lib.abstract(models[platforms[0]], config)
  return jax_export.export(jax.jit(apply), platforms=tuple(platforms))(abstract, inputs)


def export_workdir(workdir, out_dir, platforms=("cpu", "cuda", "tpu"), config=None):
  """Writes the export of `workdir`'s newest checkpoint to `out_dir`; returns its signature.
  `config`: the training config, for a workdir without config.json."""
  check_platforms(platforms)
  config = config if config is not None else workdir_lib.read_config(workdir)
  exp = export_model(config, platforms)
  model = model_lib.build_model(config)
  step, trained = workdir_lib.restore_variables(config, workdir, model)
  variables = {"params": trained["params"], "batch_stats": trained["batch_stats"]}
  signature = {
      "inputs": {m: {"shape": [None, *s.shape[1:]], "dtype": np.dtype(s.dtype).name}
                 for m, s in jax.tree.unflatten(exp.in_tree, exp.in_avals)[0][1].items()},
      "outputs": {k: {"shape": [None, *s.shape[1:]], "dtype": np.dtype(s.dtype).name}
                  for k, s in jax.tree.unflatten(exp.out_tree, exp.out_avals).items()},
      "task": config.task, "step": int(step), "platforms": list(platforms),
  }
  serialized = exp.serialize()
  os.makedirs(out_dir, exist_ok=True)
  with open(os.path.join(out_dir, exported.MODEL), "wb") as f:
    f.write(serialized)
  np.savez(os.path.join(out_dir, exported.VARIABLES),
           **exported.flatten(jax.device_get(variables)))
  workdir_lib.write_config(config, out_dir)
  with open(os.path.join(out_dir, exported.SIGNATURE), "w", encoding="utf-8") as f:
    json.dump(signature, f, indent=2)
  return signature


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  signature = cli.run(None, lambda: export_workdir(FLAGS.workdir, FLAGS.out, FLAGS.platforms,
                                                   FLAGS.config))
  print(f"Exported step {signature['step']} to {FLAGS.out}: inputs "
        f"{ {m: s['shape'] for m, s in signature['inputs'].items()} }")


def _define_flags():
  flags.DEFINE_string("workdir", None, "A training workdir (checkpoints/ and config.json).")
  flags.DEFINE_string("out", None, "Directory to write the export to.")
  flags.DEFINE_list("platforms", ["cpu", "cuda", "tpu"], f"Platforms to lower for, of "
                    f"{', '.join(PLATFORMS)}.")
  config_flags.DEFINE_config_file(
    "config", None, "Config file for workdirs without config.json (trained before it was "
    "written), e.g. configs/demo.py:tiny.", lock_config=True)
  flags.mark_flags_as_required(["workdir", "out"])


if __name__ == "__main__":
  cli.app_run(main, _define_flags)
