"""Extract the frozen backbones' embeddings of every clip into a feature cache.

  python -m jmt_jax.data.extract_features \
      --config=configs/affwild2.py:init_from=weights/affwild2,feature_cache=cache/affwild2
  python -m jmt_jax.main \
      --config=configs/affwild2.py:init_from=weights/affwild2,feature_cache=cache/affwild2 \
      --workdir=workdirs/affwild2

The backbones are the ones training would start from (`init_from`); see jmt_jax.data.features.
"""

from absl import app
from absl import flags
from ml_collections import config_flags

from jmt_jax import cli
from jmt_jax.data import features
from jmt_jax.training import experiment

FLAGS = flags.FLAGS


def extract(config):
  """Extracts the cache `config.feature_cache` names; returns its index."""
  if not config.get("feature_cache"):
    raise ValueError("set the cache directory in the config (feature_cache=DIR)")
  model = experiment.build_model(config)
  return features.extract(config, model, experiment.starting_variables(model, config),
                          config.feature_cache)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  config = FLAGS.config
  index = cli.run(config, lambda: extract(config))
  print(f"feature cache written to {config.feature_cache}: "
        f"{sum(len(r) for r in index['stores'].values())} recordings")


def _define_flags():
  config_flags.DEFINE_config_file("config", None, "Config with feature_cache set.",
                                  lock_config=True)
  flags.mark_flags_as_required(["config"])


if __name__ == "__main__":
  cli.app_run(main, _define_flags)
