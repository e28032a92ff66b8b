"""`python -m jmt_jax.prepare` on tiny trees in the published Aff-Wild2 and BioVid layouts."""

import hashlib
import json
import os
import shutil
import subprocess
import sys

import av
import cv2
import ml_collections
import numpy as np
import pytest

import raw_trees
from conftest import ROOT
from conftest import load_config
from conftest import subprocess_env
from jmt_jax.data import pipeline
from jmt_jax.data import prepared
from jmt_jax.data.records import INVALID_LABEL
from jmt_jax.errors import BadInput
from jmt_jax.faces import crops
from jmt_jax.prepare import affwild2 as affwild2_layout
from jmt_jax.prepare import driver

pytestmark = pytest.mark.xdist_group("prepare")  # its module fixtures are built once

AUDIO_RATE = 44100
OPTIONS = dict(frame_size=112, frame_tolerance=16)


@pytest.fixture(scope="module")
def affwild2(tmp_path_factory):
  root = tmp_path_factory.mktemp("affwild2")
  tree = raw_trees.make_affwild2(str(root / "raw"))
  manifest = driver.prepare("affwild2", tree.root, str(root / "out"), workers=2,
                            audio_rate=AUDIO_RATE, test_list="", **OPTIONS)
  return tree, str(root / "out"), manifest


@pytest.fixture(scope="module")
def biovid(tmp_path_factory):
  root = tmp_path_factory.mktemp("biovid")
  tree = raw_trees.make_biovid(str(root / "raw"))
  manifest = driver.prepare("biovid", tree.root, str(root / "out"), workers=1, bio_rate=512,
                            **OPTIONS)
  return tree, str(root / "out"), manifest


def data_config(name, out_dir, **protocol):
  c = dict(name=name, data_dir=out_dir, signals=dict(frame_size=112, audio_rate=0, bio_rate=0))
  if protocol:
    c["protocol"] = protocol
  return ml_collections.ConfigDict(c)


def recording_arrays(ds, split, r):
  """Every per-frame and per-sample array of recording `r` of `split`, read from its records."""
  store = pipeline.store(ds, split)
  n = store.num_frames(r)
  recs = store.fetch(r, np.arange(n))
  labels = np.array([x["labels"] for x in recs])
  out = dict(frames=store.read_frames(r, np.arange(n))[0], jpeg=[x["jpeg"] for x in recs],
             valence=labels[:, 0], arousal=labels[:, 1], face_found=labels[:, 2] > 0)
  for key, rate in (("audio", "audio_rate"), ("biosignal", "bio_rate")):
    if key in store.source.dataset_info.features:
      out[key] = store.read_signal(r, key, 0, round(n * ds.rates[rate] / store.fps(r)))
  return out


def test_affwild2_manifest_counts_skips_and_checksums(affwild2):
  tree, out, m = affwild2
  assert m["complete"] and m["dataset"] == "affwild2"
  skipped = {s["name"]: s["reason"] for s in m["skipped"]}
  assert set(skipped) == set(tree.broken)
  for name, word in tree.broken.items():
    assert word in skipped[name].lower(), skipped[name]
    assert "\n" not in skipped[name] and os.sep in skipped[name]  # one line, naming the file
  train = m["counts"]["train"]
  assert train["videos"] == 3 and train["skipped"] == 5 and train["frames"] == 40 + 36 + 36
  assert train["clips"] == train["frames"] - 3  # frames labelled -5 are not clips
  # vid_a: 00005 missing, 00007 not an image, crops stop two frames before the labels;
  # vid_b_left: an empty, a truncated and a non-square crop. Each is a zero frame.
  assert train["missing_faces"] == 4 + 3 and train["unreadable_files"] == 4
  crop = lambda name, k: os.path.join(tree.root, "cropped_aligned", name, f"{k:05d}.jpg")
  assert m["unreadable_files"] == [
      dict(file=crop("vid_a", 7), reason="not an image"),
      dict(file=crop("vid_b_left", 3), reason="empty file"),
      dict(file=crop("vid_b_left", 9), reason="JPEG cut short (no end marker)"),
      dict(file=crop("vid_b_left", 12), reason="not square (112x80)")]
  assert m["counts"]["validation"]["dropped_extra_crops"] == 1
  assert m["counts"]["test"] == dict(m["counts"]["test"], videos=1, frames=25, clips=0)
  shard_dir = os.path.join(out, m["tfds_dir"])
  for f, digest in m["shards"].items():
    with open(os.path.join(shard_dir, f), "rb") as fh:
      assert hashlib.sha256(fh.read()).hexdigest() == digest
  assert len(m["shards"]) == 3


