"""Faces followed through a video: a full detection now and then, O-Net in between.

Each frame, every followed face is looked for again on its previous box (`MTCNN.follow`,
one 48x48 network pass a face). A full detection runs on the first frame, every
`redetect_every` frames, on every frame while no face is followed, and for
`redetect_every` frames after a face was lost, so a face that reappears is found at once.
A full detection confirms the followed faces it overlaps and starts tracks for the new
ones; a track that `max_misses` full detections in a row do not confirm is dropped (a
follower stuck on background). Every face reported on a frame was seen by O-Net on that
frame: nothing is carried over a frame where the network does not see it.

`faces="largest"` keeps one track (id 0): the largest face of the latest full detection.
`faces="all"` keeps one per person; a face found again after being lost takes the id of
the nearest lost track that could have drifted there (within `max_gap` frames) rather
than a new one, so occlusions, a person stepping out and missed frames do not split a
person.
"""

import numpy as np

from jmt_jax.faces import mtcnn

MODES = ("largest", "all")


def iou(a, b):
  w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
  h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
  inter = w * h
  union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
  return inter / union if union > 0 else 0.0


def _near(face, lost, gap):
  """Whether `face` could be the same person as a track last seen as `lost`, `gap`
  frames ago: about as large, and no further than a person drifts in that time (from
  three quarters of a face at once to three faces)."""
  ratio = face.size / max(lost.size, 1e-6)
  reach = min(3.0, 0.75 + 0.05 * gap) * lost.size
  return np.linalg.norm(face.centre - lost.centre) < reach and 2 / 3 < ratio < 3 / 2


class Tracker:
  """Call it on each RGB frame in order; it returns {track id: mtcnn.Face}."""

  def __init__(self, faces="largest", detector=None, redetect_every=5, max_misses=2,
               max_gap=None):
    if faces not in MODES:
      raise ValueError(f"faces={faces!r}: use one of {MODES}")
    self.mode = faces
    self.detector = detector if detector is not None else mtcnn.MTCNN()
    self.redetect_every, self.max_misses = redetect_every, max_misses
    self.max_gap = max_gap if max_gap is not None else 20 * redetect_every
    self.frame = -1
    self.active = {}  # id -> Face on the previous frame
    self.misses = {}  # id -> full detections in a row that did not confirm it
    self.lost = {}  # id -> (Face when last seen, frame)
    self.last_loss = -10**9
    self.next_id = 0
    self.detections = 0  # full detections run, for the cost

  def _lose(self, tid, face):
    self.lost[tid] = (face, self.frame)
    self.last_loss = self.frame
    self.active.pop(tid, None)
    self.misses.pop(tid, None)

  def _start(self, face):
    if self.mode == "largest":
      tid = 0
    else:
      near = [(np.linalg.norm(face.centre - last.centre), t)
              for t, (last, seen) in self.lost.items()
              if self.frame - seen <= self.max_gap and _near(face, last, self.frame - seen)]
      tid = min(near)[1] if near else None
    if tid is None:
      tid, self.next_id = self.next_id, self.next_id + 1
    self.lost.pop(tid, None)
    self.active[tid], self.misses[tid] = face, 0

  def _detect(self, rgb):
    self.detections += 1
    found = self.detector.detect(rgb)
    if self.mode == "largest":
      found = sorted(found, key=lambda f: -f.size)[:1]
      current = self.active.get(0)
      if found and (current is None or iou(current.box, found[0].box) < 0.3):
        self._start(found[0])  # the largest face is now another one
      elif current is not None:
        self.misses[0] = 0 if found else self.misses[0] + 1
      return
    matched = set()
    for tid, face in list(self.active.items()):
      best = max(range(len(found)), key=lambda k: iou(face.box, found[k].box), default=None)
      if best is not None and iou(face.box, found[best].box) >= 0.3:
        matched.add(best)
        self.misses[tid] = 0
      else:
        self.misses[tid] += 1
    for k, face in enumerate(found):
      if k not in matched:
        self._start(face)

  def __call__(self, rgb):
    self.frame += 1
    ids = list(self.active)
    for tid, face in zip(ids, self.detector.follow(rgb, [self.active[t] for t in ids])):
      if face is None:
        self._lose(tid, self.active[tid])
      else:
        self.active[tid] = face
    if (not self.active or self.frame % self.redetect_every == 0 or
        self.frame - self.last_loss < self.redetect_every):
      self._detect(rgb)
    for tid in [t for t, m in self.misses.items() if m >= self.max_misses]:
      self._lose(tid, self.active[tid])
    # Two followers that converged on one face: the older keeps it.
    for tid in sorted(self.active):
      for other in [t for t in sorted(self.active) if t > tid]:
        if tid in self.active and iou(self.active[tid].box, self.active[other].box) > 0.5:
          self._lose(other, self.active[other])
    return dict(self.active)


class Tracks:
  """What a tracker saw in a whole video: per track, the face on each frame or None."""

  def __init__(self, num_frames, faces):
    self.num_frames = num_frames
    self.faces = faces  # {id: [Face or None] * num_frames}

  @classmethod
  def of_video(cls, frames, tracker):
    seen = {}
    n = 0
    for n, rgb in enumerate(frames, start=1):
      for tid, face in tracker(rgb).items():
        seen.setdefault(tid, {})[n - 1] = face
    return cls(n, {tid: [by_frame.get(i) for i in range(n)] for tid, by_frame in seen.items()})

  def found(self, tid):
    return np.array([f is not None for f in self.faces[tid]], bool)

  def people(self, min_frames):
    """Ids of the tracks seen on at least `min_frames` frames, left to right by their
    mean horizontal position; and how many shorter tracks were left out."""
    kept = [t for t in self.faces if self.found(t).sum() >= min_frames]
    x = {t: np.mean([f.centre[0] for f in self.faces[t] if f is not None]) for t in kept}
    return sorted(kept, key=lambda t: (x[t], t)), len(self.faces) - len(kept)
