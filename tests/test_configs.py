"""Every config in configs/ builds, and trains and evaluates one step in its tiny variant."""

import glob
import json
import os

import jax
import numpy as np
import optax
import pytest

from conftest import ROOT
from conftest import load_config
from jmt_jax import config_args
from jmt_jax import tasks
from jmt_jax import workdir as workdir_lib
from jmt_jax.data import pipeline
from jmt_jax.evaluation import scoring
from jmt_jax.models import model as model_lib
from jmt_jax.models import variables
from jmt_jax.training import train

CONFIG_NAMES = sorted(os.path.splitext(os.path.basename(p))[0]
                      for p in glob.glob(os.path.join(ROOT, "configs", "*.py")))


def test_all_configs_found():
  assert {"demo", "affwild2", "biovid"} <= set(CONFIG_NAMES)


# Backbone choices beyond the variants, checked the same way.
EXTRA_ARGS = {"affwild2": ("jmt,video_backbone=i3d", "jmt,audio_backbone=resnet18+wavlm",
                          "jmt,video_backbone=r2plus1d+i3d,intra_fusion=concat_fc",
                          "jmt,audio_backbone=wav2vec2,speech_layer=all,speech_size=large",
                          "jmt,video_backbone=vit,vit_temporal=transformer",
                          "jmt,video_backbone=vit,vit_family=dinov2,vit_temporal=conv"),
              "biovid": ("jmt,video_backbone=vit,vit_family=vit_mae,vit_temporal=max",)}


def _args(name):
  return tuple(config_args.module(f"configs/{name}.py").VARIANTS) + EXTRA_ARGS.get(name, ())


def test_tiny_leaves_the_arguments_given_explicitly():
  default = load_config("biovid", "tiny")
  assert (default.data.protocol.num_folds, default.model.head.num_classes) == (3, 5)
  given = load_config("biovid", "tiny,num_folds=2,classes=binary")
  assert (given.data.protocol.num_folds, given.model.head.num_classes) == (2, 2)
  assert tuple(given.input.pain_classes) == (0, 4)
  assert config_args.given("jmt,tiny, num_folds=2") == {"jmt", "tiny", "num_folds"}


@pytest.mark.parametrize("name", CONFIG_NAMES)
def test_every_variant_builds_at_full_size(name):
  """Full-size models are only shape-traced (no FLOPs), so paper sizes stay checked."""
  for arg in _args(name):
    config = load_config(name, arg)
    out = variables.abstract(model_lib.build_model(config), config)
    assert out["params"], (name, arg)


@pytest.mark.slow
@pytest.mark.parametrize("name", CONFIG_NAMES)
def test_every_tiny_variant_fusion_and_head_take_a_gradient_step(name, tiny_config):
  """Each variant's fusion and head (and intra-modal fusions) on random embeddings and a
  real batch's labels: a finite loss and a non-zero gradient for each. (The backbones'
  compile time would dominate; test_tiny_variant_trains_one_step runs whole models.)"""
  for arg in _args(name):
    config = tiny_config(name, arg + ",tiny")
    dataset = pipeline.open_dataset(config.data)
    source = pipeline.window_source(dataset, "train", config.input, config.model.modalities,
                                    train=True)
    batch = jax.tree.map(lambda x: np.asarray(x)[None], source[0])
    # The config-only input shapes (used to convert weights) are what the readers produce.
    for m, spec in model_lib.input_spec(config).items():
      assert (batch[m].shape, batch[m].dtype) == (spec.shape, spec.dtype), (name, arg, m)
    t = config.input.num_clips
    model = model_lib.build_model(config)
    embeddings = {m: jax.random.normal(jax.random.key(i), (1, t, model_lib.clip_embedding_width(
        config, m))) for i, m in enumerate(config.model.modalities)}
    rngs = {"params": jax.random.key(0), "dropout": jax.random.key(1)}
    # fuse's groups: the intra-modal fusions, the fusion (none for the paper's unimodal
    # baselines, backbone + head) and the head.
    params = model.init(rngs, embeddings, method=model.fuse)["params"]

    def loss_fn(p):
      out = model.apply({"params": p}, embeddings, train=True,  # pylint: disable=cell-var-from-loop
                        rngs={"dropout": jax.random.key(2)}, method=model.fuse)  # pylint: disable=cell-var-from-loop
      task = tasks.get(config.task)  # pylint: disable=cell-var-from-loop
      return task.loss_from_sums(task.loss_sums(out, batch))[0]

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
  assert workdir_lib.read_config(str(tmp_path)).to_dict() == json.loads(config.to_json_best_effort())
  picture = "trajectories" if config.task == "valence_arousal" else "confusion"
  for name in ("curves.png", f"{config.eval.split}_{picture}.png"):
    assert (tmp_path / "plots" / name).read_bytes()[:4] == b"\x89PNG"
  # --mode=eval on the trained workdir scores the same checkpoint the same way.
  again = scoring.evaluate_workdir(config, str(tmp_path), config.eval.split)
  assert again == pytest.approx(scores, nan_ok=True)
  # It may score with other smoothing, which its file records; another model is refused.
  smoothed = config.copy_and_resolve_references()
  smoothed.eval.smoothing.valence = 3
  scoring.evaluate_workdir(smoothed, str(tmp_path), config.eval.split)
  with open(tmp_path / "eval" / f"{config.eval.split}_step1.json") as f:
    assert json.load(f)["settings"]["smoothing"]["valence"] == 3
  other = config.copy_and_resolve_references()
  other.model.head.mlp = (7,)
  with pytest.raises(ValueError, match="belongs to another run: model.head.mlp is"):
    scoring.evaluate_workdir(other, str(tmp_path), config.eval.split)


def test_default_aff_wild2_config_is_unchanged_by_the_backbone_options():
  """Without a second backbone or a speech encoder there is no intra-modal fusion entry,
  so that workdirs trained before those options existed keep their config (and resume)."""
  for arg in ("jmt", "video,video_backbone=i3d"):
    assert "intra_fusion" not in load_config("affwild2", arg).model
  assert "intra_fusion" in load_config("affwild2", "audio_backbone=resnet18+wavlm").model
