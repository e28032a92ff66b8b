"""Prediction on a person's own recording (`python -m jmt_jax.inference.predict`) and the export.

Real files: the astronaut's face moved and scaled across an MP4 with a speech-like AAC
track, an MKV with no audio stream, a WebM and an AVI, a face-free video, a BioVid-layout
biosignal CSV. Models are the tiny demo configs' initial checkpoints.
"""

import csv
import json
import os
import shutil
import subprocess
import sys

import jax
import numpy as np
import pytest

import raw_trees
from conftest import ROOT
from conftest import module_command
from conftest import run
from jmt_jax import workdir as workdir_lib
from jmt_jax.benchmarks import face_scenes
from jmt_jax.data import clips
from jmt_jax.faces import crops
from jmt_jax.inference import export
from jmt_jax.inference import exported
from jmt_jax.inference import outputs
from jmt_jax.inference import stream
from jmt_jax.media import decode
from jmt_jax.tasks import abaw
from recordings import FPS
from recordings import make_predictor
from recordings import make_workdir

pytestmark = pytest.mark.xdist_group("predict")  # one worker trains the two models once


@pytest.fixture(scope="module")
def photo_videos(tmp_path_factory):
  """name -> (path, Truth, present): Grace Hopper's photograph (56 px face) drifting over
  a photograph at 640x360 and 1280x720, and the astronaut and Hopper side by side at
  640x360, Hopper away for frames 20-27. H.264, as a phone records."""
  root = tmp_path_factory.mktemp("photo_videos")
  people = {p.name: p for p in face_scenes.people()}
  backgrounds = face_scenes.backgrounds()
  out = {}
  for h, w in ((360, 640), (720, 1280)):
    frames, truth = face_scenes.video(h, w, 30, [people["hopper"]], 56,
                                      backgrounds["coffee"], seed=w)
    out[f"{w}x{h}"] = (frames, truth, np.ones((30, 1), bool))
  present = np.ones((40, 2), bool)
  present[20:28, 1] = False
  frames, truth = face_scenes.video(360, 640, 40, [people["astronaut"], people["hopper"]], 64,
                                    backgrounds["rocket"], seed=5, present=present)
  out["two"] = (frames, truth, present)
  speech = raw_trees.speech_like(16000 * 4, 16000)
  paths = {}
  for name, (frames, truth, present) in out.items():
    paths[name] = (str(root / f"{name}.mp4"), truth, present)
    raw_trees.write_video(paths[name][0], frames, FPS, audio=speech[:len(frames) * 1600])
  return paths


@pytest.mark.slow
@pytest.mark.parametrize("size", ["640x360", "1280x720"])
def test_predict_finds_the_face_on_real_photo_videos(va_model, photo_videos, size):
  path, truth, _ = photo_videos[size]
  result = va_model.predict(path, progress=False)
  assert result.found["face_found"].mean() >= 0.95
  [(_, track)] = va_model.face_tracks(path, progress=False)
  assert all(face_scenes.matches(f.box, truth.boxes[i, 0]) for i, f in enumerate(track) if f)


@pytest.mark.slow
def test_predict_all_faces_writes_a_csv_per_person(va_workdir, photo_videos, tmp_path):
  path, _, present = photo_videos["two"]
  out = tmp_path / "out"
  proc = run(module_command("jmt_jax.inference.predict", f"--workdir={va_workdir}",
                            f"--video={path}", f"--out={out}", "--faces=all", "--noprogress"))
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert sorted(os.listdir(out)) == ["two.json", "two.png", "two_person1.csv", "two_person2.csv"]
  with open(out / "two.json") as f:
    assert json.load(f)["csv"] == ["two_person1.csv", "two_person2.csv"]
  tables = [_read_csv(str(out / f"two_person{k}.csv")) for k in (1, 2)]
  for table, here in zip(tables, present.T):  # person 1 is the astronaut, on the left
    found = table["face_found"].astype(bool)
    assert not found[~here].any()
    raw_trees.assert_missed_only_on_return(found, here)
  assert not np.allclose(tables[0]["valence"], tables[1]["valence"])


