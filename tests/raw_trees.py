"""Tiny Aff-Wild2 and BioVid trees in exactly the published layouts (BUILD_NOTES.md,
Reference 2.1, 2.2):
real JPEG crops, real MP4/AVI files with audio streams written by PyAV, real
tab-separated CSVs. Each tree also holds the broken files the preparation must report.
"""

import dataclasses
import fractions
import os

import av
import cv2
import numpy as np
import skimage.data

TONE_HZ = 440.0


def tone(num_samples, rate, amplitude=0.5):
  """The test audio: a sine that starts at phase 0 at the first video frame."""
  return (amplitude * np.sin(2 * np.pi * TONE_HZ * np.arange(num_samples) / rate)).astype(np.float32)


def _mux(out, stream, frame):
  """Encodes `frame` (None: flushes the encoder) and writes its packets."""
  for packet in stream.encode(frame):
    out.mux(packet)


def write_video(path, frames, fps, audio=None, audio_rate=16000, vcodec="libx264", acodec="aac",
                times=None, rotation=None, audio_start=0.0, lossless=False, faststart=False):
  """Writes RGB `frames` at `fps` and, if given, mono float `audio` as a second stream.

  As phones write them: `times` (seconds) gives each frame its own timestamp (a variable
  frame rate), `rotation` a display matrix (degrees, FFmpeg's sign: -90 for a phone held
  upright), `audio_start` a later start of the audio stream. `lossless`: H.264 at qp 0 in
  4:4:4 (decoded frames equal whatever the orientation); `faststart`: the MP4 index first.
  """
  os.makedirs(os.path.dirname(path), exist_ok=True)
  options = {"movflags": "faststart"} if faststart else {}
  with av.open(path, "w", options=options) as out:
    v = out.add_stream(vcodec, rate=int(fps), options={"qp": "0"} if lossless else {})
    v.width, v.height = frames.shape[2], frames.shape[1]
    v.pix_fmt = "yuv444p" if lossless else "yuv420p"
    if rotation is not None:
      v.set_display_rotation(rotation)
    if times is not None:
      v.codec_context.time_base = fractions.Fraction(1, 1000)
    a = None
    if audio is not None:
      a = out.add_stream(acodec, rate=audio_rate, layout="mono")
    for i, f in enumerate(frames):
      frame = av.VideoFrame.from_ndarray(f, format="rgb24")
      if times is not None:
        frame.pts, frame.time_base = int(round(times[i] * 1000)), fractions.Fraction(1, 1000)
      _mux(out, v, frame)
    _mux(out, v, None)
    if a is not None:
      fmt = "fltp" if acodec == "aac" else "s16"
      step, first = 1024, int(round(audio_start * audio_rate))
      for pts in range(0, len(audio), step):
        chunk = audio[pts:pts + step][None]
        if fmt == "s16":
          chunk = (chunk * 32767).astype(np.int16)
        frame = av.AudioFrame.from_ndarray(chunk, format=fmt, layout="mono")
        frame.sample_rate, frame.pts = audio_rate, first + pts
        _mux(out, a, frame)
      _mux(out, a, None)


def write_cover_art_audio(path, audio, rate=16000):
  """An MP3 whose only picture is its cover art (an attached picture stream)."""
  with av.open(path, "w") as out:
    a = out.add_stream("libmp3lame", rate=rate, layout="mono")
    v = out.add_stream("mjpeg")
    v.width, v.height, v.pix_fmt = 32, 32, "yuvj420p"
    v.disposition = av.stream.Disposition.attached_pic
    _mux(out, v, av.VideoFrame.from_ndarray(np.full((32, 32, 3), 90, np.uint8), format="rgb24"))
    _mux(out, v, None)
    for pts in range(0, len(audio), 1152):
      frame = av.AudioFrame.from_ndarray((audio[None, pts:pts + 1152] * 32767).astype(np.int16),
                                         format="s16", layout="mono")
      frame.sample_rate, frame.pts = rate, pts
      _mux(out, a, frame)
    _mux(out, a, None)


