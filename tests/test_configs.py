"""Every config in configs/ builds, and trains and evaluates one step in its tiny variant."""

import glob
import json
import os

import jax
import numpy as np
import optax
import pytest

from conftest import CONFIG_DIR
from conftest import load_config
from conftest import load_config_module
from jmt_jax import tasks
from jmt_jax.data import pipeline
from jmt_jax.models import fusion as fusion_lib
from jmt_jax.models import heads
from jmt_jax.models import model as model_lib
from jmt_jax.training import train
from jmt_jax.weights import torch_import

CONFIG_NAMES = sorted(os.path.splitext(os.path.basename(p))[0]
                      for p in glob.glob(os.path.join(CONFIG_DIR, "*.py")))


def test_all_configs_found():
  assert {"demo", "affwild2", "biovid"} <= set(CONFIG_NAMES)


# Backbone choices beyond the variants, checked the same way.
EXTRA_ARGS = {"affwild2": ("jmt,video_backbone=i3d",)}


def _args(name):
  return tuple(load_config_module(name).VARIANTS) + EXTRA_ARGS.get(name, ())


@pytest.mark.parametrize("name", CONFIG_NAMES)
def test_every_variant_builds_at_full_size(name):
  """Full-size models are only shape-traced (no FLOPs), so paper sizes stay checked."""
  for arg in _args(name):
    out = torch_import.abstract_variables(load_config(name, arg))
    assert out["params"], (name, arg)


@pytest.mark.slow
@pytest.mark.parametrize("name", CONFIG_NAMES)
def test_every_tiny_variant_fusion_and_head_take_a_gradient_step(name, tiny_config):
  """Each variant's fusion and head on random embeddings and a real batch's labels: a
  finite loss and a non-zero gradient for each. (The backbones' compile time would
  dominate; test_tiny_variant_trains_one_step runs whole models.)"""
  for arg in _args(name):
    config = tiny_config(name, arg + ",tiny")
    dataset = pipeline.open_dataset(config.data)
    source = pipeline.window_source(dataset, "train", config.input, config.model.modalities,
                                    train=True)
    batch = jax.tree.map(lambda x: np.asarray(x)[None], source[0])
    # The config-only input shapes (used to convert weights) are what the readers produce.
    for m, spec in pipeline.input_spec(config).items():
      assert (batch[m].shape, batch[m].dtype) == (spec.shape, spec.dtype), (name, arg, m)
    t = config.input.num_clips
    embeddings = [jax.random.normal(jax.random.key(i), (1, t, model_lib.build_backbone(
        config.model.backbones[m], m).out_dim)) for i, m in enumerate(config.model.modalities)]
    fusion, _ = fusion_lib.build_fusion(config.model.fusion)
    head = heads.build_head(config.model.head)
    rngs = {"params": jax.random.key(0), "dropout": jax.random.key(1)}
    fused, fusion_vars = fusion.init_with_output(rngs, *embeddings)
    # The paper's unimodal baselines have no fusion parameters (backbone + head).
    params = {"fusion": fusion_vars.get("params", {}), "head": head.init(rngs, fused)["params"]}

    def loss_fn(p):
      out = head.apply({"params": p["head"]},  # pylint: disable=cell-var-from-loop
                       fusion.apply({"params": p["fusion"]}, *embeddings),  # pylint: disable=cell-var-from-loop
                       train=True, rngs={"dropout": jax.random.key(2)})
      return tasks.loss(tasks.get(config.task), out, batch)[0]  # pylint: disable=cell-var-from-loop

    loss, grads = jax.jit(jax.value_and_grad(loss_fn))(params)
    assert np.isfinite(loss), (name, arg)
    for group, g in grads.items():
      norm = optax.tree.norm(g)
      assert np.isfinite(norm) and (norm > 0 or not jax.tree.leaves(g)), (name, arg, group)


@pytest.mark.slow
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
  assert train.read_config(str(tmp_path)).to_dict() == json.loads(config.to_json_best_effort())
  picture = "trajectories" if config.task == "valence_arousal" else "confusion"
  for name in ("curves.png", f"{config.eval.split}_{picture}.png"):
    assert (tmp_path / "plots" / name).read_bytes()[:4] == b"\x89PNG"
  # --mode=eval on the trained workdir scores the same checkpoint the same way.
  again = train.evaluate_workdir(config, str(tmp_path), config.eval.split)
  assert again == pytest.approx(scores, nan_ok=True)
