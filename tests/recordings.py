"""What the inference tests predict on: the tiny demo models' initial checkpoints as
workdirs, and real recordings of a moving face with speech (fixtures in conftest.py)."""

import os
import wave

import cv2
import jax
import numpy as np

import raw_trees
from jmt_jax import config_args
from jmt_jax import workdir as workdir_lib
from jmt_jax.inference import predictor as predictor_lib
from jmt_jax.models import model as model_lib
from jmt_jax.models import variables as variables_lib
from jmt_jax.training import train

FPS = 10  # the demo data's frame rate
NO_FACE = range(20, 30)
CONFIGS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs")


def make_workdir(tmp_path_factory, data_dir, arg):
  """A workdir as training leaves it (config.json, a checkpoint), holding the initial
  state: prediction does not care how good the weights are, and compiling a training
  step would double the cost (notebooks/ predict with a trained one in test_notebooks)."""
  config = config_args.load(f"{CONFIGS}/demo.py:{arg}")
  config.data.data_dir = data_dir
  config.compilation_cache_dir = ""
  workdir = str(tmp_path_factory.mktemp("workdir"))
  model = model_lib.build_model(config)
  tx = train.make_optimizer(config.optimizer, config.train.num_steps)
  workdir_lib.write_config(config, workdir)
  mngr = workdir_lib.checkpoints(workdir, keep=1)
  workdir_lib.save(mngr, 1, train.initial_state(model, tx, config, None), None)
  mngr.wait_until_finished()
  mngr.close()
  return workdir


def make_predictor(workdir):
  """The Predictor of `workdir`, with (as `whole_model`) the whole model on a batch of
  windows with the same variables: what its streamed predictions are held to."""
  predictor = predictor_lib.Predictor(workdir)
  model = predictor.model
  _, trained = workdir_lib.restore_variables(predictor.config, workdir, model)
  cast = variables_lib.cast(model, trained["params"], trained["batch_stats"])
  apply = jax.jit(model.apply)
  predictor.whole_model = lambda batch: jax.device_get(apply(cast, batch))
  return predictor


def make_videos(root):
  """name -> (path, has_face per frame): the recordings, written in the folder `root`."""
  frames, has_face = raw_trees.moving_face_video(63, no_face=NO_FACE)
  speech = raw_trees.speech_like(int(63 / FPS * 16000), 16000)
  out = {}
  for name, codecs, audio in [("face.mp4", {}, speech),
                              ("face_no_audio.mkv", dict(vcodec="ffv1"), None),
                              ("face_silent.mkv", dict(vcodec="ffv1"), np.zeros_like(speech)),
                              ("face.webm", dict(vcodec="libvpx-vp9", acodec="libopus"), speech),
                              ("face.avi", dict(vcodec="mpeg4", acodec="pcm_s16le"), speech)]:
    rate = 48000 if codecs.get("acodec") == "libopus" else 16000
    sound = None if audio is None else (
        raw_trees.speech_like(int(63 / FPS * rate), rate) if audio.any() else audio)
    path = str(root / name)
    raw_trees.write_video(path, frames, FPS, audio=sound, audio_rate=rate, **codecs)
    out[name] = (path, has_face)
  empty, _ = raw_trees.moving_face_video(41, no_face=range(41))
  path = str(root / "no_face.mp4")
  raw_trees.write_video(path, empty, FPS, audio=speech[:int(4.1 * 16000)])
  out["no_face.mp4"] = (path, np.zeros(41, bool))
  return out


def write_fake_camera(folder, frames, fps):
  """(Y4M path, WAV path): RGB `frames` and a voice as Chromium's fake camera and
  microphone play them (`--use-file-for-fake-video-capture`, `...-audio-capture`), in a loop."""
  num_frames = len(frames)
  h, w = frames[0].shape[:2]
  video = os.path.join(folder, "camera.y4m")
  with open(video, "wb") as f:
    f.write(f"YUV4MPEG2 W{w} H{h} F{int(fps)}:1 Ip A1:1 C420jpeg\n".encode())
    for rgb in frames:
      f.write(b"FRAME\n" + cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV_I420).tobytes())
  rate = 48000
  voice = raw_trees.speech_like(int(num_frames / fps * rate), rate)
  audio = os.path.join(folder, "microphone.wav")
  with wave.open(audio, "wb") as f:
    f.setnchannels(1)
    f.setsampwidth(2)
    f.setframerate(rate)
    f.writeframes((np.clip(voice, -1, 1) * 32767).astype("<i2").tobytes())
  return video, audio
