"""The ABAW valence-arousal protocol: per-frame predictions reassembled per video,
post-processed, and written as the challenge's files (scored by `tasks.metrics.ccc`).

Post-processing, as common in ABAW entries: predictions clipped to [-1, 1], then
optionally a moving average per video: a window of `w` frames from frame i - w//2 to
i - w//2 + w - 1, shrunk at the video's ends (the mean over the frames that exist).
"""

import csv
import os

import numpy as np

from jmt_jax.data.records import DIMENSIONS
from jmt_jax.media import text_files


def reassemble(names, num_frames, recording, frame, values):
  """{video name: (num_frames, ...) array} from per-clip predictions.

  `recording` (index into `names`) and `frame` say where each of `values` belongs; clips
  past a video's last frame (evaluation windows are padded) are dropped. Every frame
  must be predicted exactly once.
  """
  recording, frame = np.asarray(recording).reshape(-1), np.asarray(frame).reshape(-1)
  values = np.asarray(values).reshape((len(frame),) + np.shape(values)[2:])
  out = {}
  for r in np.unique(recording):
    n = int(num_frames[r])
    keep = (recording == r) & (frame >= 0) & (frame < n)
    counts = np.bincount(frame[keep], minlength=n)
    if (counts != 1).any():
      missing, repeated = np.flatnonzero(counts == 0), np.flatnonzero(counts > 1)
      raise ValueError(f"{names[r]}: predictions cover its {n} frames unevenly "
                       f"({len(missing)} missing, {len(repeated)} predicted more than once)")
    array = np.empty((n,) + values.shape[1:], values.dtype)
    array[frame[keep]] = values[keep]
    out[names[r]] = array
  return out


def per_video(table, preds, labels):
  """({video: {dim: (n,)}} predictions, same for labels) of a split's per-clip `preds` and
  `labels` (with `recording` and `frame`), placed by `reassemble` over `table`'s videos."""
  def split(arrays):
    return {d: reassemble(table.names, table.num_frames, labels["recording"],
                          labels["frame"], arrays[d]) for d in DIMENSIONS}
  p, l = split(preds), split(labels)
  videos = p[DIMENSIONS[0]]
  return ({v: {d: p[d][v] for d in DIMENSIONS} for v in videos},
          {v: {d: l[d][v] for d in DIMENSIONS} for v in videos})


def moving_average(x, window):
  """Per-frame mean over `window` frames around each frame (see the module docstring)."""
  x = np.asarray(x, np.float64)
  if window <= 1 or len(x) == 0:
    return x
  csum = np.concatenate([[0.0], np.cumsum(x)])
  i = np.arange(len(x))
  lo = np.clip(i - window // 2, 0, len(x))
  hi = np.clip(i - window // 2 + window, 0, len(x))
  return (csum[hi] - csum[lo]) / (hi - lo)


def postprocess(per_video, smoothing):
  """{video: {dim: (n,)}} clipped to [-1, 1] and smoothed with `smoothing[dim]` frames
  (0 or 1: no smoothing)."""
  return {v: {d: moving_average(np.clip(p[d], -1.0, 1.0), smoothing.get(d, 0)) for d in p}
          for v, p in per_video.items()}


def read_sample_file(path):
  """[(video, frame number)] in the order of an organisers' sample submission file."""
  rows = list(csv.reader(text_files.read_lines(path)))
  if not rows or [c.strip() for c in rows[0][:1]] != ["image_location"]:
    raise ValueError(f"{path}: not an ABAW sample file (its first line should start with "
                     f"'image_location')")
  out = []
  for line, row in enumerate(rows[1:], start=2):
    if not row:
      continue
    video, _, image = row[0].strip().rpartition("/")
    stem = os.path.splitext(image)[0]
    if not video or not stem.isdigit():
      raise ValueError(f"{path}:{line}: {row[0]!r} is not <video>/<NNNNN>.jpg")
    out.append((video, int(stem)))
  return out


def write_submission(path, predictions, frame_list=None):
  """The ABAW CSV `image_location,valence,arousal`, one row per frame; returns the number
  of rows.

  `frame_list` ([(video, 1-based frame)], e.g. from `read_sample_file`) fixes the rows and
  their order; without it, every frame of every video in sorted order. A listed frame
  past the end of its video's predictions (frame counts differ by a few frames between
  crops, labels and decoded video) takes the video's last prediction; a listed video
  without predictions is an error.
  """
  if frame_list is None:
    frame_list = [(v, k + 1) for v in sorted(predictions)
                  for k in range(len(predictions[v][DIMENSIONS[0]]))]
  missing = sorted({v for v, _ in frame_list} - set(predictions))
  if missing:
    raise ValueError(f"no predictions for {len(missing)} listed videos, e.g. {missing[0]}: "
                     f"is the split the test list's?")
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  with open(path, "w", newline="") as f:
    f.write(",".join(("image_location",) + DIMENSIONS) + "\n")
    for video, k in frame_list:
      p = predictions[video]
      i = min(k, len(p[DIMENSIONS[0]])) - 1
      f.write(f"{video}/{k:05d}.jpg," + ",".join(f"{p[d][i]:.6f}" for d in DIMENSIONS) + "\n")
  return len(frame_list)


def write_per_video_txt(directory, predictions):
  """Older editions' format: `<video>.txt` with `valence,arousal` and one line per frame."""
  os.makedirs(directory, exist_ok=True)
  for video, p in predictions.items():
    with open(os.path.join(directory, f"{video}.txt"), "w") as f:
      f.write(",".join(DIMENSIONS) + "\n")
      for values in zip(*(p[d] for d in DIMENSIONS)):
        f.write(",".join(f"{x:.6f}" for x in values) + "\n")

