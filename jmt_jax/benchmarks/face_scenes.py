"""Videos of real photographs for measuring face detection (benchmarks.faces, tests).

A photographed person is warped (scale, small rotation, drifting position) into a frame
over a face-free photograph, so each frame's true face box and eye positions are known.
The photographs are those bundled with scikit-image (the astronaut) and matplotlib (Grace
Hopper); the face-free ones are scikit-image's. scikit-image comes with the `test` extra.
"""

import dataclasses
import io
import os

import av
import cv2
import matplotlib
import numpy as np


@dataclasses.dataclass(frozen=True)
class Person:
  name: str
  image: np.ndarray  # RGB
  box: np.ndarray  # (4,) x0, y0, x1, y1 of the face in `image`, checked by eye
  eyes: np.ndarray  # (2, 2) left and right eye (as seen), checked by eye

  @property
  def width(self):
    return float(self.box[2] - self.box[0])


def people():
  import skimage.data  # pylint: disable=import-outside-toplevel
  hopper = cv2.imread(os.path.join(os.path.dirname(matplotlib.__file__), "mpl-data",
                                   "sample_data", "grace_hopper.jpg"))
  return [Person("astronaut", skimage.data.astronaut(), np.array([182., 60., 268., 175.]),
                 np.array([[204., 101.], [247., 103.]])),
          Person("hopper", cv2.cvtColor(hopper, cv2.COLOR_BGR2RGB),
                 np.array([171., 110., 347., 339.]), np.array([[221., 190.], [307., 186.]]))]


def backgrounds():
  """Face-free photographs, RGB."""
  import skimage.data  # pylint: disable=import-outside-toplevel
  grey = lambda x: np.repeat(x[..., None], 3, -1)
  return {"chelsea (a cat)": skimage.data.chelsea(), "coffee": skimage.data.coffee(),
          "rocket": skimage.data.rocket(), "hubble": skimage.data.hubble_deep_field(),
          "motorcycle": skimage.data.stereo_motorcycle()[0], "brick": grey(skimage.data.brick()),
          "grass": grey(skimage.data.grass()), "gravel": grey(skimage.data.gravel()),
          "coins": grey(skimage.data.coins())}


def fill(image, height, width):
  """`image` resized to cover (height, width), centre-cropped."""
  scale = max(height / image.shape[0], width / image.shape[1])
  big = cv2.resize(image, (int(np.ceil(image.shape[1] * scale)),
                           int(np.ceil(image.shape[0] * scale))), interpolation=cv2.INTER_AREA)
  top, left = (big.shape[0] - height) // 2, (big.shape[1] - width) // 2
  return np.ascontiguousarray(big[top:top + height, left:left + width])


@dataclasses.dataclass
class Truth:
  boxes: np.ndarray  # (N, P, 4) true face boxes per frame and person; NaN where absent
  eyes: np.ndarray  # (N, P, 2, 2)


def place(frame, person, face_px, centre, angle_deg):
  """Warps the head of `person` (its face box and 60% of its width around) into `frame`
  (in place) with the face `face_px` wide, centred at `centre` and turned by
  `angle_deg`; returns (box, eyes) in the frame."""
  x0, y0, x1, y1 = person.box
  pad = 0.6 * (x1 - x0)
  cx0, cy0 = int(max(0, x0 - pad)), int(max(0, y0 - pad))
  head = person.image[cy0:int(y1 + pad), cx0:int(x1 + pad)]
  offset = np.array([cx0, cy0], np.float64)
  mid = (person.box[:2] + person.box[2:]) / 2 - offset
  scale = face_px / person.width
  m = cv2.getRotationMatrix2D((float(mid[0]), float(mid[1])), angle_deg, scale)
  m[:, 2] += np.asarray(centre) - mid
  cv2.warpAffine(head, m, (frame.shape[1], frame.shape[0]), dst=frame,
                 flags=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR,
                 borderMode=cv2.BORDER_TRANSPARENT)
  half = np.array([face_px, face_px * (y1 - y0) / (x1 - x0)]) / 2
  return np.concatenate([centre - half, centre + half]), (person.eyes - offset) @ m[:, :2].T + m[:, 2]


def video(height, width, n, cast, face_px, background, seed=0, present=None, speed=0.05):
  """(frames (n, H, W, 3) uint8, Truth): each of `cast` (Persons) drifts across its own
  band of the frame by up to `speed` face widths a frame, its face `face_px` wide
  (+-10%), turned up to +-10 degrees. `present[i, p]` says whether person p is in frame
  i (default: always)."""
  rng = np.random.default_rng(seed)
  base = fill(background, height, width)
  frames = np.repeat(base[None], n, 0)
  boxes = np.full((n, len(cast), 4), np.nan)
  eyes = np.full((n, len(cast), 2, 2), np.nan)
  band = width / max(1, len(cast))
  margin = 0.8 * face_px
  starts = [(band * p + min(margin, band / 2), rng.uniform(margin, height - margin))
            for p in range(len(cast))]
  ends = [(band * (p + 1) - min(margin, band / 2), rng.uniform(margin, height - margin))
          for p in range(len(cast))]
  phase = rng.uniform(0, 2 * np.pi, size=len(cast))
  for p in range(len(cast)):
    path = np.subtract(ends[p], starts[p])
    reach = min(1.0, speed * face_px * max(1, n - 1) / max(np.linalg.norm(path), 1e-9))
    ends[p] = tuple(np.add(starts[p], reach * path))
  for i in range(n):
    t = i / max(1, n - 1)
    for p, person in enumerate(cast):
      if present is not None and not present[i, p]:
        continue
      centre = (1 - t) * np.array(starts[p]) + t * np.array(ends[p])
      size = face_px * (1 + 0.1 * np.sin(2 * np.pi * t + phase[p]))
      angle = 10 * np.sin(4 * np.pi * t + phase[p])
      boxes[i, p], eyes[i, p] = place(frames[i], person, size, centre, angle)
  return frames, Truth(boxes, eyes)


def jpeg(frames, quality=75):
  out = np.empty_like(frames)
  for i, f in enumerate(frames):
    ok, blob = cv2.imencode(".jpg", f[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    out[i] = cv2.imdecode(blob, cv2.IMREAD_COLOR)[..., ::-1]
  return out


def h264(frames, fps=25):
  """The frames through an H.264 encode (libx264 defaults, yuv420p) and decode."""
  buf = io.BytesIO()
  with av.open(buf, "w", format="mp4") as out:
    stream = out.add_stream("libx264", rate=fps)
    stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
    for f in frames:
      out.mux(stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")))
    out.mux(stream.encode())
  buf.seek(0)
  with av.open(buf) as src:
    return np.stack([f.to_ndarray(format="rgb24") for f in src.decode(video=0)])


def matches(face_box, true_box):
  """Whether a detected box is the true face: centres within half a face, sizes within
  a factor of 1.6 (detectors draw boxes of different shapes)."""
  size = true_box[2] - true_box[0]
  det = max(face_box[2] - face_box[0], face_box[3] - face_box[1])
  centre = lambda b: (np.asarray(b[:2]) + np.asarray(b[2:])) / 2
  return (np.linalg.norm(centre(face_box) - centre(true_box)) < 0.5 * size and
          1 / 1.6 < det / size < 1.6)
