"""The ABAW protocol on hand-computed cases: reassembly, clipping, smoothing, CCC, and the
submission files."""

import csv

import numpy as np
import pytest

from jmt_jax.tasks import abaw


def test_moving_average_by_hand():
  x = [1.0, 2.0, 3.0, 4.0, 5.0]
  # window 2: frames i-1 .. i (the first frame has only itself)
  np.testing.assert_allclose(abaw.moving_average(x, 2), [1.0, 1.5, 2.5, 3.5, 4.5])
  # window 3: frames i-1 .. i+1, shrunk at both ends
  np.testing.assert_allclose(abaw.moving_average(x, 3), [1.5, 2.0, 3.0, 4.0, 4.5])
  # window 4: frames i-2 .. i+1
  np.testing.assert_allclose(abaw.moving_average(x, 4), [1.5, 2.0, 2.5, 3.5, 4.0])
  np.testing.assert_allclose(abaw.moving_average(x, 0), x)
  np.testing.assert_allclose(abaw.moving_average(x, 1), x)
  # a window longer than the video averages everything
  np.testing.assert_allclose(abaw.moving_average(x, 50), [3.0] * 5)


def test_postprocess_clips_before_smoothing_per_dimension():
  got = abaw.postprocess({"v1": {"valence": np.array([2.0, -3.0, 0.5]),
                                 "arousal": np.array([0.2, 0.4, 1.5])}},
                         {"valence": 0, "arousal": 2})
  np.testing.assert_allclose(got["v1"]["valence"], [1.0, -1.0, 0.5])
  np.testing.assert_allclose(got["v1"]["arousal"], [0.2, 0.3, 0.7])  # [0.2, 0.4, 1.0] smoothed


def test_reassemble_places_every_frame_once_and_drops_padding():
  names, num_frames = ["a", "b"], np.array([3, 2])
  # (windows, clips): b's second window reaches past its end (frame 2 and 3 dropped)
  recording = np.array([[0, 0], [1, 1], [0, 0], [1, 1]])
  frame = np.array([[0, 2], [0, 2], [1, 3], [1, 3]])
  values = np.array([[10, 12], [20, 99], [11, 99], [21, 99]], np.float32)
  got = abaw.reassemble(names, num_frames, recording, frame, values)
  np.testing.assert_array_equal(got["a"], [10, 11, 12])
  np.testing.assert_array_equal(got["b"], [20, 21])
  with pytest.raises(ValueError, match="a: predictions cover its 3 frames unevenly"):
    abaw.reassemble(names, num_frames, recording[:2], frame[:2], values[:2])


def _predictions():
  return {"vid_b": {"valence": np.array([0.1, -0.2, 0.3]), "arousal": np.array([0.5, 0.6, 0.7])},
          "vid_a_left": {"valence": np.array([1.0, -1.0]), "arousal": np.array([0.0, 0.25])}}


def test_submission_file_format(tmp_path):
  path = tmp_path / "sub" / "predictions.csv"
  assert abaw.write_submission(str(path), _predictions()) == 5
  lines = path.read_text().splitlines()
  assert lines[0] == "image_location,valence,arousal"
  assert lines[1:] == [
      "vid_a_left/00001.jpg,1.000000,0.000000", "vid_a_left/00002.jpg,-1.000000,0.250000",
      "vid_b/00001.jpg,0.100000,0.500000", "vid_b/00002.jpg,-0.200000,0.600000",
      "vid_b/00003.jpg,0.300000,0.700000"]


def test_submission_follows_the_sample_file(tmp_path):
  sample = tmp_path / "sample.csv"
  listed = ["vid_b/00002.jpg", "vid_a_left/00001.jpg", "vid_b/00001.jpg", "vid_b/00004.jpg",
            "vid_a_left/00002.jpg", "vid_b/00003.jpg"]
  sample.write_text("image_location,valence,arousal\n" + "".join(f"{x},0,0\n" for x in listed))
  frame_list = abaw.read_sample_file(str(sample))
  path = tmp_path / "out.csv"
  assert abaw.write_submission(str(path), _predictions(), frame_list) == len(listed)
  with open(path, newline="") as f:
    rows = list(csv.reader(f))
  assert rows[0] == ["image_location", "valence", "arousal"]
  assert [r[0] for r in rows[1:]] == listed  # every listed frame, in the listed order
  values = np.array([[float(r[1]), float(r[2])] for r in rows[1:]])
  assert np.all(np.abs(values) <= 1.0)
  # frame 4 of vid_b is past its 3 predicted frames: it takes the last one
  assert rows[4][1:] == ["0.300000", "0.700000"]

  sample.write_text("image_location,valence,arousal\nvid_zzz/00001.jpg,0,0\n")
  with pytest.raises(ValueError, match="no predictions for 1 listed videos, e.g. vid_zzz"):
    abaw.write_submission(str(path), _predictions(), abaw.read_sample_file(str(sample)))
  sample.write_text("video,frame\n")
  with pytest.raises(ValueError, match="not an ABAW sample file"):
    abaw.read_sample_file(str(sample))
  sample.write_text("image_location\nvid_b/first.jpg\n")
  with pytest.raises(ValueError, match=r"sample.csv:2: 'vid_b/first.jpg' is not"):
    abaw.read_sample_file(str(sample))


def test_per_video_txt_files(tmp_path):
  abaw.write_per_video_txt(str(tmp_path), _predictions())
  assert sorted(p.name for p in tmp_path.iterdir()) == ["vid_a_left.txt", "vid_b.txt"]
  assert (tmp_path / "vid_a_left.txt").read_text().splitlines() == [
      "valence,arousal", "1.000000,0.000000", "-1.000000,0.250000"]