def test_affwild2_records_hold_the_raw_tree(affwild2):
  tree, out, _ = affwild2
  ds = pipeline.open_dataset(data_config("affwild2", out))
  members = {s: ds.splits[s].table.names for s in ("train", "validation", "test")}
  assert members == {"train": ["vid_a", "vid_b_left", "vid_b_right"], "validation": ["vid_c"],
                     "test": ["vid_t"]}
  assert "biosignal" not in ds.splits["train"].source.dataset_info.features
  for split_name, split in ds.splits.items():
    for r, name in enumerate(split.table.names):
      rec = recording_arrays(ds, split_name, r)
      n = len(tree.labels[name]) if name in tree.labels else 25
      assert split.table.num_frames[r] == n and split.table.fps[r] == tree.fps[name]
      if name in tree.labels:
        np.testing.assert_array_equal(rec["valence"], tree.labels[name][:, 0])
        np.testing.assert_array_equal(rec["arousal"], tree.labels[name][:, 1])
      else:
        assert np.all(rec["valence"] == INVALID_LABEL) and np.all(rec["arousal"] == INVALID_LABEL)
      for k in range(1, n + 1):
        path = os.path.join(tree.root, "cropped_aligned", name, f"{k:05d}.jpg")
        bad = k in tree.corrupt.get(name, {}) or not os.path.exists(path)
        image = None if bad else cv2.imread(path)
        if image is None:  # missing or bad: a zero frame, masked
          assert not rec["face_found"][k - 1] and not rec["frames"][k - 1].any(), (name, k)
        else:  # the organisers' JPEG bytes, unchanged
          assert rec["face_found"][k - 1]
          with open(path, "rb") as f:
            assert rec["jpeg"][k - 1] == f.read(), (name, k)
          np.testing.assert_array_equal(rec["frames"][k - 1], image[..., ::-1])
      # The audio (a 440 Hz tone starting with the first frame, written at 16 kHz into AAC
      # or PCM) is resampled to 44.1 kHz on the frame clock: sample i at time i / 44100.
      # A shift of one sample would show as errors of 0.03.
      assert len(rec["audio"]) == round(n * AUDIO_RATE / tree.fps[name])
      want = raw_trees.tone(len(rec["audio"]), AUDIO_RATE)
      inner = slice(AUDIO_RATE // 10, len(want) - AUDIO_RATE // 10)  # past the codec's ramps
      np.testing.assert_allclose(rec["audio"][inner] / 32767, want[inner], atol=0.01)


def test_biovid_records_hold_faces_and_biosignals(biovid):
  tree, out, m = biovid
  skipped = {s["name"]: s["reason"] for s in m["skipped"]}
  assert set(skipped) == set(tree.broken)
  for name, word in tree.broken.items():
    assert word in skipped[name].lower() and "\n" not in skipped[name], skipped[name]
  counts = m["counts"]["samples"]
  assert counts["videos"] == len(tree.samples) and counts["frames"] == 25 * len(tree.samples)
  ds = pipeline.open_dataset(data_config("biovid", out, kind="loso", fold=0))
  split = ds.splits["train"]
  table = split.table
  assert table.names == [s for _, s, _ in tree.samples]
  assert table.subjects == [s for s, _, _ in tree.samples]
  assert list(table.pain) == [c for _, _, c in tree.samples]
  assert counts["missing_faces"] <= 0.05 * counts["frames"]  # a real photograph's face
  assert counts["face_detection_rate"] == round(1 - counts["missing_faces"] / counts["frames"], 4)
  for r, (subject, sample, pain) in enumerate(tree.samples):
    rec = recording_arrays(ds, "train", r)
    assert table.pain[r] == pain and np.all(rec["valence"] == INVALID_LABEL)
    np.testing.assert_allclose(rec["biosignal"], tree.biosignals[sample], atol=1e-5)
    assert "audio" not in rec
    # Each crop is the face: close to a crop of the decoded frame at the true face box
    # (a crop 40 px to the side differs by about 75 grey levels on average).
    with av.open(os.path.join(tree.root, "video", subject, sample + ".mp4")) as c:
      decoded = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    true_box = lambda x, y, w, h: (x, y, x + w, y + h)
    diffs = np.array([np.abs(rec["frames"][k] - crops.box(
        frame, true_box(*tree.boxes[sample][k]), 112, margin=0.2).astype(np.float32)).mean()
                      for k, frame in enumerate(decoded)])
    assert np.median(diffs) < 25 and np.all(diffs[rec["face_found"]] < 35), (sample, diffs)


def test_biovid_frames_are_the_work_crops_after_one_jpeg_encoding(biovid):
  """BioVid crops are kept lossless in the work files and stored once as JPEG: the stored
  frames are the work crops to within the quality's error (BUILD_NOTES gives the figures)."""
  _, out, _ = biovid
  ds = pipeline.open_dataset(data_config("biovid", out, kind="loso", fold=0))
  name = ds.splits["train"].table.names[0]
  with np.load(os.path.join(out, "work", name + ".npz")) as z:
    ends = np.cumsum(z["frame_lengths"])
    work = np.stack([cv2.imdecode(z["frame_bytes"][e - n:e], cv2.IMREAD_COLOR)[..., ::-1]
                     for e, n in zip(ends, z["frame_lengths"])])
  stored = recording_arrays(ds, "train", 0)
  assert all(j[:2] == b"\xff\xd8" for j in stored["jpeg"])
  error = np.abs(stored["frames"].astype(int) - work)
  assert error.mean() < 2.0 and error.max() < 40, (error.mean(), error.max())


def test_old_shards_are_refused_and_rewritten_from_the_work_files(affwild2, tmp_path,
                                                                  monkeypatch):
  """A preparation from before record format 2 (its manifest has no `format`) is refused
  with the command that rewrites it, and that command writes the new shards from work/
  without reading any video or crop again."""
  tree, out, complete = affwild2
  old = str(tmp_path / "old")
  subprocess.run(["cp", "-r", out, old], check=True)
  manifest = prepared.read_manifest(old)
  del manifest["format"]
  # Old shards lived under another builder config name (the format is part of the hash).
  config_dir = os.path.dirname(os.path.join(old, manifest["tfds_dir"]))
  stale = os.path.join(os.path.dirname(config_dir), "affwild2_oldformat")
  os.rename(config_dir, stale)
  manifest["tfds_dir"] = os.path.relpath(os.path.join(stale, os.path.basename(
      manifest["tfds_dir"])), old)
  with open(os.path.join(old, prepared.MANIFEST), "w") as f:
    json.dump(manifest, f)
  with pytest.raises(ValueError) as e:
    pipeline.open_dataset(data_config("affwild2", old))
  assert f"python -m jmt_jax.prepare affwild2 --raw_dir={tree.root} --out_dir={old}" in str(e.value)
  assert "older record format" in str(e.value)
  layout = driver.LAYOUTS["affwild2"]

  def no_decoding(task):
    raise AssertionError(f"{task['name']} decoded again")

  monkeypatch.setitem(driver.LAYOUTS, "affwild2",
                      driver.dataclasses.replace(layout, process=no_decoding))
  rewritten = driver.prepare("affwild2", tree.root, old, workers=1, audio_rate=AUDIO_RATE,
                             test_list="", **OPTIONS)
  assert rewritten["format"] == complete["format"] and rewritten["shards"] == complete["shards"]
  assert not os.path.exists(stale)
  assert pipeline.open_dataset(data_config("affwild2", old)).splits["train"].table.names


def test_biovid_protocols(biovid):
  _, out, _ = biovid
  table = pipeline.open_dataset(data_config("biovid", out, kind="loso", fold=0)).splits["train"].table
  subjects = np.array(table.subjects)
  names = sorted(set(table.subjects))
  for fold, held_out in enumerate(names):
    f = prepared.folds(table, "loso", fold)
    assert set(subjects[f["validation"]]) == {held_out}
    assert held_out not in set(subjects[f["train"]]) and len(f["train"]) + len(f["validation"]) == len(table)
  seen = []
  for fold in range(2):
    f = prepared.folds(table, "subject_kfold", fold, num_folds=2)
    assert not set(subjects[f["train"]]) & set(subjects[f["validation"]])
    seen += list(f["validation"])
  assert sorted(seen) == list(range(len(table)))
  f = prepared.folds(table, "sample_kfold", 0, num_folds=2, seed=3)
  assert set(subjects[f["train"]]) & set(subjects[f["validation"]])  # the leak it is flagged for
  with pytest.raises(ValueError, match="folds 0..3"):
    prepared.folds(table, "loso", 4)


def test_biovid_class_protocols_label_windows(biovid):
  _, out, _ = biovid
  for classes, want in (("binary", {0: 0, 4: 1}), ("five", {0: 0, 4: 4})):
    config = load_config("biovid", f"jmt,tiny,data_dir={out},classes={classes},protocol=loso")
    assert config.model.head.num_classes == (2 if classes == "binary" else 5)
    ds = pipeline.open_dataset(config.data)
    source = pipeline.window_source(ds, "validation", config.input, config.model.modalities,
                                    train=False)
    table = ds.splits["validation"].table
    for i in range(len(source)):
      ex = source[i]
      assert ex["pain"] == want[int(table.pain[ex["recording"][0]])]


def test_a_killed_preparation_resumes_where_it_stopped(affwild2, tmp_path, monkeypatch):
  tree, _, complete = affwild2
  layout = driver.LAYOUTS["affwild2"]
  calls = []

  def killed_after_two(task):
    if len(calls) == 2:
      raise KeyboardInterrupt  # what a kill leaves: the third recording never finishes
    calls.append(task["name"])
    return layout.process(task)

  out = str(tmp_path / "out")
  monkeypatch.setitem(driver.LAYOUTS, "affwild2", driver.dataclasses.replace(layout, process=killed_after_two))
  with pytest.raises(KeyboardInterrupt):
    driver.prepare("affwild2", tree.root, out, workers=1, audio_rate=AUDIO_RATE, test_list="", **OPTIONS)
  assert prepared.read_manifest(out) is None
  with pytest.raises(FileNotFoundError, match="python -m jmt_jax.prepare affwild2"):
    pipeline.open_dataset(data_config("affwild2", out))

  done_before = list(calls)
  calls.clear()

  def counted(task):
    calls.append(task["name"])
    return layout.process(task)

  monkeypatch.setitem(driver.LAYOUTS, "affwild2", driver.dataclasses.replace(layout, process=counted))
  manifest = driver.prepare("affwild2", tree.root, out, workers=1, audio_rate=AUDIO_RATE, test_list="",
                            **OPTIONS)
  # Finished recordings are not redone; skipped ones (bad_header, bad_nan) are retried.
  names = {t["name"] for t in layout.tasks(tree.root)}
  assert set(calls) == names - (set(done_before) - set(tree.broken)), (calls, done_before)
  assert manifest["shards"] == complete["shards"]  # same bytes as an uninterrupted run


def test_changed_inputs_and_options_redo_exactly_the_affected_recordings(tmp_path, capsys):
  """A corrected label file redoes its recording and the shards equal a fresh
  preparation's; another audio rate redoes every recording; skips are always retried."""
  tree = raw_trees.make_affwild2(str(tmp_path / "raw"))
  good, broken = len(tree.labels), len(tree.broken)

  def prepare(out, audio_rate=AUDIO_RATE):
    manifest = driver.prepare("affwild2", tree.root, str(tmp_path / out), workers=1,
                              audio_rate=audio_rate, test_list="", **OPTIONS)
    return manifest, capsys.readouterr().out.splitlines()[0]

  first, _ = prepare("out")
  label = os.path.join(tree.root, "6th_ABAW_Annotations", "VA_Estimation_Challenge",
                       "Validation_Set", "vid_c.txt")
  with open(label) as f:
    lines = f.read().splitlines()
  lines[3] = "0.5,-0.5"
  with open(label, "w") as f:
    f.write("\n".join(lines) + "\n")
  again, line = prepare("out")
  assert line.startswith(f"{good + 1 - 1} of {good + 1 + broken} recordings already done")
  assert "1 changed labels" in line, line
  assert f"{broken} skipped before" in line, line
  fresh, _ = prepare("fresh")
  assert again["shards"] == fresh["shards"] != first["shards"]
  ds = pipeline.open_dataset(data_config("affwild2", str(tmp_path / "out")))
  r = ds.splits["validation"].table.names.index("vid_c")
  assert recording_arrays(ds, "validation", r)["valence"][2] == 0.5  # line 4: frame 3

  _, line = prepare("out", audio_rate=16000)
  assert line.startswith(f"0 of {good + 1 + broken}") and f"{good + 1} changed audio_rate" in line
  assert prepared.read_manifest(str(tmp_path / "out"))["signals"]["audio_rate"] == 16000


def test_crops_in_other_image_formats_and_two_raw_videos_of_one_name(tmp_path):
  tree = raw_trees.make_affwild2(str(tmp_path / "raw"))
  crops_dir = os.path.join(tree.root, "cropped_aligned", "vid_c")
  pixels = {}
  for k, f in enumerate(sorted(os.listdir(crops_dir)), start=1):  # another tool's export: PNG
    bgr = cv2.imread(os.path.join(crops_dir, f))
    os.remove(os.path.join(crops_dir, f))
    cv2.imwrite(os.path.join(crops_dir, f"{k:05d}.PNG"), bgr)
    pixels[k] = bgr
  cv2.imwrite(os.path.join(crops_dir, "00001.bmp"), pixels[1])  # frame 1 twice
  shutil.copy(os.path.join(tree.root, "batch1", "vid_a.mp4"),
              os.path.join(tree.root, "new_vids", "vid_a.mkv"))
  tasks = {t["name"]: t for t in affwild2_layout.tasks(tree.root, audio_rate=AUDIO_RATE, **OPTIONS)}
  _, blobs, entry, stats = affwild2_layout.process(tasks["vid_c"])
  assert entry["num_frames"] == len(blobs) == 30 and all(blobs)
  for k, blob in enumerate(blobs, start=1):  # stored as they are: lossless
    np.testing.assert_array_equal(cv2.imdecode(np.frombuffer(blob, np.uint8), cv2.IMREAD_COLOR),
                                  pixels[k])
  assert stats["unreadable_files"] == [dict(
      file=os.path.join(crops_dir, "00001.bmp"),
      reason=f"another crop of frame 1 is used ({os.path.join(crops_dir, '00001.PNG')})")]
  with pytest.raises(BadInput, match=r"vid_a: several raw videos could be its video \(\S*/batch1/"
                                     r"vid_a.mp4, \S*/new_vids/vid_a.mkv\): keep one"):
    affwild2_layout.process(tasks["vid_a"])


def test_a_partial_tree_prepares_the_splits_it_has(tmp_path, capsys):
  """No Validation_Set, a test list whose only video cannot be prepared, then no test list
  at all: the train split is prepared and the others are reported empty; the leftovers of
  a killed shard-writing stage are removed."""
  tree = raw_trees.make_affwild2(str(tmp_path / "raw"))
  shutil.rmtree(os.path.join(tree.root, "6th_ABAW_Annotations", "VA_Estimation_Challenge",
                             "Validation_Set"))
  test_list = os.path.join(tree.root, "Valence_Arousal_test_set_release.txt")
  with open(test_list, "w") as f:
    f.write("vid_gone\n")
  out = str(tmp_path / "out")
  prepare = lambda: driver.prepare("affwild2", tree.root, out, workers=1, audio_rate=AUDIO_RATE,
                                   test_list="", **OPTIONS)
  m = prepare()
  printed = capsys.readouterr().out
  assert m["empty_splits"] == {"validation": "none in the tree", "test": "all skipped"}
  assert "validation: no recording prepared (none in the tree); the split is left out" in printed
  assert m["counts"]["train"]["videos"] == 3
  ds = pipeline.open_dataset(data_config("affwild2", out))
  assert set(ds.splits) == {"train"}
  with pytest.raises(ValueError, match="no split 'validation'"):
    pipeline.window_source(ds, "validation", load_config("demo", "tiny").input, ["video"], False)

  os.remove(test_list)
  m = prepare()
  assert m["empty_splits"] == {"validation": "none in the tree", "test": "none in the tree"}
  leftover = os.path.join(out, os.path.dirname(m["tfds_dir"]), "incomplete.ABC123_2.0.0")
  os.makedirs(leftover)
  assert prepare()["shards"] == m["shards"] and not os.path.exists(leftover)


@pytest.mark.slow
def test_configs_train_from_prepared_shards(affwild2, biovid, tmp_path):
  from jmt_jax.training import train  # pylint: disable=import-outside-toplevel
  for name, out, arg in (("affwild2", affwild2[1], "jmt,tiny"),
                         ("biovid", biovid[1], "jmt,tiny,protocol=loso,fold=1")):
    config = load_config(name, f"{arg},data_dir={out}")
    config.train.read_threads = 1
    scores = train.train_and_evaluate(config, str(tmp_path / name))
    assert all(np.isfinite(v) for v in scores.values() if isinstance(v, float)), scores
    if name == "affwild2":
      check_submission(config, str(tmp_path / name))


def check_submission(config, workdir):
  """The ABAW submission of the test list's videos: every frame once, in order, in range."""
  from jmt_jax.evaluation import submission  # pylint: disable=import-outside-toplevel
  table = pipeline.open_dataset(config.data).splits["test"].table
  expected = [f"{v}/{k:05d}.jpg" for v, n in sorted(zip(table.names, table.num_frames))
              for k in range(1, n + 1)]
  out, per_video_dir = submission.paths(workdir, "test")
  config.eval.smoothing.update(valence=20, arousal=50)
  rows = submission.write(config, workdir, "test", out, per_video_dir=per_video_dir)
  with open(out) as f:
    lines = f.read().splitlines()
  assert rows == len(expected) == len(lines) - 1 > 0
  assert lines[0] == "image_location,valence,arousal"
  assert [l.split(",")[0] for l in lines[1:]] == expected
  values = np.array([[float(x) for x in l.split(",")[1:]] for l in lines[1:]])
  assert np.all(np.isfinite(values)) and np.all(np.abs(values) <= 1.0)
  txt = os.path.join(workdir, "submission", "test", f"{table.names[0]}.txt")
  with open(txt) as f:
    assert len(f.read().splitlines()) == table.num_frames[0] + 1


def test_training_without_prepared_data_says_how_to_prepare(tmp_path):
  empty = tmp_path / "nothing_here"
  cmd = [sys.executable, "-m", "jmt_jax.main", f"--config=configs/affwild2.py:jmt,tiny,data_dir={empty}",
         f"--workdir={tmp_path / 'w'}"]
  r = subprocess.run(cmd, cwd=ROOT, env=subprocess_env(), capture_output=True, text=True, timeout=300)
  assert r.returncode != 0 and "Traceback" not in r.stderr
  assert "python -m jmt_jax.prepare affwild2 --raw_dir=" in r.stderr, r.stderr[-2000:]


def test_prepare_command_line(biovid, tmp_path):
  tree, out, complete = biovid
  cmd = [sys.executable, "-m", "jmt_jax.prepare", "biovid", f"--raw_dir={tree.root}",
         f"--out_dir={out}", "--workers=1"]
  r = subprocess.run(cmd, cwd=ROOT, env=subprocess_env(), capture_output=True, text=True, timeout=300)
  assert r.returncode == 0, r.stderr[-2000:]
  n = len(tree.samples) + len(tree.broken)
  # A rerun redoes nothing but the skipped recordings, which it retries.
  assert (f"{len(tree.samples)} of {n} recordings already done in {out}/work; "
          f"{len(tree.broken)} to prepare ({len(tree.broken)} skipped before)") in r.stdout
  assert f"samples: videos {len(tree.samples)}, skipped {len(tree.broken)}" in r.stdout
  assert prepared.read_manifest(out)["shards"] == complete["shards"]
  # Another process, from scratch: the same bytes (protobuf's map order is per process).
  fresh = str(tmp_path / "fresh")
  r = subprocess.run(cmd[:5] + [f"--out_dir={fresh}"] + cmd[6:], cwd=ROOT, env=subprocess_env(),
                     capture_output=True, text=True, timeout=300)
  assert r.returncode == 0, r.stderr[-2000:]
  assert prepared.read_manifest(fresh)["shards"] == complete["shards"]
  r = subprocess.run(cmd[:4] + [f"--raw_dir={tmp_path}", f"--out_dir={tmp_path / 'o'}"], cwd=ROOT,
                     env=subprocess_env(), capture_output=True, text=True, timeout=300)
  assert r.returncode != 0 and "Traceback" not in r.stderr
  assert r.stderr.strip().splitlines()[-1] == f"error: {tmp_path}: no samples.csv (is this BioVid Part A?)"


@pytest.mark.parametrize("flag", ["--frame_size=0", "--audio_rate=-44100", "--segment_frames=0"])
def test_non_positive_sizes_and_rates_are_refused_at_the_flag(tmp_path, flag):
  r = subprocess.run([sys.executable, "-m", "jmt_jax.prepare", "affwild2", f"--raw_dir={tmp_path}",
                      f"--out_dir={tmp_path / 'out'}", flag], cwd=ROOT, env=subprocess_env(),
                     capture_output=True, text=True, timeout=300)
  assert r.returncode != 0 and not os.path.exists(tmp_path / "out")
  assert r.stderr.strip().splitlines()[-1] == (f"error: flag {flag}: {flag.split('=')[1]} is not "
                                               f"a positive integer")
