"""Everything jmt_jax asks of a device, measured in one command, for a borrowed accelerator:

  python -m jmt_jax.benchmarks.report --out=report          # about 8 minutes on a GPU
  python -m jmt_jax.benchmarks.report --reduced --out=DIR   # tiny configs, in the tests

Measures, on this host's first device:
- step: the train step of both paper configs (configs/affwild2.py:jmt, configs/biovid.py:jmt),
  backbones frozen and fine-tuned, float32 and bfloat16, on made-up batches: compile
  time, step time, examples/s, XLA's FLOPs, utilisation of the device's published peak
  (benchmarks.train_step.PEAKS; on a CPU a matmul's measured rate) and memory;
- pipeline: the Aff-Wild2 training input pipeline on the built-in synthetic recordings at
  the paper's shapes, with no worker process and with one per host core, beside the
  frozen bfloat16 step's consumption;
- extract: feature extraction, clips/s of each paper config's backbones on batches of
  features.embed.BATCH clips (the cache's and prediction's shape), in the config's
  `auto` compute dtype;
- predict: the paper's Aff-Wild2 model (untrained: speed does not depend on the weights)
  on a one-minute, 25 fps video of a photographed face with a voice-like track, through
  `jmt_jax.inference.predict`'s code (decoding, face detection, crops, embedding, fusion).

Each measurement that fails is recorded with its one-line error and the next one runs.
`report.json` (every number, the device and versions) and `report.md` (the tables) are
rewritten after each measurement, so a run cut short keeps what it measured.
"""

import datetime
import json
import os
import platform as platform_lib
import sys
import tempfile
import time

import cv2
import jax
import matplotlib
import numpy as np
from absl import flags

from jmt_jax import config_args
from jmt_jax.benchmarks import input_pipeline
from jmt_jax.benchmarks import predict_memory
from jmt_jax.benchmarks import train_step
from jmt_jax.data import pipeline
from jmt_jax.features import embed
from jmt_jax.inference import predictor
from jmt_jax.models import model as model_lib
from jmt_jax.models import variables as variables_lib
from jmt_jax.runtime import cli
from jmt_jax.runtime import library_logs

FLAGS = flags.FLAGS

PAPER = {"affwild2": "configs/affwild2.py:jmt", "biovid": "configs/biovid.py:jmt"}
REDUCED = {"affwild2": "configs/affwild2.py:tiny", "biovid": "configs/biovid.py:tiny"}
SETTINGS = ("frozen", "finetune")
DTYPES = ("float32", "bfloat16")
# Windows per step: on an accelerator, a quarter of the paper's Aff-Wild2 batch and
# BioVid's at the batch the team's comparisons use (fine-tuning float32 fits in 80 GB);
# on a CPU the batches of the README's step tables.
BATCH = {"accelerator": {"affwild2": 8, "biovid": 32}, "cpu": {"affwild2": 2, "biovid": 8},
         "reduced": {"affwild2": 1, "biovid": 2}}


def device_info():
  d = jax.devices()[0]
  return {"kind": d.device_kind, "platform": d.platform, "count": jax.device_count(),
          "host_cores": os.cpu_count(), "jax": jax.__version__, "python": sys.version.split()[0],
          "machine": platform_lib.machine(),
          "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}


def _error(e):
  return f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:300]


class Report:
  """The measurements so far, written to `out_dir` after each one."""

  def __init__(self, out_dir, mode):
    self.out_dir, self.started = out_dir, time.time()
    self.data = {"device": device_info(), "mode": mode, "step": [], "pipeline": [],
                 "extract": [], "predict": []}
    os.makedirs(out_dir, exist_ok=True)

  def add(self, section, row):
    row = dict(row, elapsed_s=round(time.time() - self.started, 1))
    self.data[section].append(row)
    print(f"[{row['elapsed_s']:7.1f} s] {section}: " + ", ".join(
        f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()
        if k != "elapsed_s"), flush=True)
    self.write()

  def write(self):
    with open(os.path.join(self.out_dir, "report.json"), "w", encoding="utf-8") as f:
      json.dump(self.data, f, indent=2)
    with open(os.path.join(self.out_dir, "report.md"), "w", encoding="utf-8") as f:
      f.write(markdown(self.data))


def _cells(row, columns):
  if "error" in row:
    return [row["error"]] + [""] * (len(columns) - 1)
  return [fmt.format(row[key]) for key, fmt in columns]


def table(title, keys, columns, rows):
  """A markdown table: `keys` ((heading, field)) then `columns` ((heading, field, format))
  of each row (a row with "error" shows it instead of its numbers)."""
  if not rows:
    return ""
  names = [k for k, _ in keys] + [c for c, _, _ in columns]
  lines = [f"### {title}", "", "| " + " | ".join(names) + " |", "|" + "---|" * len(names)]
  for row in rows:
    head = [str(row[k]) for _, k in keys]
    lines.append("| " + " | ".join(head + _cells(row, [(k, f) for _, k, f in columns])) + " |")
  return "\n".join(lines) + "\n\n"