def _whole_recording_outputs(model, video_path, biosignal=None):
  """The model on every window, read from the whole recording in memory as evaluation
  reads stored records: the reference the streamed prediction must equal."""
  config, spec = model.config, next(iter(model.modalities.values()))
  with decode.Video(video_path) as video:
    fps, frames = video.fps, list(video.frames())
  with decode.Video(video_path) as video:
    audio = video.audio(model.rates["audio_rate"]) if video.has_audio else np.zeros(0, np.int16)
  [(_, track)] = model.face_tracks(video_path, progress=False)
  cropper = crops.TrackCrops(track, spec["face_crop"], model.frame_size, spec["face_margin"],
                             spec["missing_face"])
  crops_ = np.stack([cropper(i, f) for i, f in enumerate(frames)])
  n = len(crops_)
  fit = lambda x, rate: decode.fit_length(x, round(n * rate / fps), "", "", tolerance=10**9)
  signals = {"audio": stream.ArraySignal(fit(audio, model.rates["audio_rate"])),
             "biosignal": stream.ArraySignal(fit(
                 np.zeros((0, 3), np.float32) if biosignal is None else biosignal,
                 model.rates["bio_rate"]))}
  store = stream.StreamStore(fps, model.rates, signals, keep=n)
  for i, crop in enumerate(crops_):
    store.add_frame(i, crop)
  store.finish(n)
  ends = model.window_ends(num_frames=n)
  examples = [clips.read_clips(store, 0, e, model.modalities, config.input.clip_frames)
             for e in ends]
  batch = {m: np.stack([x[m] for x in examples]) for m in model.modalities}
  return n, ends, model.whole_model(batch)


def _read_csv(path):
  """{column: (N,) array} of a CSV prediction wrote."""
  with open(path, newline="", encoding="utf-8") as f:
    rows = list(csv.reader(f))
  return {k: np.array([float(r[i]) for r in rows[1:]]) for i, k in enumerate(rows[0])}


def _read_png_size(path):
  with open(path, "rb") as f:
    head = f.read(24)
  assert head[:8] == b"\x89PNG\r\n\x1a\n", path
  return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")


@pytest.mark.slow
def test_predict_command_on_a_moving_face_with_speech(va_workdir, videos, tmp_path):
  path, has_face = videos["face.mp4"]
  out = tmp_path / "out"
  proc = run(module_command("jmt_jax.inference.predict", f"--workdir={va_workdir}",
                            f"--video={path}", f"--out={out}"))
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "frames:" in proc.stderr and "100%" in proc.stderr  # the progress bar
  table = _read_csv(str(out / "face.csv"))
  assert list(table) == ["frame", "time_s", "face_found", "audio_found", "valence", "arousal"]
  np.testing.assert_array_equal(table["frame"], np.arange(63))
  np.testing.assert_allclose(table["time_s"], np.arange(63) / FPS, atol=1e-4)
  np.testing.assert_array_equal(table["face_found"].astype(bool), has_face)
  assert table["audio_found"].all()
  for dim in abaw.DIMENSIONS:
    assert np.isfinite(table[dim]).all() and (np.abs(table[dim]) <= 1).all()
    assert table[dim].std() > 0  # not a constant
  width, height = _read_png_size(str(out / "face.png"))
  assert width > 300 and height > 150


@pytest.mark.parametrize("name", ["face.mp4", "face_no_audio.mkv", "face.webm", "face.avi",
                                  "no_face.mp4"])
def test_streamed_predictions_equal_the_model_on_whole_windows(va_model, videos, name):
  path, has_face = videos[name]
  result = va_model.predict(path, progress=False)
  n, ends, reference = _whole_recording_outputs(va_model, path)
  assert result.num_frames == n == len(has_face)
  found = result.found["face_found"]
  assert not (found & ~has_face).any()  # low-bitrate MPEG-4 may hide a face, never invent one
  assert found.sum() >= 0.9 * has_face.sum()
  assert result.found["audio_found"].all() == (name != "face_no_audio.mkv")
  assert not result.found["audio_found"].any() or name != "face_no_audio.mkv"
  for dim in abaw.DIMENSIONS:
    expected = abaw.reassemble(["r"], [n], np.zeros(ends.shape, int), ends, reference[dim])["r"]
    np.testing.assert_allclose(result.values[dim], np.clip(expected, -1, 1), atol=2e-5)


