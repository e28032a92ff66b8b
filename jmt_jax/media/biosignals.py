"""Biosignal recordings as BioVid publishes them: tab-separated `_bio.csv` files with a time
column and one column per channel."""

import math
import os

import numpy as np
from absl import logging

from jmt_jax.errors import BadInput
from jmt_jax.media import text_files

CHANNELS = ("gsr", "ecg", "emg_trapezius")  # gsr (EDA) first: the paper uses channel 0
# The time column's unit is the one of these that puts its step nearest the expected
# rate (BioVid's is microseconds); a step more than this factor from every unit's is refused.
TIME_UNITS = {"s": 1.0, "ms": 1e-3, "us": 1e-6}
RATE_TOLERANCE = 0.01  # a relative rate difference below this is rounding, not another rate


def read(path, channels=CHANNELS, rate=None):
  """(samples, len(channels)) float32 of the named columns of a tab-separated `_bio.csv`
  (by default gsr, ecg, emg_trapezius). With `rate` (Hz), the `time` column is checked
  against it: a recording at another rate, or with uneven times, is resampled to it (a
  warning says so)."""
  if not os.path.exists(path):
    raise BadInput(f"{path}: the biosignal file is missing")
  lines = [line for line in text_files.read_lines(path) if line.strip()]
  header = [h.strip() for h in lines[0].split("\t")] if lines else []
  missing = [c for c in ("time",) + tuple(channels) if c not in header]
  if missing:
    raise BadInput(f"{path}: the tab-separated header lacks {missing} (found {header[:6]})")
  cols = [header.index(c) for c in ("time",) + tuple(channels)]
  values = np.empty((len(lines) - 1, len(cols)), np.float64)
  for i, line in enumerate(lines[1:]):
    parts = line.split("\t")
    try:
      row = [float(parts[c]) for c in cols]
    except (ValueError, IndexError):
      raise BadInput(f"{path}: line {i + 2} is not {len(header)} tab-separated numbers") from None
    if any(math.isnan(x) or math.isinf(x) for x in row):
      raise BadInput(f"{path}: line {i + 2} holds NaN or inf")
    values[i] = row
  if not len(values):
    raise BadInput(f"{path}: no samples after the header")
  times, values = values[:, 0], values[:, 1:]
  if rate and len(values) > 1:
    values = _at_rate(path, times, values, rate)
  return values.astype(np.float32)


def _at_rate(path, times, values, rate):
  """`values` sampled at `times` (in the file's unit), at `rate` Hz from the first sample."""
  steps = np.diff(times)
  if (steps <= 0).any():
    line = int(np.flatnonzero(steps <= 0)[0]) + 3
    raise BadInput(f"{path}: the time column does not increase at line {line}")
  step = float(np.median(steps))
  unit = min(TIME_UNITS, key=lambda u: abs(math.log(step * TIME_UNITS[u] * rate)))
  seconds = (times - times[0]) * TIME_UNITS[unit]
  found = 1.0 / (step * TIME_UNITS[unit])
  if abs(math.log(found / rate)) > math.log(10):
    raise BadInput(f"{path}: the time column's step ({step:g}) fits no rate near the model's "
                   f"{rate:g} Hz in seconds, milliseconds or microseconds")
  expected = np.arange(len(values)) / rate
  if abs(found / rate - 1) < RATE_TOLERANCE and np.abs(seconds - expected).max() < 0.5 / rate:
    return values
  grid = np.arange(int(math.floor(seconds[-1] * rate)) + 1) / rate
  logging.warning("%s: sampled at %.4g Hz (time in %s%s), not the model's %g Hz: resampled "
                  "linearly to %g Hz.", path, found, unit,
                  ", unevenly" if abs(found / rate - 1) < RATE_TOLERANCE else "", rate, rate)
  return np.stack([np.interp(grid, seconds, values[:, c]) for c in range(values.shape[1])], 1)
