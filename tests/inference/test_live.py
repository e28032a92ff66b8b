"""Live prediction (`jmt_jax.inference.live`): a stream's frames and audio pieces give the
predictions of the offline predictor run with causal windows on the same recording."""

import csv

import numpy as np
import pytest

from conftest import module_command
from conftest import run
from jmt_jax.errors import BadInput
from jmt_jax.inference import live
from jmt_jax.media import decode
from recordings import FPS

pytestmark = pytest.mark.xdist_group("predict")


def decoded(model, path):
  """The video's RGB frames and its audio at the model's rate (None without a track)."""
  with decode.Video(path) as video:
    frames = list(video.frames())
  with decode.Video(path) as video:
    audio = video.audio(model.rates["audio_rate"]) if video.has_audio else None
  return frames, audio


def stream(model, frames, audio, clip_stride=1, audio_lag=0):
  """Updates of a LivePredictor fed `frames` at FPS and, `audio_lag` frames behind each,
  the audio of one frame at a time."""
  predictor = live.LivePredictor(model, fps=FPS, clip_stride=clip_stride,
                                 audio=audio is not None)
  rate = model.rates["audio_rate"]
  piece = lambda i: audio[int(round(i * rate / FPS)):int(round((i + 1) * rate / FPS))]
  updates = []
  for i in range(len(frames) + audio_lag):
    if i < len(frames):
      updates += predictor.add_frame(frames[i], i / FPS)
    if audio is not None and i >= audio_lag:
      updates += predictor.add_audio(piece(i - audio_lag), (i - audio_lag) / FPS)
  return updates + predictor.finish()


@pytest.mark.parametrize("name,clip_stride", [("face.mp4", 1), ("face.mp4", 3),
                                              ("face_no_audio.mkv", 1), ("no_face.mp4", 2)])
def test_live_updates_equal_the_offline_causal_prediction(va_model, videos, name, clip_stride):
  path, _ = videos[name]
  offline = va_model.predict(path, progress=False, causal=True, clip_stride=clip_stride)
  frames, audio = decoded(va_model, path)
  updates = stream(va_model, frames, audio, clip_stride, audio_lag=2)
  assert [u.frame for u in updates] == list(range(offline.num_frames))
  for column, values in offline.values.items():
    np.testing.assert_allclose([u.values[column] for u in updates], values, atol=1e-5)
  for column, found in offline.found.items():
    np.testing.assert_array_equal([u.found[column] for u in updates], found)
  computed = [u.computed for u in updates]
  np.testing.assert_array_equal(computed, np.arange(len(updates)) % clip_stride == 0)
  if clip_stride > 1:
    np.testing.assert_array_equal(offline.computed, computed)
  assert all((u.box is not None) == u.found["face_found"] for u in updates)


def test_a_frame_waits_for_its_audio_and_no_longer_than_the_limit(va_model, videos):
  frames, audio = decoded(va_model, videos["face.mp4"][0])
  predictor = live.LivePredictor(va_model, fps=FPS, max_audio_wait_s=0.5)
  got = []
  for i in range(3):
    got += predictor.add_frame(frames[i], i / FPS)
  assert not got  # the audio of frame 0 has not come
  got += predictor.add_audio(audio[:800], 0.0)  # 0.1 s at 8 kHz: frame 0's
  assert [u.frame for u in got] == [0] and got[0].found["audio_found"]
  for i in range(3, 9):
    got += predictor.add_frame(frames[i], i / FPS)
  # Five frames (0.5 s) may wait; frames 1-3 were given up on and are silent.
  assert [u.frame for u in got] == [0, 1, 2, 3]
  assert not any(u.found["audio_found"] for u in got[1:])
  assert got[1].audio_db == float("-inf")


def test_frames_are_put_on_the_models_clock(va_model, videos):
  frames, _ = decoded(va_model, videos["face.mp4"][0])
  predictor = live.LivePredictor(va_model, fps=FPS, audio=False)
  # Row 0, then one for row 0 again (dropped); row 3 (rows 1-2 hold row 0's picture);
  # row 3 again (dropped); row 5 (row 4 holds row 3's).
  times = [0.0, 0.02, 0.31, 0.33, 0.52]
  got = []
  for rgb, t in zip(frames, times):
    got += predictor.add_frame(rgb, t)
  assert [u.frame for u in got] == [0, 1, 2, 3, 4, 5]
  assert predictor.dropped == 2


def test_a_microphone_for_a_model_without_a_voice_is_refused(tmp_path_factory, data_dir):
  from recordings import make_predictor  # pylint: disable=import-outside-toplevel
  from recordings import make_workdir  # pylint: disable=import-outside-toplevel
  model = make_predictor(make_workdir(tmp_path_factory, data_dir, "video,tiny"))
  predictor = live.LivePredictor(model, fps=FPS)
  with pytest.raises(BadInput, match="no voice input"):
    predictor.add_audio(np.zeros(800, np.int16), 0.0)


@pytest.mark.slow
def test_a_frame_encoder_embeds_each_frame_once_live_as_offline(tmp_path_factory, data_dir,
                                                                videos):
  from recordings import make_predictor  # pylint: disable=import-outside-toplevel
  from recordings import make_workdir  # pylint: disable=import-outside-toplevel
  model = make_predictor(make_workdir(tmp_path_factory, data_dir, "tiny,video_backbone=vit"))
  path, _ = videos["face.mp4"]
  offline = model.predict(path, progress=False, causal=True, clip_stride=3)
  frames, audio = decoded(model, path)
  embedded = {m: [] for m in model.modalities}
  embed = model.embeddings

  def counted(store, ends, modalities=None, batch=16):
    for m in modalities or model.modalities:
      embedded[m] += [int(e) for e in ends if e >= 0]
    return embed(store, ends, modalities, batch)

  model.embeddings = counted
  updates = stream(model, frames, audio, clip_stride=3)
  for column, values in offline.values.items():
    np.testing.assert_allclose([u.values[column] for u in updates], values, atol=1e-5)
  # The ViT saw each frame up to the last computed one once (frames 0, 3, 6... end clips
  # of 4 frames); the voice's backbone each clip its windows read once.
  computed = np.arange(0, len(frames), 3)
  assert sorted(embedded["video"]) == list(range(computed[-1] + 1))
  ends = {int(e) for e in model.window_ends(frames=computed).ravel() if e >= 0}
  assert sorted(embedded["audio"]) == sorted(ends)


@pytest.mark.slow
def test_the_predict_command_writes_causal_strided_predictions(va_workdir, va_model, videos,
                                                               tmp_path):
  path, _ = videos["face.mp4"]
  proc = run(module_command("jmt_jax.inference.predict", f"--workdir={va_workdir}",
                            f"--video={path}", f"--out={tmp_path}", "--causal",
                            "--clip_stride=2", "--noprogress"))
  assert proc.returncode == 0, proc.stderr[-3000:]
  with open(tmp_path / "face.csv", newline="", encoding="utf-8") as f:
    rows = list(csv.DictReader(f))
  assert [int(r["computed"]) for r in rows] == [int(i % 2 == 0) for i in range(len(rows))]
  offline = va_model.predict(path, progress=False, causal=True, clip_stride=2)
  np.testing.assert_allclose([float(r["valence"]) for r in rows], offline.values["valence"],
                             atol=1e-6)
