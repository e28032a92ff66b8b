"""Aff-Wild2 (ABAW valence-arousal track) from the organisers' tree (BUILD_NOTES.md,
Reference 2.1).

The tree is searched rather than assumed: releases put the annotations under a root
named after the challenge edition and the raw videos in batch sub-folders, so the
`VA_Estimation_Challenge` and `cropped_aligned` folders and the videos are located by
name. Labels are the reference for a recording's frame count; crops and audio are fit
to it within `frame_tolerance` frames.
"""

import math
import os
import re

import cv2
import numpy as np

from jmt_jax.data.records import INVALID_LABEL
from jmt_jax.errors import BadInput
from jmt_jax.media import decode
from jmt_jax.media import text_files

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".webm", ".mov")
SPLIT_FOLDERS = {"train": "Train_Set", "validation": "Validation_Set"}
LABEL_HEADER = "valence,arousal"
SEGMENT_FRAMES = 64
INPUTS = ("labels", "crops", "video")  # the task fields `process` reads
VERSION = "3: crops in any image format"  # of `process`: a new one redoes every work file
CROP_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")  # first is used


def _find_dirs(root, name):
  return sorted(os.path.join(d, name) for d, subdirs, _ in os.walk(root) if name in subdirs)


def _one_dir(root, name):
  found = _find_dirs(root, name)
  if not found:
    raise BadInput(f"{root}: no folder named {name} anywhere below it (is this the Aff-Wild2 "
                   f"tree?)")
  if len(found) > 1:
    raise BadInput(f"{root}: several folders named {name} ({', '.join(found)}): point --raw_dir "
                   f"at one release")
  return found[0]


def _videos(root, skip):
  """{name: [paths]} of the raw videos under `root`."""
  out = {}
  for d, subdirs, files in os.walk(root):
    subdirs[:] = sorted(s for s in subdirs if os.path.join(d, s) != skip)
    for f in sorted(files):
      stem, ext = os.path.splitext(f)
      if ext.lower() in VIDEO_EXTENSIONS:
        out.setdefault(stem, []).append(os.path.join(d, f))
  return out


def _test_list(root, test_list):
  if not test_list:
    found = sorted(os.path.join(d, f) for d, _, files in os.walk(root) for f in files
                   if re.search(r"test.*set.*\.txt$", f, re.I))
    if len(found) > 1:
      raise BadInput(f"{root}: several test-set lists ({', '.join(found)}): choose one with "
                     f"--test_list")
    if not found:
      return []
    test_list = found[0]
  names = [os.path.splitext(line.strip().split(",")[0])[0]
           for line in text_files.read_lines(test_list) if line.strip()]
  return [n for n in names if n.lower() not in ("video", "name", "videos")]


def tasks(raw_dir, test_list="", audio_rate=44100, frame_size=112, frame_tolerance=16):
  """One task per recording (annotation file or test-list entry), in a fixed order."""
  va = _one_dir(raw_dir, "VA_Estimation_Challenge")
  crops = _one_dir(raw_dir, "cropped_aligned")
  videos = _videos(raw_dir, skip=crops)
  common = dict(audio_rate=audio_rate, frame_size=frame_size, frame_tolerance=frame_tolerance)
  out = []
  for split, folder in SPLIT_FOLDERS.items():
    label_dir = os.path.join(va, folder)
    if not os.path.isdir(label_dir):  # a partial tree: the split is reported empty
      continue
    for f in sorted(os.listdir(label_dir)):
      if f.endswith(".txt"):
        name = f[:-4]
        out.append(dict(common, name=name, split=split, labels=os.path.join(label_dir, f),
                        crops=os.path.join(crops, name), **_video_for(videos, name)))
  for name in _test_list(raw_dir, test_list):
    out.append(dict(common, name=name, split="test", labels="", crops=os.path.join(crops, name),
                    **_video_for(videos, name)))
  return out


def raw_video_name(name):
  """`<video>_left` / `<video>_right` share the raw video `<video>`."""
  return re.sub(r"_(left|right)$", "", name)


def _video_for(videos, name):
  """The task fields of recording `name`'s raw video: `video`, its path ("" if there is
  none or several), and `video_clash`, the paths when several could be it (a clash
  `process` reports)."""
  found = videos.get(name) or videos.get(raw_video_name(name)) or []
  return dict(video=found[0] if len(found) == 1 else "",
              video_clash=found if len(found) > 1 else [])


