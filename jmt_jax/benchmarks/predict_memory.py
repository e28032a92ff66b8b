"""Peak memory and speed of `jmt_jax.inference.predict` on long videos: the same trained workdir
on videos of several lengths, each predicted in its own process, side by side.

  python -m jmt_jax.benchmarks.predict_memory --workdir=workdirs/demo --minutes=0.5,2,6

Each video (written first, streamed frame by frame) shows scikit-image's astronaut
(install the test extra) drifting across a 320x240 frame at 25 fps with a voice-like
AAC track. Streaming holds a fixed number of
frames, the audio and embeddings on disk, and a few hundred bytes per frame of face
boxes, landmarks, flags and predictions, so peak memory should barely grow with the
length. Reported per length:
frames, faces found, seconds, frames/s and the child process's peak resident memory
(ru_maxrss).
"""

import os
import resource
import subprocess
import sys
import tempfile
import time

import av
import cv2
import numpy as np
from absl import flags

from jmt_jax.runtime import cli

FLAGS = flags.FLAGS


def write_long_video(path, seconds, fps, size=(240, 320), rate=16000, face=None):
  """Streams `seconds` of a drifting face (150x150 RGB; default scikit-image's astronaut)
  with a voice-like sound into an MP4."""
  if face is None:
    import skimage.data  # pylint: disable=import-outside-toplevel  (the test extra)
    face = cv2.resize(skimage.data.astronaut()[20:240, 110:330], (150, 150))
  with av.open(path, "w") as out:
    video = out.add_stream("libx264", rate=fps)
    video.width, video.height, video.pix_fmt = size[1], size[0], "yuv420p"
    audio = out.add_stream("aac", rate=rate, layout="mono")
    for i in range(int(seconds * fps)):
      frame = np.full(size + (3,), 120, np.uint8)
      x = int((size[1] - 150) * (0.5 + 0.5 * np.sin(i / (3.0 * fps))))
      frame[40:190, x:x + 150] = face
      out.mux(video.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
    out.mux(video.encode())
    for start in range(0, int(seconds * rate), rate):
      t = (start + np.arange(rate)) / rate
      voice = np.sin(2 * np.pi * np.cumsum(150 + 40 * np.sin(t)) / rate)
      chunk = (0.3 * voice * np.clip(np.sin(8 * np.pi * t), 0, 1)).astype(np.float32)
      frame = av.AudioFrame.from_ndarray(chunk[None], format="fltp", layout="mono")
      frame.sample_rate, frame.pts = rate, start
      out.mux(audio.encode(frame))
    out.mux(audio.encode())


def _child(video, workdir):
  from jmt_jax.inference import predictor  # pylint: disable=import-outside-toplevel
  from jmt_jax.runtime import library_logs  # pylint: disable=import-outside-toplevel
  library_logs.quiet()
  model = predictor.Predictor(workdir)
  t0 = time.time()
  result = model.predict(video, progress=False)
  seconds = time.time() - t0
  peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
  print(f"RESULT {result.num_frames} {seconds:.1f} {peak:.0f} "
        f"{int(result.found['face_found'].sum())}")


def main(argv):
  del argv
  if FLAGS.child_video:
    return _child(FLAGS.child_video, FLAGS.workdir)
  out = FLAGS.out or tempfile.mkdtemp(prefix="jmt_jax_predict_memory_")
  os.makedirs(out, exist_ok=True)
  rows = []
  for minutes in map(float, FLAGS.minutes):
    path = os.path.join(out, f"long_{minutes:g}min.mp4")
    if not os.path.exists(path):
      write_long_video(path, minutes * 60, FLAGS.fps)
    run = subprocess.run([sys.executable, "-m", "jmt_jax.benchmarks.predict_memory",
                          f"--workdir={FLAGS.workdir}", f"--child_video={path}"],
                         capture_output=True, text=True, check=False)
    line = [l for l in run.stdout.splitlines() if l.startswith("RESULT")]
    if run.returncode or not line:
      sys.exit(f"error: predicting on {path} failed:\n{run.stderr[-2000:]}")
    frames, seconds, peak, faces = line[0].split()[1:]
    rows.append((minutes, int(frames), float(seconds), float(peak), int(faces)))
  print(f"\nworkdir {FLAGS.workdir}, {FLAGS.fps} fps, 320x240 video")
  print("| video | frames | faces found | seconds | frames/s | peak memory |")
  print("|---|---|---|---|---|---|")
  for minutes, frames, seconds, peak, faces in rows:
    print(f"| {minutes:g} min | {frames:,} | {faces:,} | {seconds:.1f} | {frames / seconds:.1f} "
          f"| {peak:,.0f} MiB |")


def _define_flags():
  flags.DEFINE_string("workdir", None, "A trained workdir.")
  flags.DEFINE_list("minutes", ["0.5", "2", "6"], "Video lengths in minutes.")
  flags.DEFINE_integer("fps", 25, "Frame rate of the videos.")
  flags.DEFINE_string("child_video", "", "(internal) predict on this video in this "
                      "process and print its peak memory.")
  flags.DEFINE_string("out", "", "Where the videos and predictions go (default: a "
                      "temporary directory).")
  flags.mark_flags_as_required(["workdir"])


if __name__ == "__main__":
  cli.app_run(main, _define_flags)
