"""What `jmt_jax.inference.predict` writes: a per-frame CSV and a plot of it."""

import csv
import os

from jmt_jax.reports import figures


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


def plot(predictions):
  """The predictions over time, one panel per person, missing modalities shaded."""
  pain = "pain_probability" in predictions[0].values
  panels = [(f"person {p.person}" if p.person else "predictions per frame",
             {"pain_probability": p.values["pain_probability"]} if pain else p.values, p.found)
            for p in predictions]
  return figures.predictions_over_time(predictions[0].time_s, panels,
                                     (-0.02, 1.02) if pain else (-1.05, 1.05))


def write(out_dir, stem, *predictions):
  """out_dir/<stem>.csv for the largest face, or out_dir/<stem>_person<k>.csv for each
  person of faces="all"; and out_dir/<stem>.png with them all. Returns (CSV paths, PNG
  path)."""
  csv_paths = []
  for p in predictions:
    csv_paths.append(os.path.join(out_dir, f"{stem}_person{p.person}.csv" if p.person
                                  else f"{stem}.csv"))
    write_csv(csv_paths[-1], p)
  png_path = figures.save(plot(predictions), os.path.join(out_dir, f"{stem}.png"))
  return csv_paths, png_path
