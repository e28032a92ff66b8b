"""`benchmarks.frame_cache`: a frozen frame encoder's passes and embeddings, per frame
against per clip, on the tiny built-in data."""

import numpy as np

from jmt_jax.benchmarks import frame_cache
from jmt_jax.data import pipeline
from jmt_jax.models import model as model_lib
from jmt_jax.weights import init_from


def test_passes_per_frame_are_fewer_and_embed_the_same(tiny_config):
  config = tiny_config("affwild2", "tiny,video_backbone=vit")
  dataset = pipeline.open_dataset(config.data)
  passes = frame_cache.passes(config, dataset, "video")
  (epoch, none), extraction, prediction = passes.values()
  assert none is None and epoch > 0
  f = config.input.modalities.video.frames_per_clip
  assert extraction[1] < extraction[0] and prediction == (prediction[1] * f, prediction[1])
  model = model_lib.build_model(config)
  per_clip_s, per_frame_s, diff = frame_cache.timing(
      config, model, init_from.starting_variables(model, config), dataset, "video", 6)
  assert per_clip_s > 0 and per_frame_s > 0 and diff < 1e-5
  assert np.isfinite(diff)
