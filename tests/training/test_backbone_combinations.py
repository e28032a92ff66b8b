"""Every backbone combination of a modality (a speech encoder alone or beside the
log-mel ResNet, two face backbones, a weighted sum of hidden states) trains a step end
to end in its tiny form: a finite loss and a gradient reaching every parameter group."""

import jax
import numpy as np
import optax
import pytest

import raw_trees
from jmt_jax import experiment
from jmt_jax import workdir as workdir_lib
from jmt_jax.errors import BadInput
from jmt_jax.evaluation import scoring
from jmt_jax.features import extract
from jmt_jax.inference import export
from jmt_jax.inference import exported
from jmt_jax.inference import predictor as predictor_lib
from jmt_jax.models import model as model_lib
from jmt_jax.training import train
from jmt_jax.training import train_step

COMBINATIONS = (
    "audio,audio_backbone=wavlm",
    "audio,audio_backbone=wav2vec2,speech_layer=all",
    "audio,audio_backbone=hubert,speech_layer=1",
    "audio,audio_backbone=resnet18+wavlm",
    "audio,audio_backbone=resnet18+hubert,intra_fusion=concat_fc",
    "audio,audio_backbone=resnet18+wav2vec2,speech_layer=all",
)


def _step_gradients(config):
  model = model_lib.build_model(config)
  src = experiment.Data(config).source("train", train=True)
  batch = jax.tree.map(lambda *x: np.stack(x), *[src[i] for i in range(2)])
  sgd = optax.sgd(1.0)  # the update is -grad
  state = train.initial_state(model, sgd, config, None)
  step = jax.jit(train_step.make_train_step(model, sgd, config.task, 1, False))
  new, logs = step(state, batch)
  return logs, jax.tree.map(lambda a, b: np.asarray(a - b), state.params, new.params)


def _check(config, arg):
  logs, grads = _step_gradients(config)
  assert np.isfinite(float(logs["loss"])), arg
  for group, g in grads.items():
    assert float(optax.tree.norm(g)) > 0, (arg, group)


@pytest.mark.parametrize("arg", COMBINATIONS)
def test_backbone_combination_trains_a_step(tiny_config, arg):
  _check(tiny_config("affwild2", f"tiny,{arg}"), arg)


@pytest.mark.slow
def test_two_face_backbones_train_a_step(tiny_config):
  """R(2+1)D beside I3D (whose trunk is full size even in tiny: slow on a CPU)."""
  arg = "video_backbone=r2plus1d+i3d,intra_fusion=concat_fc"
  _check(tiny_config("affwild2", f"tiny,{arg}"), arg)


def _speaker_video(config, tmp_path, num_frames=40):
  """An MP4 of a moving face with a speech-like 16 kHz track, at the config's frame rate."""
  fps = config.data.render.fps
  frames, _ = raw_trees.moving_face_video(num_frames)
  video = str(tmp_path / "speaker.mp4")
  raw_trees.write_video(video, frames, fps, audio=raw_trees.speech_like(
      int(num_frames / fps * 16000), 16000), audio_rate=16000)
  return video


@pytest.mark.slow
def test_resnet18_plus_wavlm_runs_through_cache_training_evaluation_and_prediction(
    tiny_config, tmp_path):
  """The authors' README configuration on the built-in data, a random-init tiny WavLM:
  embeddings extracted once, the fusion trained on them, scored, a recording of a face
  with speech predicted from the workdir, and the model exported (lowered for CPU, CUDA
  and TPU) giving the workdir's outputs."""
  config = tiny_config("affwild2", "tiny,audio_backbone=resnet18+wavlm")
  config.model.freeze_backbones = True
  config.input.augment = {}  # a cached clip has one embedding
  config.train.update(num_steps=2, batch_size=2, eval_every=2, checkpoint_every=2)
  config.feature_cache = str(tmp_path / "features")
  index = extract.extract_config(config)
  assert set(index["splits"]) == {"train", "validation"}
  workdir = str(tmp_path / "workdir")
  scores = train.train_and_evaluate(config, workdir)
  assert np.isfinite(scores["ccc_mean"])
  again = scoring.evaluate_workdir(config, workdir, config.eval.split)
  assert again == pytest.approx(scores)
  result = predictor_lib.Predictor(workdir).predict(_speaker_video(config, tmp_path),
                                                    progress=False)
  assert result.num_frames == 40 and result.found["audio_found"].all()
  for dim in ("valence", "arousal"):
    assert np.isfinite(result.values[dim]).all() and np.ptp(result.values[dim]) > 0
  signature = export.export_workdir(workdir, str(tmp_path / "export"))
  assert signature["platforms"] == ["cpu", "cuda", "tpu"]
  raw = config.copy_and_resolve_references()
  raw.feature_cache = ""  # the recordings' inputs, not the cache's embeddings
  src = experiment.Data(raw).source("validation", train=False)
  batch = {m: np.stack([src[i][m] for i in range(2)]) for m in config.model.modalities}
  model = model_lib.build_model(config)
  _, trained = workdir_lib.restore_variables(config, workdir, model)
  want = model.apply({"params": trained["params"], "batch_stats": trained["batch_stats"]}, batch)
  got = exported.load(str(tmp_path / "export"))(batch)
  for dim in ("valence", "arousal"):
    np.testing.assert_allclose(got[dim], np.asarray(want[dim]), atol=1e-5)


