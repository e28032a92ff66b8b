"""The frozen-backbone feature cache gives the predictions and the training of running
the frozen backbones on every step."""

import json

import numpy as np
import pytest

from conftest import module_command
from conftest import run
from jmt_jax import experiment
from jmt_jax.data import clips as clips_lib
from jmt_jax.evaluation import scoring
from jmt_jax.features import cache as cache_lib
from jmt_jax.features import extract
from jmt_jax.models import model as model_lib
from jmt_jax.runtime import sharding
from jmt_jax.training import train
from jmt_jax.weights import init_from

pytestmark = pytest.mark.xdist_group("features")  # its module fixtures are built once


def _config(tiny_config, cache_dir, arg="tiny", **args):
  config = tiny_config("affwild2", arg)
  config.model.freeze_backbones = True
  config.input.augment = {}  # a cached clip has one embedding: no augmentation
  config.train.update(num_steps=3, batch_size=4, eval_every=3, checkpoint_every=3)
  config.feature_cache = str(cache_dir)
  for k, v in args.items():
    config[k] = v
  return config


@pytest.fixture(scope="module")
def cache(tmp_path_factory, data_dir):
  cache_dir = tmp_path_factory.mktemp("cache") / "features"
  proc = run(module_command(
      "jmt_jax.features.extract", "--config=configs/affwild2.py:tiny",
      f"--config.data.data_dir={data_dir}", f"--config.feature_cache={cache_dir}",
      "--config.model.freeze_backbones=true", "--config.compilation_cache_dir="))
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "feature cache written" in proc.stdout
  return cache_dir


@pytest.mark.slow
def test_cached_predictions_equal_end_to_end_frozen_predictions(tiny_config, cache):
  config = _config(tiny_config, cache)
  model = model_lib.build_model(config)
  variables = init_from.starting_variables(model, config)
  end_to_end = experiment.Data(_config(tiny_config, ""))
  cached = experiment.Data(config)
  cached.cache.check_backbones(variables["params"], variables["batch_stats"])
  mesh = sharding.Mesh(config)
  results = []
  for data in (end_to_end, cached):
    predict = experiment.make_predict(model, config.task, data.from_embeddings)
    results.append(scoring.predict_split(
        lambda b, p=predict: p(variables, b), data.source("validation", train=False),
        config.eval.batch_size, mesh.make_global, 1))
  (p_e2e, l_e2e), (p_cache, l_cache) = results
  assert type(cached.source("validation", train=False)).__name__ == "CachedWindowSource"
  for k in l_e2e:
    np.testing.assert_array_equal(l_e2e[k], l_cache[k])
  for k in p_e2e:
    np.testing.assert_allclose(p_cache[k], p_e2e[k], rtol=1e-5, atol=1e-6)
  assert len(l_e2e["frame"]) > 0


@pytest.mark.slow
def test_training_from_the_cache_matches_end_to_end(tiny_config, cache, tmp_path):
  scores = {}
  for name, cache_dir in (("end_to_end", ""), ("cached", cache)):
    scores[name] = train.train_and_evaluate(_config(tiny_config, cache_dir), str(tmp_path / name))
  losses = {name: [json.loads(l)["train/loss"]
                   for l in (tmp_path / name / "metrics.jsonl").read_text().splitlines()
                   if "train/loss" in l] for name in scores}
  np.testing.assert_allclose(losses["cached"], losses["end_to_end"], rtol=1e-4)
  assert scores["cached"] == pytest.approx(scores["end_to_end"], rel=1e-4, abs=1e-5)


@pytest.mark.slow
def test_a_cache_of_other_backbones_is_refused(tiny_config, cache, tmp_path):
  config = _config(tiny_config, cache, seed=7)  # other random backbones than the cache's
  with pytest.raises(ValueError, match="other backbone weights than this run's"):
    train.train_and_evaluate(config, str(tmp_path / "w"))
  config = _config(tiny_config, cache)
  config.input.modalities.audio.n_mels = 8
  with pytest.raises(ValueError, match="extracted with other backbones, inputs or data"):
    experiment.Data(config)
  config = _config(tiny_config, tmp_path / "nothing")
  with pytest.raises(FileNotFoundError, match="python -m jmt_jax.features.extract"):
    experiment.Data(config)


VIT = "tiny,video_backbone=vit,vit_temporal=transformer"


@pytest.mark.slow
def test_a_frame_encoder_is_cached_once_per_frame_and_trains_as_end_to_end(tiny_config,
                                                                           tmp_path):
  """A frozen ViT's embeddings are stored once per frame the clips hold, fewer than the
  clips' frames, and training its temporal model and the fusion on them scores as
  running the ViT on every step does."""
  config = _config(tiny_config, tmp_path / "cache", VIT)
  index = extract.extract_config(config)
  spec = config.input.modalities.video
  passes = {"per frame": 0, "per clip": 0}
  for recordings in index["stores"].values():
    for entry in recordings.values():
      ends = cache_lib.unruns(entry["ends"])
      frames = cache_lib.unruns(entry["frames"]["video"]["frames"])
      np.testing.assert_array_equal(frames, np.unique(clips_lib.frame_indices(
          ends, spec, config.input.clip_frames)))
      passes["per frame"] += len(frames)
      passes["per clip"] += len(ends) * spec.frames_per_clip
  assert passes["per frame"] < passes["per clip"]  # evaluation's clips overlap
  scores, losses = {}, {}
  for name, cache_dir in (("end_to_end", ""), ("cached", tmp_path / "cache")):
    workdir = tmp_path / name
    scores[name] = train.train_and_evaluate(_config(tiny_config, cache_dir, VIT), str(workdir))
    losses[name] = [json.loads(l)["train/loss"]
                    for l in (workdir / "metrics.jsonl").read_text().splitlines()
                    if "train/loss" in l]
  np.testing.assert_allclose(losses["cached"], losses["end_to_end"], rtol=1e-4)
  assert scores["cached"] == pytest.approx(scores["end_to_end"], rel=1e-4, abs=1e-5)


def test_clip_ends_round_trip_through_runs():
  for ends in ([0, 1, 2, 3], [31, 63, 95], [0, 1, 2, 5, 8, 11, 12], [7], []):
    runs = extract.runs_of(np.array(ends, np.int64))
    np.testing.assert_array_equal(cache_lib.unruns(runs), ends)
  assert extract.runs_of(np.arange(31, 3200, 32)) == [[31, 3231, 32]]  # one run per split