def crop_image(recording_index, k, size=112):
  """A distinct, JPEG-friendly image per (recording, frame): smooth gradients."""
  y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size
  img = np.stack([x * 200 + 20 * recording_index, y * 200 + (k % 50), (x + y) * 100 + 3 * k], -1)
  return np.clip(img, 0, 255).astype(np.uint8)


@dataclasses.dataclass
class AffWild2Tree:
  root: str
  fps: dict  # recording -> video frame rate
  labels: dict  # recording -> (N, 2) labels as written
  missing: dict  # recording -> 1-based frame numbers without a crop file
  corrupt: dict  # recording -> {1-based frame number: how its crop file is bad}
  broken: dict  # recording -> a word its skip reason must contain
  test: tuple


def _labels(n, rng, invalid):
  lab = rng.uniform(-1, 1, (n, 2)).round(3).astype(np.float32)
  lab[list(invalid)] = -5.0
  return lab


def _write_labels(path, labels, header="valence,arousal"):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "w") as f:
    f.write(header + "\n")
    for v, a in labels:
      f.write(f"{v:g},{a:g}\n")


def _write_crops(root, name, index, frames, skip=(), corrupt=None):
  """Crops of `frames` (1-based), none for `skip`, and {frame: kind} bad files: "garbage"
  (not an image), "empty", "truncated" (half a JPEG) or "not square" (112x80)."""
  d = os.path.join(root, "cropped_aligned", name)
  os.makedirs(d, exist_ok=True)
  for k in frames:
    if k in skip:
      continue
    path = os.path.join(d, f"{k:05d}.jpg")
    jpeg = cv2.imencode(".jpg", crop_image(index, k)[..., ::-1])[1].tobytes()
    data = {"garbage": b"not a jpeg at all", "empty": b"", "truncated": jpeg[:len(jpeg) // 2],
            "not square": cv2.imencode(".jpg", crop_image(index, k)[:80, :, ::-1])[1].tobytes(),
            None: jpeg}[(corrupt or {}).get(k)]
    with open(path, "wb") as f:
      f.write(data)


def make_affwild2(root, audio_rate=16000):
  """Train: vid_a (mp4, missing and corrupt crops), vid_b_left/_right (one shared avi;
  _left has an empty, a truncated and a non-square crop);
  validation: vid_c (mp4, 15 fps); test: vid_t; plus five broken recordings."""
  rng = np.random.default_rng(0)
  ann = os.path.join(root, "6th_ABAW_Annotations", "VA_Estimation_Challenge")
  good = {  # name -> (split, frames, fps, video file, invalid label frames (0-based))
      "vid_a": ("Train_Set", 40, 10, "batch1/vid_a.mp4", (3, 4)),
      "vid_b_left": ("Train_Set", 36, 12, "batch2/vid_b.avi", ()),
      "vid_b_right": ("Train_Set", 36, 12, "batch2/vid_b.avi", (0,)),
      "vid_c": ("Validation_Set", 30, 15, "new_vids/vid_c.mp4", ()),
  }
  tree = AffWild2Tree(root, {}, {}, {"vid_a": (5,)},
                      {"vid_a": {7: "garbage"},
                       "vid_b_left": {3: "empty", 9: "truncated", 12: "not square"}},
                      {}, ("vid_t",))
  for i, (name, (split, n, fps, video, invalid)) in enumerate(good.items()):
    lab = _labels(n, rng, invalid)
    _write_labels(os.path.join(ann, split, name + ".txt"), lab)
    # vid_a's crops stop two frames short of its labels; vid_c has one extra crop.
    frames = range(1, n - 1) if name == "vid_a" else range(1, n + (2 if name == "vid_c" else 1))
    _write_crops(root, name, i, frames, tree.missing.get(name, ()), tree.corrupt.get(name, ()))
    tree.fps[name], tree.labels[name] = fps, lab
    path = os.path.join(root, video)
    if not os.path.exists(path):
      codecs = dict(vcodec="mpeg4", acodec="pcm_s16le") if video.endswith(".avi") else {}
      write_video(path, np.full((n, 48, 64, 3), 90, np.uint8), fps,
                  tone(int(n * audio_rate / fps), audio_rate), audio_rate, **codecs)
  _write_crops(root, "vid_t", 9, range(1, 26))
  write_video(os.path.join(root, "batch2", "vid_t.mp4"), np.full((25, 48, 64, 3), 60, np.uint8),
              10, tone(int(2.5 * audio_rate), audio_rate), audio_rate)
  tree.fps["vid_t"] = 10
  with open(os.path.join(root, "Valence_Arousal_test_set_release.txt"), "w") as f:
    f.write("vid_t\n")

  def broken(name, word, header="valence,arousal", labels=None, crops=20, audio=True):
    n = 20
    lab = _labels(n, rng, ()) if labels is None else labels
    _write_labels(os.path.join(ann, "Train_Set", name + ".txt"), lab, header)
    _write_crops(root, name, 5, range(1, crops + 1))
    write_video(os.path.join(root, "batch1", name + ".mp4"), np.full((n, 48, 64, 3), 30, np.uint8),
                10, tone(2 * audio_rate, audio_rate) if audio else None, audio_rate)
    tree.broken[name] = word

  broken("bad_header", "header", header="arousal,valence")
  nan = _labels(20, rng, ())
  nan[6, 1] = np.nan
  broken("bad_nan", "nan", labels=nan)
  broken("too_many_crops", "crops", crops=45)
  broken("no_audio", "no audio stream", audio=False)
  broken("truncated", "truncated")
  path = os.path.join(root, "batch1", "truncated.mp4")
  with open(path, "rb") as f:
    data = f.read()
  with open(path, "wb") as f:
    f.write(data[:len(data) // 3])
  return tree


def face_frames(n, size=(176, 240), patch=128, seed=0):
  """RGB frames with the astronaut photograph's head pasted at a drifting position, and
  the (x, y, w, h) box of her face in each frame."""
  # Her head; the face box (checked by eye, benchmarks/face_scenes.py) is at (72, 40),
  # 86 wide and 115 high in this crop.
  img = skimage.data.astronaut()[20:240, 110:330]
  img = cv2.resize(img, (patch, patch), interpolation=cv2.INTER_AREA)
  scale = patch / 220
  rng = np.random.default_rng(seed)
  frames = np.full((n,) + size + (3,), 200, np.uint8)
  boxes = []
  for i in range(n):
    x = 10 + int(90 * i / max(1, n - 1))
    y = 10 + int(rng.integers(0, 12))
    frames[i, y:y + patch, x:x + patch] = img
    boxes.append((x + 72 * scale, y + 40 * scale, 86 * scale, 115 * scale))
  return frames, boxes


BIO_HEADER = "time\tgsr\tecg\temg_trapezius"


def write_biosignals(path, values, header=BIO_HEADER, rate=512):
  """BioVid's `_bio.csv`: time in whole microseconds at `rate` Hz, then the channels."""
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "w") as f:
    f.write(header + "\n")
    for i, row in enumerate(values):
      f.write("\t".join([str(int(i * 1e6 / rate))] + [f"{x:.6f}" for x in row]) + "\n")


@dataclasses.dataclass
class BioVidTree:
  root: str
  samples: list  # (subject, sample name, class id)
  biosignals: dict  # sample -> (rows, 3) written values
  boxes: dict  # sample -> per-frame face boxes
  broken: dict  # sample -> word of its skip reason
  num_frames: int
  fps: int


def make_biovid(root, subjects=("071309_w_21", "072414_m_23", "080314_w_25", "081014_w_27"),
                classes=(0, 4), num_frames=25, fps=25, bio_rate=512):
  names = ("BL1", "PA1", "PA2", "PA3", "PA4")
  rng = np.random.default_rng(1)
  tree = BioVidTree(root, [], {}, {}, {}, num_frames, fps)
  rows = ["subject_id\tsubject_name\tclass_id\tclass_name\tsample_id\tsample_name"]
  sample_id = 0
  for s, subject in enumerate(subjects):
    for c in classes:
      sample = f"{subject}-{names[c]}-{sample_id % 100 + 1:03d}"
      rows.append(f"{s}\t{subject}\t{c}\t{names[c]}\t{sample_id}\t{sample}")
      sample_id += 1
      frames, boxes = face_frames(num_frames, seed=sample_id)
      write_video(os.path.join(root, "video", subject, sample + ".mp4"), frames, fps)
      bio = rng.normal(size=(int(num_frames * bio_rate / fps), 3)).astype(np.float32)
      bio[:, 0] += 5 + c
      write_biosignals(os.path.join(root, "biosignals_filtered", subject, sample + "_bio.csv"), bio)
      tree.samples.append((subject, sample, c))
      tree.biosignals[sample], tree.boxes[sample] = bio, boxes
  subject = subjects[0]
  for i, (word, kind) in enumerate((("missing", "no_bio"), ("nan", "nan"), ("header", "header"),
                                    ("truncated", "truncated"))):
    sample = f"{subject}-PA1-{90 + i:03d}"
    rows.append(f"0\t{subject}\t1\tPA1\t{900 + i}\t{sample}")
    frames, _ = face_frames(num_frames)
    video = os.path.join(root, "video", subject, sample + ".mp4")
    write_video(video, frames, fps)
    bio_path = os.path.join(root, "biosignals_filtered", subject, sample + "_bio.csv")
    bio = rng.normal(size=(int(num_frames * bio_rate / fps), 3))
    if kind == "nan":
      bio[10, 0] = np.nan
    if kind != "no_bio":
      write_biosignals(bio_path, bio, "time\tgsr\tecg" if kind == "header" else BIO_HEADER)
    if kind == "truncated":
      with open(video, "rb") as f:
        data = f.read()
      with open(video, "wb") as f:
        f.write(data[:len(data) // 3])
    tree.broken[sample] = word
  with open(os.path.join(root, "samples.csv"), "w") as f:
    f.write("\n".join(rows) + "\n")
  return tree


def speech_like(num_samples, rate, seed=0):
  """A voice-like signal: a harmonic tone whose pitch glides (110-220 Hz) under a
  syllable-rate (4 Hz) loudness envelope with pauses, plus a little breath noise."""
  t = np.arange(num_samples) / rate
  pitch = 150 + 50 * np.sin(2 * np.pi * 0.7 * t)
  phase = 2 * np.pi * np.cumsum(pitch) / rate
  voice = sum(np.sin(k * phase) / k for k in range(1, 6))
  envelope = np.clip(np.sin(2 * np.pi * 4 * t), 0, None) * (np.sin(2 * np.pi * 0.3 * t) > -0.5)
  noise = np.random.default_rng(seed).normal(0, 0.02, num_samples)
  return (0.3 * voice * envelope + noise).astype(np.float32)


def moving_face_video(n, no_face=(), size=(240, 320), seed=0):
  """(frames, has_face): the astronaut's head moved and scaled (128 to 176 px) across the
  frames, on a smooth background; frames in `no_face` show the background only."""
  head = skimage.data.astronaut()[20:240, 110:330]
  rng = np.random.default_rng(seed)
  y, x = np.mgrid[0:size[0], 0:size[1]]
  background = np.stack([90 + 60 * x / size[1], 110 + 50 * y / size[0],
                         np.full(size, 150.0)], -1).astype(np.uint8)
  frames = np.repeat(background[None], n, axis=0)
  has_face = np.ones(n, bool)
  for i in range(n):
    if i in no_face:
      has_face[i] = False
      continue
    side = int(128 + 48 * (0.5 + 0.5 * np.sin(2 * np.pi * i / max(n, 2))))
    patch = cv2.resize(head, (side, side), interpolation=cv2.INTER_AREA)
    top = int(rng.integers(0, size[0] - side + 1))
    left = int((size[1] - side) * i / max(1, n - 1))
    frames[i, top:top + side, left:left + side] = patch
  return frames, has_face


def assert_missed_only_on_return(found, here, every=5):
  """A tracked face is found on every frame it is `here`, except while a face that came
  back waits for the next full detection (one every `every` frames); a face there from
  the first frame is found at once."""
  assert found[0] == here[0]
  returns = np.flatnonzero(here & ~np.concatenate([[False], here[:-1]]))
  for missed in np.flatnonzero(here & ~found):
    assert 0 <= missed - returns[returns <= missed].max() < every, (missed, returns)
