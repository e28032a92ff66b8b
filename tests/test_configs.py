"""Every config in configs/ builds, and trains and evaluates one step in its tiny variant."""

import glob
import json
import os

import jax
import pytest

from conftest import CONFIG_DIR
from conftest import load_config
from conftest import load_config_module
from jmt_jax import train
from jmt_jax.models import model as model_lib

CONFIG_NAMES = sorted(os.path.splitext(os.path.basename(p))[0]
                      for p in glob.glob(os.path.join(CONFIG_DIR, "*.py")))


def test_all_configs_found():
  assert {"demo", "affwild2", "biovid"} <= set(CONFIG_NAMES)


@pytest.mark.parametrize("name", CONFIG_NAMES)
def test_every_variant_builds_at_full_size(name):
  """Full-size models are only shape-traced (no FLOPs), so paper sizes stay checked."""
  for variant in load_config_module(name).VARIANTS:
    config = load_config(name, variant)
    model = model_lib.build_model(config.model)
    c = config.input
    batch = {}
    for m in config.model.modalities:
      spec = c.modalities[m]
      if spec.kind == "frames":
        size = config.data.render.frame_size
        shape, dtype = (1, c.num_clips, spec.frames_per_clip, size, size, 3), jax.numpy.uint8
      elif spec.kind == "logmel":
        n = round(spec.window_seconds * config.data.render.audio_rate)
        shape, dtype = (1, c.num_clips, spec.n_mels, 1 + n // spec.hop_length), jax.numpy.float32
      else:
        n = round(spec.window_seconds * config.data.render.bio_rate)
        shape, dtype = (1, c.num_clips, n, len(spec.channels)), jax.numpy.float32
      batch[m] = jax.ShapeDtypeStruct(shape, dtype)
    out = jax.eval_shape(lambda b: model.init_with_output(  # pylint: disable=cell-var-from-loop
        {"params": jax.random.key(0), "dropout": jax.random.key(1)}, b)[0], batch)
    assert out, (name, variant)


@pytest.mark.parametrize("name", CONFIG_NAMES)
def test_tiny_variant_trains_one_step(name, tiny_config, tmp_path):
  config = tiny_config(name, "tiny")
  config.train.num_steps = 1
  scores = train.train_and_evaluate(config, str(tmp_path))
  key = "ccc_mean" if config.task == "valence_arousal" else "accuracy"
  assert key in scores
  with open(tmp_path / "eval" / f"{config.eval.split}_step1.json") as f:
    assert json.load(f)["step"] == 1
  lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
  assert any("train/loss" in json.loads(line) for line in lines)
  assert glob.glob(str(tmp_path / "tensorboard" / "events.out.tfevents.*"))
  # --mode=eval on the trained workdir scores the same checkpoint the same way.
  again = train.evaluate_workdir(config, str(tmp_path), config.eval.split)
  assert again == pytest.approx(scores, nan_ok=True)