@pytest.mark.slow
def test_a_frame_encoder_predicts_and_exports_as_the_whole_model(tmp_path_factory, data_dir,
                                                                 videos, tmp_path):
  """A ViT embeds each frame once while streaming; its clips gathered from those equal
  the whole model on every window, as does its export."""
  workdir = make_workdir(tmp_path_factory, data_dir, "tiny,video_backbone=vit")
  model = make_predictor(workdir)
  assert model.by_frame == ("video",)
  for name in ("face.mp4", "no_face.mp4"):
    path, _ = videos[name]
    result = model.predict(path, progress=False)
    n, ends, reference = _whole_recording_outputs(model, path)
    for dim in abaw.DIMENSIONS:
      expected = abaw.reassemble(["r"], [n], np.zeros(ends.shape, int), ends, reference[dim])
      np.testing.assert_allclose(result.values[dim], np.clip(expected["r"], -1, 1), atol=2e-5)
  signature = export.export_workdir(workdir, str(tmp_path / "export"))
  batch = {m: np.random.default_rng(0).integers(0, 256, [2, *s["shape"][1:]]).astype(s["dtype"])
           if s["dtype"] == "uint8" else np.zeros([2, *s["shape"][1:]], s["dtype"])
           for m, s in signature["inputs"].items()}
  got, want = exported.load(str(tmp_path / "export"))(batch), model.whole_model(batch)
  for k in want:
    np.testing.assert_allclose(got[k], want[k], atol=1e-5)


def test_missing_face_and_audio_are_the_zeros_training_saw(va_model, videos):
  """No audio stream predicts as a silent track (the same frames: FFV1 is lossless);
  a video without a face as zero crops (checked against the whole-window model above)."""
  a = va_model.predict(videos["face_no_audio.mkv"][0], progress=False)
  b = va_model.predict(videos["face_silent.mkv"][0], progress=False)
  assert not a.found["audio_found"].any() and b.found["audio_found"].all()
  np.testing.assert_array_equal(a.found["face_found"], b.found["face_found"])
  for dim in abaw.DIMENSIONS:
    np.testing.assert_allclose(a.values[dim], b.values[dim], atol=1e-5)
  no_face = va_model.predict(videos["no_face.mp4"][0], progress=False)
  assert not no_face.found["face_found"].any()
  assert all(np.isfinite(v).all() for v in no_face.values.values())


def test_a_phone_video_predicts_as_its_upright_recording(va_model, tmp_path):
  """A phone held upright stores its frames turned, with a display matrix: read upright,
  the face is found and the predictions are the upright recording's (lossless 4:4:4, so
  the decoded frames are equal)."""
  frames, has_face = raw_trees.moving_face_video(30, size=(320, 240))  # portrait
  speech = raw_trees.speech_like(3 * 16000, 16000)
  upright, phone = str(tmp_path / "upright.mp4"), str(tmp_path / "phone.mp4")
  raw_trees.write_video(upright, frames, FPS, audio=speech, lossless=True)
  raw_trees.write_video(phone, np.stack([np.rot90(f, 1) for f in frames]), FPS, audio=speech,
                        rotation=-90, lossless=True)
  a = va_model.predict(upright, progress=False)
  b = va_model.predict(phone, progress=False)
  assert a.found["face_found"].sum() >= 0.9 * has_face.sum()
  for column in a.found:
    np.testing.assert_array_equal(a.found[column], b.found[column])
  for dim in abaw.DIMENSIONS:
    np.testing.assert_allclose(b.values[dim], a.values[dim], atol=1e-6)


def test_a_late_audio_track_is_found_only_where_it_plays(va_model, tmp_path):
  frames, _ = raw_trees.moving_face_video(45)
  path = str(tmp_path / "late.mp4")
  raw_trees.write_video(path, frames, FPS, audio=raw_trees.speech_like(2 * 16000, 16000),
                        audio_start=1.5)  # 1.5 s to 3.5 s of the 4.5 s video
  found = va_model.predict(path, progress=False).found["audio_found"]
  assert not found[:14].any()  # the silence before the track (AAC priming: from 1.44 s)
  assert found[15:35].all() and not found[36:].any()


