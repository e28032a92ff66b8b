"""Face detection on real photographs: recall, false detections and frames/s on one core.

  python -m jmt_jax.benchmarks.faces
  python -m jmt_jax.benchmarks.faces --detectors=tracked,mtcnn,haar --frames=40

Videos of `face_scenes`: the astronaut and Grace Hopper at face widths of 48 to 160
pixels, drifting and turning (+-10 degrees) over face-free photographs in 640x360 and
1280x720 frames, raw, as JPEG (q75) and through H.264. Then 100 people: scikit-image's
LFW subset (25x25 grey face crops of 100 people, and 100 face-free crops), upscaled to
64-128 px into a 640x360 frame, one still frame each. Recall counts frames where a
reported face is the true one; a false detection is a frame of a face-free video with
any face reported, or a reported face elsewhere than the true one. Detectors:
- tracked: what jmt_jax uses (`faces.tracking.Tracker`, faces="all");
- mtcnn: a full MTCNN detection on every frame;
- haar: OpenCV's Haar cascade at the settings jmt_jax used before it (320 px wide);
- dlib: dlib's HOG detector, upsampled once (needs `pip install dlib-bin`; not a
  dependency of jmt_jax).
Needs scikit-image (`pip install -e ".[test]"`).
"""

import os
import time

import cv2
import numpy as np
from absl import app
from absl import flags

from jmt_jax.benchmarks import face_scenes
from jmt_jax.faces import mtcnn
from jmt_jax.faces import tracking
from jmt_jax.runtime import cli

FLAGS = flags.FLAGS

RESOLUTIONS = ((360, 640), (720, 1280))
COMPRESSIONS = {"raw": lambda f: f, "jpeg q75": face_scenes.jpeg, "h264": face_scenes.h264}


