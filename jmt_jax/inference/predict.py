"""Predict per-frame emotion (or pain) on your own recording with a trained workdir.

  python -m jmt_jax.inference.predict --workdir=workdirs/demo --video=me.mp4 --out=predictions
  python -m jmt_jax.inference.predict --workdir=workdirs/biovid --video=s.mp4 --biosignals=s_bio.csv --out=p

  python -m jmt_jax.inference.predict --workdir=workdirs/demo --video=talk.mp4 --faces=all --out=p
  python -m jmt_jax.inference.predict --workdir=workdirs/demo --video=me.mp4 --causal --out=p

Any container FFmpeg reads (MP4, AVI, MKV, WebM...) at its own frame rate, turned upright
as its display rotation says (phones); a variable frame rate is put on a constant clock
at its average rate by each frame's timestamp, so rows keep their true times. Writes
`<out>/<video name>.csv` (one row per frame: frame, time_s, face_found, <modality>_found,
then valence and arousal, or pain_probability and one probability per class),
`<out>/<video name>.png` and `<out>/<video name>.json` (which video, workdir and step;
another video of the same name gets `<name>_<extension>` or `<name>_2`). With --faces=all, one CSV per person seen for at least half a
second, `<video name>_person<k>.csv`, numbered from the left, all in the one plot. Biosignals are a tab-separated CSV as BioVid's `_bio.csv`
(header `time gsr ...`), at the model's biosignal rate, sample 0 at the first frame.
--causal predicts each frame from the past alone, as the live page does (the same numbers);
--clip_stride=k then predicts every k-th frame and says which in a `computed` column.
"""

import os

from absl import app
from absl import flags
from ml_collections import config_flags

from jmt_jax.inference import outputs
from jmt_jax.inference import predictor
from jmt_jax.runtime import cli

FLAGS = flags.FLAGS


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")

  def work():
    config = predictor.command_line_config(FLAGS.workdir, FLAGS.config)
    if not os.path.exists(FLAGS.video):
      raise FileNotFoundError(f"{FLAGS.video}: no such video file")
    outputs.check_out_dir(FLAGS.out)
    model = predictor.Predictor(FLAGS.workdir, config)
    results = model.predict_people(FLAGS.video, FLAGS.biosignals or None, FLAGS.progress,
                                   FLAGS.faces, FLAGS.causal, FLAGS.clip_stride)
    about = {"workdir": os.path.abspath(FLAGS.workdir), "step": int(model.step),
             "biosignals": os.path.abspath(FLAGS.biosignals) if FLAGS.biosignals else "",
             "faces": FLAGS.faces, "causal": FLAGS.causal, "clip_stride": FLAGS.clip_stride,
             "frames": results[0].num_frames, "fps": results[0].fps}
    csv_paths, png_path = outputs.write(FLAGS.out, FLAGS.video, results, about)
    summary = {"frames": results[0].num_frames, "fps": round(results[0].fps, 3)}
    for r, path in zip(results, csv_paths):
      who = f"person{r.person} " if r.person else ""
      summary.update({who + k: int(v.sum()) for k, v in r.found.items()})
      summary[who + "csv"] = path
    summary["plot"] = png_path
    return summary

  print(cli.run(None, work))


def _define_flags():
  flags.DEFINE_string("workdir", None, "A training workdir (checkpoints/ and "
                      "config.json).")
  flags.DEFINE_string("video", None, "The video file to predict on.")
  flags.DEFINE_string("biosignals", "", "Tab-separated biosignal CSV, for models "
                      "that read one (BioVid).")
  flags.DEFINE_string("out", None, "Directory for the CSV and the plot.")
  config_flags.DEFINE_config_file(
    "config", None, "Config file for workdirs without config.json (trained before it was "
    "written), e.g. configs/demo.py:tiny.", lock_config=True)
  flags.DEFINE_enum("faces", "largest", ["largest", "all"], "Predict for the largest "
                    "face, or for every person in view (one CSV each).")
  flags.DEFINE_bool("causal", False, "Predict each frame from the window ending on it, "
                    "the past alone, as live prediction (inference.serve) does.")
  flags.DEFINE_integer("clip_stride", 1, "With --causal: predict every k-th frame only, "
                       "the frames between carrying its prediction (a `computed` column).")
  flags.DEFINE_bool("progress", True, "Show progress bars.")
  flags.mark_flags_as_required(["workdir", "video", "out"])


if __name__ == "__main__":
  cli.app_run(main, _define_flags)