def read_labels(path):
  """(N, 2) float32 valence/arousal, checked: header, two numbers per line, no NaN,
  values in [-1, 1] or the invalid mark -5."""
  lines = text_files.read_lines(path)
  if not lines or lines[0].strip().replace(" ", "").lower() != LABEL_HEADER:
    got = lines[0].strip()[:40] if lines else "an empty file"
    raise BadInput(f"{path}: the header should be '{LABEL_HEADER}', found {got!r}")
  rows = []
  for i, line in enumerate(lines[1:], start=2):
    if not line.strip():
      continue
    parts = line.split(",")
    try:
      v, a = (float(p) for p in parts)
    except ValueError:
      raise BadInput(f"{path}: line {i} is not two numbers: {line.strip()[:40]!r}") from None
    for x in (v, a):
      if math.isnan(x):
        raise BadInput(f"{path}: line {i} holds NaN")
      if x != INVALID_LABEL and not -1.0 <= x <= 1.0:
        raise BadInput(f"{path}: line {i} has {x}, outside [-1, 1] and not the invalid "
                       f"mark {INVALID_LABEL:g}")
    rows.append((v, a))
  if not rows:
    raise BadInput(f"{path}: no label lines after the header")
  return np.array(rows, np.float32)


def _crop_files(crops_dir):
  """({frame number: crop file}, [unused files with why]): NNNNN.<image extension>, any
  case; of two files of one frame the first extension of CROP_EXTENSIONS is used."""
  if not os.path.isdir(crops_dir):
    raise BadInput(f"{crops_dir}: the recording has no crop folder")
  crops = []  # (frame number, extension rank, file name)
  for f in os.listdir(crops_dir):
    stem, ext = os.path.splitext(f)
    if re.fullmatch(r"\d+", stem) and ext.lower() in CROP_EXTENSIONS:
      crops.append((int(stem), CROP_EXTENSIONS.index(ext.lower()), f))
  found, unused = {}, []
  for k, _, f in sorted(crops):
    if k in found:
      unused.append(dict(file=os.path.join(crops_dir, f),
                         reason=f"another crop of frame {k} is used ({found[k]})"))
    else:
      found[k] = os.path.join(crops_dir, f)
  if not found:
    raise BadInput(f"{crops_dir}: no NNNNN.jpg face crops (nor "
                   f"{'/'.join(e[1:] for e in CROP_EXTENSIONS[1:])})")
  return found, unused


def read_crop(path):
  """(the crop file's bytes, None), or (None, why it cannot be a frame): unreadable,
  empty, a JPEG cut short (no end marker), not an image, or not square."""
  try:
    with open(path, "rb") as f:
      data = f.read()
  except OSError as e:
    return None, f"cannot be read ({e.strerror})"
  if not data:
    return None, "empty file"
  if data[:2] == b"\xff\xd8" and data.rstrip(b"\0")[-2:] != b"\xff\xd9":
    return None, "JPEG cut short (no end marker)"
  image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
  if image is None:
    return None, "not an image"
  if image.shape[0] != image.shape[1]:
    return None, f"not square ({image.shape[1]}x{image.shape[0]})"
  return data, None


def process(task):
  """Reads one recording: (arrays, table entry, stats, notes) for `work.store`."""
  name, tol = task["name"], task["frame_tolerance"]
  crop_files, unreadable = _crop_files(task["crops"])
  if task["video_clash"]:
    raise BadInput(f"{name}: several raw videos could be its video "
                   f"({', '.join(task['video_clash'])}): keep one")
  if not task["video"]:
    raise BadInput(f"{name}: no raw video named {raw_video_name(name)}.* "
                   f"({'/'.join(VIDEO_EXTENSIONS)}) under the raw tree")
  with decode.Video(task["video"]) as video:
    if task["labels"]:
      labels = read_labels(task["labels"])
    else:  # test set: every frame the video or the crops have, unlabelled
      n = max(video.num_frames_hint, max(crop_files))
      labels = np.full((n, 2), INVALID_LABEL, np.float32)
    n = len(labels)
    if max(crop_files) > n + tol:
      raise BadInput(f"{task['labels']}: {n} label lines but the crops in {task['crops']} go up "
                     f"to frame {max(crop_files)} (more than {tol} frames apart)")
    audio = video.audio(task["audio_rate"])
    rate = task["audio_rate"]
    audio = decode.fit_length(audio, int(round(n * rate / video.fps)), "the audio track",
                             task["video"], tolerance=int(round(tol * rate / video.fps)))
    fps = video.fps
  blobs = []
  for k in range(1, n + 1):
    path = crop_files.get(k)
    data = b""
    if path:
      data, why = read_crop(path)
      if why:
        unreadable.append(dict(file=path, reason=why))
        data = b""
    blobs.append(data)
  face_found = np.array([len(b) > 0 for b in blobs])
  arrays = dict(face_found=face_found, valence=labels[:, 0], arousal=labels[:, 1], audio=audio,
                biosignal=np.zeros((0, 1), np.float32), pain=np.int64(0))
  entry = dict(name=name, num_frames=n, pain=0, fps=fps, subject=raw_video_name(name))
  stats = dict(frames=n, clips=int((labels[:, 0] != INVALID_LABEL).sum()),
               missing_faces=int((~face_found).sum()), unreadable_files=unreadable,
               dropped_extra_crops=sum(1 for c in crop_files if c > n))
  return arrays, blobs, entry, stats
