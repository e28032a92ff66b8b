"""Biosignal recordings as BioVid publishes them: tab-separated `_bio.csv` files with a time
column and one column per channel."""

import math
import os

import numpy as np

from jmt_jax.errors import BadInput

CHANNELS = ("gsr", "ecg", "emg_trapezius")  # gsr (EDA) first: the paper uses channel 0


def read(path, channels=CHANNELS):
  """(samples, len(channels)) float32 of the named columns of a tab-separated `_bio.csv`
  (by default gsr, ecg, emg_trapezius)."""
  if not os.path.exists(path):
    raise BadInput(f"{path}: the biosignal file is missing")
  with open(path) as f:
    lines = [line.rstrip("\r\n") for line in f if line.strip()]
  header = [h.strip() for h in lines[0].split("\t")] if lines else []
  missing = [c for c in ("time",) + tuple(channels) if c not in header]
  if missing:
    raise BadInput(f"{path}: the tab-separated header lacks {missing} (found {header[:6]})")
  cols = [header.index(c) for c in channels]
  values = np.empty((len(lines) - 1, len(cols)), np.float32)
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
  return values