@pytest.fixture(scope="module")
def pain_model(tmp_path_factory, data_dir):
  return make_predictor(make_workdir(tmp_path_factory, data_dir, "pain,tiny"))


@pytest.mark.slow
def test_pain_model_predicts_per_frame_from_video_and_biosignals(pain_model, videos, tmp_path):
  path, has_face = videos["face.mp4"]
  rate = pain_model.rates["bio_rate"]
  signal = np.random.default_rng(0).normal(2.0, 0.3, (int(4.0 * rate), 3)).astype(np.float32)
  bio = str(tmp_path / "face_bio.csv")
  raw_trees.write_biosignals(bio, signal, rate=rate)  # 4 s of the video's 6.3 s
  result = pain_model.predict(path, bio, progress=False)
  n, ends, reference = _whole_recording_outputs(pain_model, path, np.round(signal, 6))
  np.testing.assert_array_equal(ends[:, -1], np.arange(n))  # one window ends on each frame
  probs = np.asarray(jax.nn.softmax(reference["logits"], axis=-1))
  np.testing.assert_allclose(result.values["pain_probability"], 1 - probs[:, 0], atol=2e-5)
  classes = [k for k in result.values if k.startswith("p_level")]
  assert len(classes) == 5
  np.testing.assert_allclose(sum(result.values[k] for k in classes), 1.0, atol=1e-5)
  frames_with_signal = np.arange(n) / FPS < 4.0
  np.testing.assert_array_equal(result.found["eda_found"], frames_with_signal)
  np.testing.assert_array_equal(result.found["face_found"], has_face)
  (csv_path,), png_path = outputs.write(str(tmp_path / "out"), path, [result], {})
  table = _read_csv(csv_path)
  assert list(table)[:5] == ["frame", "time_s", "face_found", "eda_found", "pain_probability"]
  assert ((table["pain_probability"] >= 0) & (table["pain_probability"] <= 1)).all()
  _read_png_size(png_path)


def test_videos_of_one_name_never_overwrite_each_others_outputs(va_model, videos, tmp_path):
  out = str(tmp_path / "out")
  result = va_model.predict(videos["face_no_audio.mkv"][0], progress=False)
  paths = []
  for folder, name in [("a", "talk.mp4"), ("a", "talk.mkv"), ("b", "talk.mp4"), ("c", "talk.mp4"),
                       ("a", "talk.mp4")]:
    video = tmp_path / folder / name
    video.parent.mkdir(exist_ok=True)
    video.touch()
    (csv_path,), _ = outputs.write(out, str(video), [result], {"step": 1})
    paths.append(os.path.basename(csv_path))
  # The last is a rerun: it writes over its own outputs.
  assert paths == ["talk.csv", "talk_mkv.csv", "talk_mp4.csv", "talk_2.csv", "talk.csv"]
  with open(os.path.join(out, "talk_2.json")) as f:
    assert json.load(f)["video"] == str(tmp_path / "c" / "talk.mp4")


@pytest.mark.parametrize("case", ["missing", "corrupt", "biosignals_for_va", "not_a_workdir",
                                  "out_is_a_file",
                                  "all_faces_with_biosignals"])
def test_predict_errors_are_one_line(va_workdir, videos, tmp_path, case):
  video = videos["face.mp4"][0]
  args = [f"--workdir={va_workdir}", f"--video={video}", f"--out={tmp_path}"]
  if case == "missing":
    args[1], word = f"--video={tmp_path}/nope.mp4", "no such video file"
  elif case == "corrupt":
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(open(video, "rb").read()[:3000])
    args[1], word = f"--video={broken}", "broken.mp4"
  elif case == "biosignals_for_va":
    args.append(f"--biosignals={tmp_path}/x.csv")
    word = "does not read biosignals"
  elif case == "out_is_a_file":
    (tmp_path / "taken").write_text("")
    args[2], word = f"--out={tmp_path / 'taken'}", "is a file, not a directory"
  elif case == "all_faces_with_biosignals":
    args += ["--faces=all", f"--biosignals={tmp_path}/x.csv"]
    word = "belongs to one person"
  else:
    args[0], word = f"--workdir={tmp_path}", "config.json"
  proc = run(module_command("jmt_jax.inference.predict", "--noprogress", *args), timeout=300)
  assert proc.returncode != 0
  last = proc.stderr.strip().splitlines()[-1]
  assert last.startswith("error: ") and word in last, proc.stderr[-2000:]
  assert "Traceback" not in proc.stderr


