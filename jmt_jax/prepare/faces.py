"""Face location and cropping with the Haar cascade that ships inside the OpenCV wheel.

Detection runs on a copy of the frame scaled to `detect_width` pixels wide (Haar cost
grows with the area; faces in these recordings are large). A frame where the cascade
finds nothing borrows the box of the nearest frame where it found one, since the
subjects barely move within a sample; such frames are counted, and a video with no
detection at all is cropped to zeros and flagged frame by frame.
"""

import functools
import os

import cv2
import numpy as np

CASCADE = "haarcascade_frontalface_default.xml"


@functools.lru_cache(maxsize=1)
def _cascade():
  path = os.path.join(cv2.data.haarcascades, CASCADE)
  cascade = cv2.CascadeClassifier(path)
  if cascade.empty():
    raise RuntimeError(f"cannot load OpenCV's bundled cascade {path}: is opencv-python-headless "
                       f"older than 5.0 installed?")
  return cascade


def detect(rgb, detect_width=320):
  """(x, y, w, h) of the largest face in an RGB frame, in its pixels, or None."""
  scale = min(1.0, detect_width / rgb.shape[1])
  gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
  if scale < 1.0:
    gray = cv2.resize(gray, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
  gray = cv2.equalizeHist(gray)
  min_side = max(16, min(gray.shape) // 8)
  found = _cascade().detectMultiScale(gray, scaleFactor=1.1, minNeighbors=4,
                                      minSize=(min_side, min_side))
  if len(found) == 0:
    return None
  x, y, w, h = max(found, key=lambda b: b[2] * b[3])
  return tuple(float(v) / scale for v in (x, y, w, h))


def crop(rgb, box, size, margin):
  """The square of side (1 + margin) * max(w, h) centred on `box`, zero outside the
  frame, resized to (size, size)."""
  x, y, w, h = box
  side = (1.0 + margin) * max(w, h)
  x0, y0 = int(round(x + w / 2 - side / 2)), int(round(y + h / 2 - side / 2))
  s = int(round(side))
  out = np.zeros((s, s, 3), np.uint8)
  sx0, sy0 = max(0, x0), max(0, y0)
  sx1, sy1 = min(rgb.shape[1], x0 + s), min(rgb.shape[0], y0 + s)
  if sx1 > sx0 and sy1 > sy0:
    out[sy0 - y0:sy1 - y0, sx0 - x0:sx1 - x0] = rgb[sy0:sy1, sx0:sx1]
  return cv2.resize(out, (size, size), interpolation=cv2.INTER_AREA)


def crop_video(frames, size, margin=0.2):
  """(crops (N, size, size, 3) uint8, detected (N,) bool) for a list of RGB frames."""
  boxes = [detect(f) for f in frames]
  detected = np.array([b is not None for b in boxes])
  crops = np.zeros((len(frames), size, size, 3), np.uint8)
  if not detected.any():
    return crops, detected
  hits = np.flatnonzero(detected)
  for i, frame in enumerate(frames):
    nearest = hits[np.argmin(np.abs(hits - i))]
    crops[i] = crop(frame, boxes[nearest], size, margin)
  return crops, detected


class StreamingCropper:
  """Face crops of a stream of frames, one frame at a time, as the training data's were
  made: the same cascade, square box, margin and size.

  A frame without a detection is cropped to zeros (`missing="zeros"`: Aff-Wild2 and
  the built-in data store no face as a zero frame) or with the newest earlier box
  (`missing="hold"`: BioVid borrows a nearby frame's box; a stream cannot look ahead, so
  frames before the first detection stay zeros). Either way it is reported as not found.
  """

  def __init__(self, size, margin=0.2, missing="zeros"):
    if missing not in ("zeros", "hold"):
      raise ValueError(f"missing={missing!r}: use 'zeros' or 'hold'")
    self.size, self.margin, self.missing = size, margin, missing
    self.box = None

  def __call__(self, rgb):
    """(crop (size, size, 3) uint8, whether a face was detected on this frame)."""
    box = detect(rgb)
    if box is not None:
      self.box = box
    use = box if self.missing == "zeros" else self.box
    if use is None:
      return np.zeros((self.size, self.size, 3), np.uint8), False
    return crop(rgb, use, self.size, self.margin), box is not None