def markdown(data):
  d = data["device"]
  out = [f"## jmt_jax on {d['count']} x {d['kind']} ({d['platform']})", "",
         f"jax {d['jax']}, Python {d['python']}, {d['host_cores']} host cores, {d['date']}; "
         f"{data['mode']} run.", ""]
  if data.get("peaks"):
    out += ["MFU against " + "; ".join(f"{p['tflop_per_s']:.3g} TFLOP/s {d} ({p['source']})"
                                       for d, p in data["peaks"].items()) + ".", ""]
  out.append(table("Train step", [("config", "config"), ("setting", "setting"),
                                   ("dtype", "dtype"), ("batch", "batch")],
                    [("compile s", "compile_s", "{:.1f}"), ("s/step", "step_s", "{:.4g}"),
                     ("examples/s", "examples_per_s", "{:.4g}"),
                     ("GFLOP/step", "gflop_per_step", "{:,.1f}"),
                     ("TFLOP/s", "tflop_per_s", "{:.3f}"), ("MFU", "mfu", "{:.1%}"),
                     ("memory GiB", "memory_gib", "{:.2f}")], data["step"]))
  out.append(table("Input pipeline (Aff-Wild2 windows, synthetic recordings)",
                    [("workers", "workers")],
                    [("examples/s", "examples_per_s", "{:.1f}"),
                     ("frozen bfloat16 step examples/s", "step_examples_per_s", "{:.4g}"),
                     ("pipeline / step", "ratio", "{:.3g}x")], data["pipeline"]))
  out.append(table("Feature extraction (frozen backbones)",
                    [("config", "config"), ("dtype", "dtype")],
                    [("clips/s", "clips_per_s", "{:.4g}"), ("compile s", "compile_s", "{:.1f}")],
                    data["extract"]))
  out.append(table("Prediction on a video", [("config", "config"), ("video", "video")],
                    [("frames", "frames", "{:,}"), ("faces found", "faces", "{:,}"),
                     ("seconds", "seconds", "{:.1f}"), ("frames/s", "frames_per_s", "{:.3g}"),
                     ("x real time", "real_time", "{:.2f}")], data["predict"]))
  return "\n".join(out)


def load(name, mode):
  return config_args.load((REDUCED if mode == "reduced" else PAPER)[name])


def measure_steps(report, mode, steps):
  device = jax.devices()[0]
  peaks = {dtype: train_step.peak(device, dtype) for dtype in DTYPES}
  report.data["peaks"] = {d: {"tflop_per_s": f / 1e12, "source": source}
                          for d, (f, source) in peaks.items()}
  for name in PAPER:
    for setting in SETTINGS:
      for dtype in DTYPES:
        batch = BATCH[mode][name]
        row = {"config": name, "setting": setting, "dtype": dtype, "batch": batch}
        try:
          row |= train_step.measure(load(name, mode), setting, dtype, batch, steps,
                                    peaks[dtype][0])
        except Exception as e:  # pylint: disable=broad-except  (recorded; the next one runs)
          row["error"] = _error(e)
        report.add("step", row)


def measure_pipeline(report, mode, examples, data_dir):
  if mode == "reduced":  # the tiny config's few short recordings
    config = load("affwild2", mode)
  else:  # six recordings at the paper's shapes (112x112 faces, 44.1 kHz audio)
    config = config_args.load(PAPER["affwild2"] + ",synthetic")
    config.data.split_sizes = {"train": 6, "validation": 1}
    config.data.render.update(min_frames=300, max_frames=400)
  config.data.data_dir = data_dir
  batch = BATCH[mode]["affwild2"]
  step_rate = next((r.get("examples_per_s") for r in report.data["step"]
                    if (r["config"], r["setting"], r["dtype"]) == (
                        "affwild2", "frozen", "bfloat16")), None)
  dataset = pipeline.open_dataset(config.data)
  source = pipeline.window_source(dataset, "train", config.input, config.model.modalities,
                                  train=True)
  for workers in (0, os.cpu_count() or 1):
    row = {"workers": workers}
    try:
      rate, _ = input_pipeline.iterator_rate(source, batch, workers, examples, config.seed)
      row |= {"examples_per_s": rate, "step_examples_per_s": step_rate or float("nan"),
              "ratio": rate / step_rate if step_rate else float("nan")}
    except Exception as e:  # pylint: disable=broad-except
      row["error"] = _error(e)
    report.add("pipeline", row)


