"""Live prediction in real time: a recorded video fed through the live path as a camera
and microphone would feed it, for the demo model and the paper's Aff-Wild2 model.

  python -m jmt_jax.benchmarks.live                       # demo (stride 1), affwild2 (4, 8)
  python -m jmt_jax.benchmarks.live --runs=demo:1 --seconds=60 --video=me.mp4

Each picture arrives at its time in the video (1/fps apart) as the page sends it, a JPEG
(quality 85), and the audio in 40 ms pieces at the end of each; one thread decodes them
and runs `inference.live.LivePredictor`, as `inference.serve` does, first come first
served: when it falls behind, inputs wait. Reported per run:
- updates/s: predictions (one per frame, computed or carried) per second of the run;
- computed/s: frames whose window was embedded and fused;
- latency: from a picture's arrival to its prediction, median and 95th percentile (a
  frame also waits for the audio of its end: the next 40 ms piece);
- x real time: the video's length over the run's (below 1: it falls behind, and the
  latency grows with the length);
- CPU: process CPU time over wall time (100% = one core of the machine's).
Models are initialised, not trained: speed does not depend on the weights. The video is
written first (default: Grace Hopper's face drifting over 640x480 at 25 fps, with a
voice-like sound) and its frames and audio decoded before the clock starts.
"""

import os
import resource
import tempfile
import time

import cv2
import jax
import numpy as np
from absl import flags

from jmt_jax import config_args
from jmt_jax.benchmarks import predict_memory
from jmt_jax.benchmarks import report
from jmt_jax.inference import live
from jmt_jax.inference import predictor
from jmt_jax.media import decode
from jmt_jax.models import model as model_lib
from jmt_jax.models import variables as variables_lib
from jmt_jax.runtime import cli

FLAGS = flags.FLAGS
CONFIGS = {"demo": "configs/demo.py", "affwild2": "configs/affwild2.py"}
PIECE_S = 0.04  # the page's audio pieces


def build(name):
  config = config_args.load(CONFIGS[name])
  model = model_lib.build_model(config)
  variables, _ = variables_lib.init(model, config, jax.random.PRNGKey(0))
  return predictor.Predictor(None, config, variables)


def inputs(video_path, audio_rate, seconds):
  """[(arrival s, kind, payload)] in arrival order: JPEG pictures at their times, audio
  pieces at their ends; and the video's frame rate."""
  with decode.Video(video_path) as video:
    fps = video.fps
    frames = [f for _, f in zip(range(int(seconds * fps)), video.frames())]
  with decode.Video(video_path) as video:
    audio = video.audio(audio_rate) if video.has_audio else np.zeros(0, np.int16)
  out = [(i / fps, "frame", cv2.imencode(".jpg", cv2.cvtColor(f, cv2.COLOR_RGB2BGR),
                                         [cv2.IMWRITE_JPEG_QUALITY, 85])[1].tobytes())
         for i, f in enumerate(frames)]
  piece = int(round(PIECE_S * audio_rate))
  end = min(len(audio), int(len(frames) / fps * audio_rate))
  out += [((lo + piece) / audio_rate, "audio", (lo / audio_rate, audio[lo:lo + piece]))
          for lo in range(0, end, piece)]
  return sorted(out, key=lambda x: (x[0], x[1] == "frame")), fps


def run(model, stream, fps, clip_stride):
  """One real-time pass of `stream` through a fresh LivePredictor: the row's numbers."""
  live_model = live.LivePredictor(model, fps=fps, clip_stride=clip_stride)
  live_model.warm_up()
  latencies, updates = [], []
  cpu0, start = _cpu(), time.perf_counter()
  for arrival, kind, payload in stream:
    wait = start + arrival - time.perf_counter()
    if wait > 0:
      time.sleep(wait)
    if kind == "frame":
      bgr = cv2.imdecode(np.frombuffer(payload, np.uint8), cv2.IMREAD_COLOR)
      got = live_model.add_frame(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), arrival,
                                 arrived=start + arrival)
    else:
      got = live_model.add_audio(payload[1], payload[0])
    now = time.perf_counter()
    latencies += [now - u.arrived for u in got]
    updates += got
  updates += live_model.finish()
  wall, cpu = time.perf_counter() - start, _cpu() - cpu0
  video_s = max(a for a, k, _ in stream if k == "frame") + 1 / fps
  lat = np.array(latencies) * 1000
  return {"updates_per_s": len(updates) / wall,
          "computed_per_s": sum(u.computed for u in updates) / wall,
          "latency_median_ms": float(np.median(lat)), "latency_p95_ms": float(
              np.percentile(lat, 95)), "real_time": video_s / wall, "cpu_percent": 100 * cpu / wall,
          "faces": int(sum(u.found.get("face_found", False) for u in updates)),
          "frames": len(updates)}


def _cpu():
  usage = resource.getrusage(resource.RUSAGE_SELF)
  return usage.ru_utime + usage.ru_stime


KEYS = [("model", "model"), ("clip stride", "clip_stride")]
COLUMNS = [("updates/s", "updates_per_s", "{:.1f}"), ("computed/s", "computed_per_s", "{:.1f}"),
           ("median latency ms", "latency_median_ms", "{:.0f}"),
           ("p95 latency ms", "latency_p95_ms", "{:.0f}"),
           ("x real time", "real_time", "{:.2f}"), ("CPU %", "cpu_percent", "{:.0f}"),
           ("faces found", "faces", "{:,}"), ("frames", "frames", "{:,}")]


def main(argv):
  del argv

  def work():
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
      video = FLAGS.video
      if not video:
        video = os.path.join(tmp, "face.mp4")
        predict_memory.write_long_video(video, FLAGS.seconds, 25, size=(480, 640),
                                        face=report.hopper_face())
      streams = {}
      for spec in FLAGS.runs:
        name, _, stride = spec.partition(":")
        model = build(name)
        rate = int(model.rates["audio_rate"])
        if rate not in streams:
          streams[rate] = inputs(video, rate, FLAGS.seconds)
        stream, fps = streams[rate]
        row = {"model": name, "clip_stride": int(stride or 1)}
        row |= run(model, stream, fps, row["clip_stride"])
        rows.append(row)
        print(row, flush=True)
    return report.table("Live prediction in real time", KEYS, COLUMNS, rows)

  print(cli.run(None, work))


def _define_flags():
  flags.DEFINE_list("runs", ["demo:1", "affwild2:4", "affwild2:8"],
                    "model:clip_stride pairs (models: demo, affwild2).")
  flags.DEFINE_float("seconds", 20, "Seconds of video fed.")
  flags.DEFINE_string("video", "", "A recorded video to feed (default: one written first).")


if __name__ == "__main__":
  cli.app_run(main, _define_flags)