def _write_features(config, directory, dim):
  """One .npy per clip end of every recording of the built-in data, as the authors'
  extraction leaves them; returns the files."""
  dataset = experiment.Data(config).dataset
  rng = np.random.default_rng(0)
  files = []
  for split in ("train", "validation"):
    table = dataset.splits[split].table
    for name, n in zip(table.names, table.num_frames):
      for end in range(int(n)):
        path = directory / name / f"{end + 1:05d}.npy"
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, rng.standard_normal(dim).astype(np.float32))
        files.append(path)
  return files


@pytest.mark.parametrize("variant", ["audio", pytest.param("jmt", marks=pytest.mark.slow)])
def test_features_extracted_elsewhere_train_and_a_missing_file_is_named(tiny_config, tmp_path,
                                                                        variant):
  directory = tmp_path / "wavlm_features"
  arg = f"tiny,{variant},audio_backbone=precomputed,features_dir={directory},features_dim=6"
  config = tiny_config("affwild2", arg)
  files = _write_features(tiny_config("affwild2", "tiny"), directory, 6)
  _check(config, arg)
  files[0].unlink()
  with pytest.raises(BadInput, match=rf"{files[0]}: missing: no precomputed features of the "
                                     rf"clip of {files[0].parent.name} ending at frame 1"):
    src = experiment.Data(config).source("train", train=False)
    for i in range(len(src)):
      src[i]  # pylint: disable=pointless-statement


@pytest.mark.slow
def test_chunked_speech_context_fills_the_feature_cache_and_needs_one(tiny_config, tmp_path):
  """A recording's voice encoded once in chunks: the cache's speech part comes from the
  chunks, the ResNet's part is the per-clip one, the fusion trains from it; without a
  cache the config is refused."""
  caches = {}
  for chunk in (0, 1):
    config = tiny_config("affwild2", f"tiny,audio,audio_backbone=resnet18+wavlm,"
                                     f"speech_chunk_seconds={chunk}")
    config.model.freeze_backbones = True
    config.input.augment = {}
    config.train.update(num_steps=2, batch_size=2, eval_every=2, checkpoint_every=2)
    if chunk:
      with pytest.raises(ValueError, match=r"chunked speech context \(chunk_seconds > 0\)"):
        experiment.Data(config)
    config.feature_cache = str(tmp_path / f"chunk{chunk}")
    extract.extract_config(config)
    src = experiment.Data(config).source("validation", train=False)
    caches[chunk] = np.stack([src[i]["embeddings"]["audio"] for i in range(len(src))])
  width = 16  # the tiny ResNet's; the tiny WavLM's 12 follow
  np.testing.assert_allclose(caches[1][..., :width], caches[0][..., :width], rtol=1e-6)
  speech_part = caches[1][..., width:]
  assert np.isfinite(speech_part).all() and np.abs(speech_part - caches[0][..., width:]).max() > 0
  scores = train.train_and_evaluate(config, str(tmp_path / "workdir"))
  assert np.isfinite(scores["ccc_mean"])
  # A recording predicts too: its clips stream through the ResNet, and the voice's chunked
  # embeddings are filled in from the whole recording once it is decoded.
  result = predictor_lib.Predictor(str(tmp_path / "workdir")).predict(
      _speaker_video(config, tmp_path), progress=False)
  assert np.isfinite(result.values["valence"]).all()