def _haar():
  cascade = cv2.CascadeClassifier(os.path.join(cv2.data.haarcascades,
                                               "haarcascade_frontalface_default.xml"))

  def detect(rgb):
    scale = min(1.0, 320 / rgb.shape[1])
    gray = cv2.equalizeHist(cv2.resize(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), None, fx=scale,
                                       fy=scale, interpolation=cv2.INTER_AREA))
    side = max(16, min(gray.shape) // 8)
    found = cascade.detectMultiScale(gray, 1.1, 4, minSize=(side, side))
    return [np.array([x, y, x + w, y + h], np.float64) / scale for x, y, w, h in found]

  return lambda frames: [detect(f) for f in frames]


def _dlib():
  import dlib  # pylint: disable=import-outside-toplevel
  detector = dlib.get_frontal_face_detector()
  return lambda frames: [[np.array([r.left(), r.top(), r.right(), r.bottom()], np.float64)
                          for r in detector(f, 1)] for f in frames]


def _runner(name):
  """frames -> per frame, the list of reported boxes."""
  if name == "haar":
    return _haar()
  if name == "dlib":
    return _dlib()
  if name == "mtcnn":
    det = mtcnn.MTCNN()
    return lambda frames: [[f.box for f in det.detect(x)] for x in frames]
  if name == "tracked":
    def run(frames):
      tracker = tracking.Tracker("all")
      return [[f.box for f in tracker(x).values()] for x in frames]
    return run
  raise app.UsageError(f"--detectors: unknown {name!r}")


def _score(reported, truth):
  """(true-face frames, face frames, frames with a false detection)."""
  hits = faces = false = 0
  for boxes, true_boxes in zip(reported, truth.boxes):
    present = [t for t in true_boxes if not np.isnan(t).any()]
    faces += len(present)
    hits += sum(any(face_scenes.matches(b, t) for b in boxes) for t in present)
    false += any(not any(face_scenes.matches(b, t) for t in present) for b in boxes)
  return hits, faces, false


def _measure(runners, frames, truth, counts, timing):
  """Adds each detector's scores on `frames` to `counts`, its seconds and frames to
  `timing` (None: not timed)."""
  for d, run in runners.items():
    start = time.perf_counter()
    reported = run(frames)
    if timing is not None:
      timing[d] += (time.perf_counter() - start, len(frames))
    counts[d] += _score(reported, truth)


def _lfw(runners):
  """Recall on LFW's 100 faces and false detections on its 100 face-free crops."""
  import skimage.data  # pylint: disable=import-outside-toplevel
  crops = (skimage.data.lfw_subset() * 255).astype(np.uint8)
  base = face_scenes.fill(face_scenes.backgrounds()["coffee"], 360, 640)
  print("\nLFW subset (100 people, 25x25 crops upscaled), 640x360, still frames")
  print("| face px | " + " | ".join(f"{d}: faces found, face-free crops with a detection"
                                      for d in runners) + " |")
  print("|---|" + "---|" * len(runners))
  for side in (64, 96, 128):
    frames = np.repeat(base[None], len(crops), 0)
    for frame, crop in zip(frames, crops):
      frame[100:100 + side, 200:200 + side] = cv2.resize(
          crop, (side, side), interpolation=cv2.INTER_CUBIC)[..., None]
    truth = np.full((len(crops), 1, 4), np.nan)
    truth[:100, 0] = (200, 100, 200 + side, 100 + side)
    cells = []
    for d, run in runners.items():
      # One frame at a time: a tracker must not carry a face from one crop to the next.
      reported = [run(f[None])[0] for f in frames]
      hits, _, _ = _score(reported[:100], face_scenes.Truth(truth[:100], None))
      false = sum(bool(r) for r in reported[100:])
      cells.append(f"{hits}/100, {false}/100")
    print(f"| {side} | " + " | ".join(cells) + " |")


def main(argv):
  del argv
  cv2.setNumThreads(1)
  people, backgrounds = face_scenes.people(), face_scenes.backgrounds()
  names = list(backgrounds)
  runners = {d: _runner(d) for d in FLAGS.detectors}
  n = FLAGS.frames
  print(f"{n} frames a video; recall = true-face frames / face frames; one CPU thread")
  for h, w in RESOLUTIONS:
    timing = {what: {d: np.zeros(2) for d in runners} for what in ("face", "face-free")}
    rows = []
    for comp, squash in COMPRESSIONS.items():
      timed = lambda what: timing[what] if comp == "raw" else None  # pylint: disable=cell-var-from-loop
      for size in map(int, FLAGS.sizes):
        counts = {d: np.zeros(3, np.int64) for d in runners}
        for k, person in enumerate(people):
          frames, truth = face_scenes.video(h, w, n, [person], size,
                                            backgrounds[names[(k + size) % len(names)]],
                                            seed=size + k)
          _measure(runners, squash(frames), truth, counts, timed("face"))
        rows.append((comp, size, counts))
      counts = {d: np.zeros(3, np.int64) for d in runners}
      empty = face_scenes.Truth(np.full((n, 0, 4), np.nan), None)
      for name in names:
        frames = squash(face_scenes.video(h, w, n, [], 0, backgrounds[name])[0])
        _measure(runners, frames, empty, counts, timed("face-free"))
      rows.append((comp, "none", counts))
    print(f"\n{w}x{h}: recall (false detections) by detector")
    print("| compression | face px | " + " | ".join(runners) + " |")
    print("|---|---|" + "---|" * len(runners))
    for comp, size, counts in rows:
      cells = []
      for d in runners:
        hits, faces, false = counts[d]
        frames_seen = faces if size != "none" else n * len(names)
        recall = f"{hits / faces:.1%}" if faces else "-"
        cells.append(f"{recall} ({false / max(frames_seen, 1):.1%})")
      print(f"| {comp} | {size} | " + " | ".join(cells) + " |")
    for what, times in timing.items():
      print(f"frames/s on {what} videos (raw): " + ", ".join(
          f"{d} {t[1] / t[0]:.1f}" for d, t in times.items()))
  _lfw(runners)


def _define_flags():
  flags.DEFINE_list("detectors", ["tracked", "mtcnn", "haar"], "Which to measure.")
  flags.DEFINE_integer("frames", 30, "Frames per video.")
  flags.DEFINE_list("sizes", ["48", "64", "96", "160"], "Face widths, pixels.")


if __name__ == "__main__":
  cli.app_run(main, _define_flags)
