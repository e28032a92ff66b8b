"""What `jmt_jax.predict` writes: a per-frame CSV and a plot of it."""

import csv
import os

import numpy as np

from jmt_jax import plots


def write_csv(path, prediction):
  """One row per video frame: frame (0-based), time_s, the found flags (0/1), then the
  predictions. Returns the number of rows."""
  found, values = prediction.found, prediction.values
  os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
  with open(path + ".tmp", "w", newline="", encoding="utf-8") as f:
    w = csv.writer(f)
    w.writerow(["frame", "time_s", *found, *values])
    for i in range(prediction.num_frames):
      w.writerow([i, f"{prediction.time_s[i]:.4f}", *(int(found[k][i]) for k in found),
                  *(f"{float(values[k][i]):.6f}" for k in values)])
  os.replace(path + ".tmp", path)
  return prediction.num_frames


def read_csv(path):
  """{column: (N,) array} of a CSV `write_csv` wrote."""
  with open(path, newline="", encoding="utf-8") as f:
    rows = list(csv.reader(f))
  header, body = rows[0], np.array(rows[1:], dtype=np.float64).reshape(-1, len(rows[0]))
  return {k: body[:, i] for i, k in enumerate(header)}


def plot(prediction):
  """The predictions over time, missing modalities shaded."""
  if "pain_probability" in prediction.values:
    shown, ylim = {"pain_probability": prediction.values["pain_probability"]}, (-0.02, 1.02)
  else:
    shown, ylim = prediction.values, (-1.05, 1.05)
  return plots.predictions_over_time(prediction.time_s, shown, prediction.found, ylim)


def write(out_dir, stem, prediction):
  """out_dir/<stem>.csv and out_dir/<stem>.png; returns their paths."""
  csv_path = os.path.join(out_dir, f"{stem}.csv")
  write_csv(csv_path, prediction)
  png_path = plots.save(plot(prediction), os.path.join(out_dir, f"{stem}.png"))
  return csv_path, png_path
