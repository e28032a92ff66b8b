"""Print a model's parameter counts per module and in total (PyTorch's convention:
trainable parameters, not BatchNorm statistics).

  python -m jmt_jax.weights.param_counts --config=configs/affwild2.py:jmt [--depth=2]
"""

import math

from absl import app
from absl import flags
from ml_collections import config_flags

from jmt_jax.models import model as model_lib
from jmt_jax.models import variables
from jmt_jax.runtime import cli

FLAGS = flags.FLAGS


def counts(params, depth):
  """[(module path, parameter count)] down to `depth` levels, parents before children."""
  rows = []

  def visit(tree, path):
    total = sum(visit(v, path + (k,)) if hasattr(v, "items") else math.prod(v.shape)
                for k, v in tree.items())
    if 0 < len(path) <= depth:
      rows.append((path, total))
    return total

  visit(params, ())
  return sorted(rows)


def table(config, depth):
  params = variables.abstract(model_lib.build_model(config), config)["params"]
  rows = counts(params, depth)
  total = sum(n for p, n in rows if len(p) == 1)
  lines = [f"{'  ' * (len(p) - 1)}{p[-1]:<{40 - 2 * (len(p) - 1)}} {n:>14,}" for p, n in rows]
  return "\n".join(lines + [f"{'total':<40} {total:>14,}"]), total


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  print(table(FLAGS.config, FLAGS.depth)[0])


def _define_flags():
  config_flags.DEFINE_config_file("config", None, "Config whose model to count.")
  flags.DEFINE_integer("depth", 2, "Module nesting depth to break the counts down to.")
  flags.mark_flags_as_required(["config"])


if __name__ == "__main__":
  cli.app_run(main, _define_flags)
