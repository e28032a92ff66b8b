"""The two face crops a model can be trained on.

- `aligned`: the five landmarks mapped by a similarity transform (rotation, uniform
  scale, shift) onto a fixed template, approximating Aff-Wild2's `cropped_aligned`
  frames. The organisers do not publish their template; this is the standard 112x112
  five-point one (ArcFace / insightface's `norm_crop`).
- `box`: the square of side (1 + margin) * max(w, h) around the detector's box, as BioVid
  crops are made.
Both are zero outside the frame.
"""

import cv2
import numpy as np

# Left eye, right eye, nose tip, mouth corners (as seen) in a 112x112 crop.
TEMPLATE_112 = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
                         [41.5493, 92.3655], [70.7299, 92.2041]])
KINDS = ("aligned", "box")


def similarity(src, dst):
  """The 2x3 similarity transform taking points `src` (K, 2) closest to `dst` in least
  squares (Umeyama, 1991)."""
  mu_s, mu_d = src.mean(0), dst.mean(0)
  s, d = src - mu_s, dst - mu_d
  u, sig, vt = np.linalg.svd(d.T @ s / len(src))
  sign = np.diag([1.0, np.sign(np.linalg.det(u @ vt))])
  rot = u @ sign @ vt
  scale = np.trace(np.diag(sig) @ sign) / s.var(0).sum()
  return np.concatenate([scale * rot, (mu_d - scale * rot @ mu_s)[:, None]], 1)


def aligned(rgb, landmarks, size):
  """(size, size, 3) crop with `landmarks` (5, 2) placed on the template."""
  m = similarity(np.asarray(landmarks, np.float64), TEMPLATE_112 * (size / 112.0))
  return cv2.warpAffine(rgb, m, (size, size), flags=cv2.INTER_LINEAR,
                        borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def box(rgb, face_box, size, margin):
  """(size, size, 3) square crop around `face_box` = (x0, y0, x1, y1)."""
  x0, y0, x1, y1 = face_box
  side = (1.0 + margin) * max(x1 - x0, y1 - y0)
  left, top = int(round((x0 + x1) / 2 - side / 2)), int(round((y0 + y1) / 2 - side / 2))
  s = max(1, int(round(side)))
  out = np.zeros((s, s, 3), np.uint8)
  sx0, sy0 = max(0, left), max(0, top)
  sx1, sy1 = min(rgb.shape[1], left + s), min(rgb.shape[0], top + s)
  if sx1 > sx0 and sy1 > sy0:
    out[sy0 - top:sy1 - top, sx0 - left:sx1 - left] = rgb[sy0:sy1, sx0:sx1]
  return cv2.resize(out, (size, size), interpolation=cv2.INTER_AREA)


def crop(rgb, face, kind, size, margin):
  """The `kind` crop of a detected `mtcnn.Face`."""
  if kind == "aligned":
    return aligned(rgb, face.landmarks, size)
  if kind == "box":
    return box(rgb, face.box, size, margin)
  raise ValueError(f"face_crop={kind!r}: use one of {KINDS}")


class TrackCrops:
  """The crops of one tracked face, frame by frame: `faces[i]` is the `mtcnn.Face` on
  frame i or None. A frame without it is a zero crop (`missing="zeros"`: Aff-Wild2 and
  the built-in data store no face as a zero frame) or cut at the nearest frame's face
  (`missing="hold"`: BioVid, whose subject barely moves in a sample); either way it is
  reported as not found (`self.found`). `causal`: "hold" looks only back, to the last
  face seen (live prediction cannot see the next one)."""

  def __init__(self, faces, kind, size, margin=0.2, missing="zeros", causal=False):
    if missing not in ("zeros", "hold"):
      raise ValueError(f"missing_face={missing!r}: use 'zeros' or 'hold'")
    if kind not in KINDS:
      raise ValueError(f"face_crop={kind!r}: use one of {KINDS}")
    self.faces, self.kind, self.size, self.margin = faces, kind, size, margin
    self.found = np.array([f is not None for f in faces], bool)
    self.source = [i if self.found[i] else None for i in range(len(faces))]
    if missing == "hold":
      hits = np.flatnonzero(self.found)
      for i in np.flatnonzero(~self.found):
        seen = hits[hits < i] if causal else hits
        if len(seen):
          self.source[i] = int(seen[np.argmin(np.abs(seen - i))])

  def __call__(self, i, rgb):
    if self.source[i] is None:
      return np.zeros((self.size, self.size, 3), np.uint8)
    return crop(rgb, self.faces[self.source[i]], self.kind, self.size, self.margin)