def test_exported_function_equals_the_model_in_process(va_model, va_workdir, videos, tmp_path):
  out = str(tmp_path / "export")
  signature = export.export_workdir(va_workdir, out)
  assert signature["platforms"] == ["cpu", "cuda", "tpu"]
  loaded = exported.load(out)
  rng = np.random.default_rng(0)
  batch = {m: (rng.integers(0, 256, [3, *s["shape"][1:]]).astype(np.uint8) if s["dtype"] == "uint8"
               else rng.normal(0, 1, [3, *s["shape"][1:]]).astype(s["dtype"]))
           for m, s in signature["inputs"].items()}
  got, want = loaded(batch), va_model.whole_model(batch)
  assert set(got) == set(want) == {"valence", "arousal"}
  for k in want:
    np.testing.assert_allclose(got[k], want[k], atol=1e-5)
  with pytest.raises(ValueError, match="input 'video'"):
    loaded({**batch, "video": batch["video"][:, :, :2]})
  # The loader alone, with no jmt_jax importable: copied next to the export.
  shutil.copy(os.path.join(ROOT, "jmt_jax", "inference", "exported.py"), tmp_path / "exported.py")
  np.savez(tmp_path / "batch.npz", **batch)
  code = ("import sys; sys.path.insert(0, '.')\n"
          "import numpy as np, exported\n"
          "out = exported.load('export')(dict(np.load('batch.npz')))\n"
          "assert 'jmt_jax' not in sys.modules and 'flax' not in sys.modules\n"
          "np.savez('out.npz', **out)\n")
  env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
  run = subprocess.run([sys.executable, "-I", "-c", code], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=300)
  assert run.returncode == 0, run.stderr[-2000:]
  with np.load(tmp_path / "out.npz") as z:
    np.testing.assert_allclose(z["valence"], want["valence"], atol=1e-5)
  # A damaged file of the export is named, as is a platform jax.export does not know.
  with open(os.path.join(out, exported.MODEL), "r+b") as f:
    f.truncate(100)
  with pytest.raises(ValueError, match=rf"{exported.MODEL}: damaged or not written by "
                                       r"jmt_jax.inference.export \(\w+\); export the workdir"):
    exported.load(out)
  with pytest.raises(ValueError, match="'gpu' is not a platform of jax.export: use cuda"):
    export.export_workdir(va_workdir, out, platforms=["cpu", "gpu"])
  with pytest.raises(ValueError, match="unknown platform 'metal'"):
    export.export_workdir(va_workdir, out, platforms=["metal"])


@pytest.mark.slow
def test_export_of_a_workdir_without_config_json_takes_the_flag_its_advice_names(va_workdir,
                                                                                tmp_path):
  old = tmp_path / "old"
  shutil.copytree(va_workdir, old)
  os.remove(old / "config.json")  # trained before config.json was written
  out = tmp_path / "export"
  refused = run(module_command("jmt_jax.inference.export", f"--workdir={old}", f"--out={out}"))
  last = refused.stderr.strip().splitlines()[-1]
  assert refused.returncode == 1 and "no config.json" in last and "need --config" in last, last
  done = run(module_command("jmt_jax.inference.export", f"--workdir={old}", f"--out={out}",
                            "--config=configs/demo.py:tiny", "--platforms=cpu",
                            f"--config.data.data_dir={workdir_lib.read_config(va_workdir).data.data_dir}",
                            "--config.compilation_cache_dir="))
  assert done.returncode == 0, done.stderr[-2000:]
  assert exported.load(str(out)).signature["step"] == 1
