"""BioVid Heat Pain Database, Part A, from its published tree (BUILD_NOTES.md,
Reference 2.2).

Every sample of all five classes is prepared; the class protocol (BL1 vs PA4 or
5-class) and the folds are chosen in the training config, so one preparation serves
every protocol. The subject's face is found and followed with `jmt_jax.faces` (the
largest face) and cut as a box crop.
"""

import os

import cv2
import numpy as np

from jmt_jax.data.records import INVALID_LABEL
from jmt_jax.errors import BadInput
from jmt_jax.faces import crops as crops_lib
from jmt_jax.faces import tracking
from jmt_jax.media import biosignals
from jmt_jax.media import decode
from jmt_jax.media import text_files

SAMPLES_COLUMNS = ("subject_id", "subject_name", "class_id", "class_name", "sample_id",
                   "sample_name")
SEGMENT_FRAMES = 150  # longer than a sample: one record each
INPUTS = ("video", "bio")  # the task fields `process` reads
VERSION = "2: MTCNN face tracker"  # of `process`: a new one redoes every work file


def _samples_csv(raw_dir):
  path = os.path.join(raw_dir, "samples.csv")
  if not os.path.exists(path):
    raise BadInput(f"{raw_dir}: no samples.csv (is this BioVid Part A?)")
  return path


def read_samples(path):
  """Rows of samples.csv as dicts, the header and every row checked."""
  lines = [line for line in text_files.read_lines(path) if line.strip()]
  header = tuple(h.strip() for h in lines[0].split("\t")) if lines else ()
  if header != SAMPLES_COLUMNS:
    raise BadInput(f"{path}: the header should be the tab-separated {list(SAMPLES_COLUMNS)}, "
                   f"found {list(header)}")
  rows = []
  for i, line in enumerate(lines[1:], start=2):
    parts = [p.strip() for p in line.split("\t")]
    if len(parts) != len(SAMPLES_COLUMNS):
      raise BadInput(f"{path}: line {i} has {len(parts)} tab-separated fields, not "
                     f"{len(SAMPLES_COLUMNS)}")
    row = dict(zip(SAMPLES_COLUMNS, parts))
    if not row["class_id"].isdigit() or not 0 <= int(row["class_id"]) <= 4:
      raise BadInput(f"{path}: line {i} has class_id {row['class_id']!r}, not 0..4")
    rows.append(row)
  return rows


def tasks(raw_dir, bio_rate=512, frame_size=112, frame_tolerance=16, face_margin=0.2):
  """One task per row of samples.csv, in its order."""
  out = []
  for row in read_samples(_samples_csv(raw_dir)):
    subject, sample = row["subject_name"], row["sample_name"]
    out.append(dict(name=sample, split="samples", subject=subject, pain=int(row["class_id"]),
                    video=os.path.join(raw_dir, "video", subject, sample + ".mp4"),
                    bio=os.path.join(raw_dir, "biosignals_filtered", subject, sample + "_bio.csv"),
                    bio_rate=bio_rate, frame_size=frame_size, frame_tolerance=frame_tolerance,
                    face_margin=face_margin))
  return out


def process(task):
  """Reads one sample: (arrays, frame blobs, table entry, stats) for `work.store`."""
  bio = biosignals.read(task["bio"], rate=task["bio_rate"])
  with decode.Video(task["video"]) as video:
    frames = list(video.frames())
    fps = video.fps
  if not frames:
    raise BadInput(f"{task['video']}: no frames could be decoded")
  n, rate = len(frames), task["bio_rate"]
  bio = decode.fit_length(bio, int(round(n * rate / fps)), "the biosignal file", task["bio"],
                         tolerance=int(round(task["frame_tolerance"] * rate / fps)))
  track = tracking.Tracks.of_video(frames, tracking.Tracker("largest")).faces.get(0, [None] * n)
  cropper = crops_lib.TrackCrops(track, "box", task["frame_size"], task["face_margin"], "hold")
  crops = [cropper(i, f) for i, f in enumerate(frames)]
  detected = cropper.found
  blobs = [cv2.imencode(".png", cv2.cvtColor(c, cv2.COLOR_RGB2BGR))[1].tobytes()
           if detected.any() else b"" for c in crops]
  invalid = np.full(n, INVALID_LABEL, np.float32)
  arrays = dict(face_found=detected, valence=invalid, arousal=invalid,
                audio=np.zeros(0, np.int16), biosignal=bio, pain=np.int64(task["pain"]))
  entry = dict(name=task["name"], num_frames=n, pain=task["pain"], fps=fps,
               subject=task["subject"])
  stats = dict(frames=n, clips=1, missing_faces=int((~detected).sum()),
               videos_without_face=int(not detected.any()), unreadable_files=[])
  return arrays, blobs, entry, stats
