"""What `jmt_jax.inference.predict` writes: a per-frame CSV, a plot of it, and a record of
the video they were predicted from (`<stem>.json`), which keeps two videos of one name
(talk.mp4 and talk.mkv, or two folders' talk.mp4) from overwriting each other's outputs."""

import csv
import io
import json
import os
import tempfile

from jmt_jax.reports import figures


def _write_rows(f, prediction):
  """One row per video frame: frame (0-based), time_s, the found flags (0/1), `computed`
  (0/1) with a clip stride, then the predictions."""
  found, values = prediction.found, prediction.values
  flags = dict(found) if prediction.computed is None else {**found,
                                                            "computed": prediction.computed}
  w = csv.writer(f)
  w.writerow(["frame", "time_s", *flags, *values])
  for i in range(prediction.num_frames):
    w.writerow([i, f"{prediction.time_s[i]:.4f}", *(int(flags[k][i]) for k in flags),
                *(f"{float(values[k][i]):.6f}" for k in values)])


def write_csv(path, prediction):
  """`_write_rows` into the file `path`. Returns the number of rows."""
  os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
  with open(path + ".tmp", "w", newline="", encoding="utf-8") as f:
    _write_rows(f, prediction)
  os.replace(path + ".tmp", path)
  return prediction.num_frames


def csv_text(prediction):
  """`_write_rows` as text."""
  f = io.StringIO(newline="")
  _write_rows(f, prediction)
  return f.getvalue()


def plot(predictions):
  """The predictions over time, one panel per person, missing modalities shaded."""
  pain = "pain_probability" in predictions[0].values
  panels = [(f"person {p.person}" if p.person else "predictions per frame",
             {"pain_probability": p.values["pain_probability"]} if pain else p.values, p.found)
            for p in predictions]
  return figures.predictions_over_time(predictions[0].time_s, panels,
                                     (-0.02, 1.02) if pain else (-1.05, 1.05))


def check_out_dir(out_dir):
  """Makes `out_dir` and checks that files can be written in it (ValueError, one line,
  before any prediction work)."""
  if os.path.exists(out_dir) and not os.path.isdir(out_dir):
    raise ValueError(f"--out={out_dir} is a file, not a directory")
  try:
    os.makedirs(out_dir, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=out_dir):
      pass
  except OSError as e:
    raise ValueError(f"--out={out_dir}: cannot write there ({e.strerror or e})") from None


def _source(out_dir, stem):
  """The video whose outputs `stem` names in `out_dir`: its path, "" for outputs without
  a record (written by an older jmt_jax), None where there are none."""
  record = os.path.join(out_dir, f"{stem}.json")
  if os.path.exists(record):
    try:
      with open(record, encoding="utf-8") as f:
        return json.load(f).get("video", "")
    except ValueError:
      return ""
  return "" if os.path.exists(os.path.join(out_dir, f"{stem}.csv")) else None


def stem_for(out_dir, video_path):
  """The name of the outputs of `video_path` in `out_dir`: the video's name, unless
  out_dir holds another video's outputs under it; then the name with the extension
  (talk_mkv), then numbered (talk_2, talk_3...)."""
  base, ext = os.path.splitext(os.path.basename(video_path))
  video = os.path.abspath(video_path)
  candidates = [base] + ([f"{base}_{ext[1:]}"] if ext else [])
  k = 2
  while True:
    for stem in candidates:
      if _source(out_dir, stem) in (None, video):
        return stem
    candidates, k = [f"{base}_{k}"], k + 1


def write(out_dir, video_path, predictions, about):
  """out_dir/<stem>.csv for the largest face, or out_dir/<stem>_person<k>.csv for each
  person of faces="all"; out_dir/<stem>.png with them all; out_dir/<stem>.json naming
  the video and `about` it (the workdir, the step...). The stem is `stem_for`'s.
  Returns (CSV paths, PNG path)."""
  stem = stem_for(out_dir, video_path)
  csv_paths = []
  for p in predictions:
    csv_paths.append(os.path.join(out_dir, f"{stem}_person{p.person}.csv" if p.person
                                  else f"{stem}.csv"))
    write_csv(csv_paths[-1], p)
  png_path = figures.save(plot(predictions), os.path.join(out_dir, f"{stem}.png"))
  record = {"video": os.path.abspath(video_path), **about,
            "csv": [os.path.basename(p) for p in csv_paths]}
  with open(os.path.join(out_dir, f"{stem}.json"), "w", encoding="utf-8") as f:
    json.dump(record, f, indent=2)
  return csv_paths, png_path