def extraction_rate(config, calls):
  """(clips/s, compile seconds) of `features.embed.embed_fn` on the frozen backbones of
  `config`, in its compute dtype, on made-up clips."""
  model = model_lib.build_model(config)
  variables, _ = variables_lib.init(model, config, jax.random.PRNGKey(0))
  cast = variables_lib.cast(model, variables["params"], variables["batch_stats"])
  rng = np.random.default_rng(0)
  batch = {m: rng.integers(0, 256, s.shape).astype(s.dtype) if s.dtype == np.uint8 else
           rng.standard_normal(s.shape).astype(s.dtype) if s.dtype != np.int16 else
           rng.integers(-8000, 8000, s.shape).astype(np.int16)
           for m, s in embed.batch_spec(config).items()}
  fn = embed.embed_fn(model)
  t0 = time.perf_counter()
  compiled = fn.lower(cast, batch).compile()
  compile_s = time.perf_counter() - t0
  jax.block_until_ready(compiled(cast, batch))
  t0 = time.perf_counter()
  for _ in range(calls):
    out = compiled(cast, batch)
  jax.block_until_ready(out)
  return calls * embed.BATCH / (time.perf_counter() - t0), compile_s


def measure_extraction(report, mode, calls):
  for name in PAPER:
    config = load(name, mode)
    row = {"config": name, "dtype": model_lib.resolve_compute_dtype(config.compute_dtype)}
    try:
      rate, compile_s = extraction_rate(config, calls)
      row |= {"clips_per_s": rate, "compile_s": compile_s}
    except Exception as e:  # pylint: disable=broad-except
      row["error"] = _error(e)
    report.add("extract", row)


def hopper_face():
  """Grace Hopper's face from matplotlib's sample photograph (150x150 RGB)."""
  path = os.path.join(os.path.dirname(matplotlib.__file__), "mpl-data", "sample_data",
                      "grace_hopper.jpg")
  image = cv2.cvtColor(cv2.imread(path), cv2.COLOR_BGR2RGB)
  return cv2.resize(image[80:370, 120:400], (150, 150), interpolation=cv2.INTER_AREA)


def measure_prediction(report, mode, seconds, work_dir):
  config = load("affwild2", mode)
  row = {"config": "affwild2", "video": f"{seconds:g} s, 25 fps, 320x240"}
  try:
    video = os.path.join(work_dir, f"face_{seconds:g}s.mp4")
    if not os.path.exists(video):
      predict_memory.write_long_video(video, seconds, 25, face=hopper_face())
    model = model_lib.build_model(config)
    variables, _ = variables_lib.init(model, config, jax.random.PRNGKey(0))
    runner = predictor.Predictor(None, config, variables)
    t0 = time.perf_counter()
    result = runner.predict(video, progress=False)
    took = time.perf_counter() - t0
    row |= {"frames": int(result.num_frames), "faces": int(result.found["face_found"].sum()),
            "seconds": took, "frames_per_s": result.num_frames / took,
            "real_time": seconds / took}
  except Exception as e:  # pylint: disable=broad-except
    row["error"] = _error(e)
  report.add("predict", row)


def main(argv):
  del argv
  library_logs.quiet()
  on_cpu = jax.devices()[0].platform == "cpu"
  mode = "reduced" if FLAGS.reduced else "cpu" if on_cpu else "accelerator"
  report = Report(FLAGS.out, mode)
  d = report.data["device"]
  print(f"jmt_jax report on {d['count']} x {d['kind']} ({d['platform']}), {mode} run, "
        f"writing {FLAGS.out}/report.json and report.md", flush=True)
  steps = FLAGS.steps or (1 if on_cpu else 10)
  scratch = tempfile.mkdtemp(prefix="jmt_jax_report_")  # the synthetic recordings, the video
  sections = {
      "step": lambda: measure_steps(report, mode, steps),
      "pipeline": lambda: measure_pipeline(report, mode, 8 if mode == "reduced" else 64,
                                           os.path.join(scratch, "data")),
      "extract": lambda: measure_extraction(report, mode, 1 if mode == "reduced" else 5),
      "predict": lambda: measure_prediction(
          report, mode, FLAGS.video_seconds or (2 if mode == "reduced" else 60),
          scratch),
  }
  for name in FLAGS.sections:
    if name not in sections:
      raise ValueError(f"--sections: unknown {name!r}; use some of {list(sections)}")
  for name in FLAGS.sections:
    sections[name]()
  print("\n" + markdown(report.data))
  failed = sum("error" in r for s in ("step", "pipeline", "extract", "predict")
               for r in report.data[s])
  if failed:
    print(f"{failed} measurement(s) failed: see their errors above and in report.json")
  return 1 if failed else 0


def _define_flags():
  flags.DEFINE_string("out", "report", "Folder for report.json and report.md.")
  flags.DEFINE_bool("reduced", False, "Tiny configs, batches and video: a check that every "
                    "measurement runs (the tests run this on a CPU).")
  flags.DEFINE_list("sections", ["step", "pipeline", "extract", "predict"],
                    "Measurements to run, in order.")
  flags.DEFINE_integer("steps", 0, "Train steps timed per row (0: 10 on an accelerator, "
                       "1 on a CPU).")
  flags.DEFINE_float("video_seconds", 0, "Length of the prediction's video (0: 60 s; "
                     "2 s reduced).")


if __name__ == "__main__":
  cli.app_run(main, _define_flags)
