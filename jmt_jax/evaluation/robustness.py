"""A trained model scored with each modality removed, and with each degraded at set rates.

  python -m jmt_jax.main --config=CONFIG --workdir=W --mode=robustness [--split=S]

A removed modality is fed exactly as prediction feeds one that is missing: zero face
crops (a video where no face is found), zero audio (a video without a sound track), zero
biosignal (no biosignal file). Degradations, at the rates of `config.eval.robustness`:
- `dropped`: each frame independently lost with probability `rate`, fed as a frame
  without a face is under `missing_face='zeros'` (a zero crop);
- `silenced`: each `span_seconds` span of a signal independently zeroed with
  probability `rate` (the voice silenced, the sensor dropping out);
- `noise`: Gaussian noise added, of standard deviation `rate` x 255 grey levels on frames
  and `rate` x the recording's RMS on signals.
Every draw is a function of (seed, condition, recording, frame or span), so a frame or
span read by two windows is degraded the same way, and a rerun gives the same table.
The model reads raw inputs here (never a feature cache): degraded inputs have embeddings
of their own. The table goes to W/robustness/<split>_step<N>.{csv,md,json}.
"""

import copy
import zlib

import jax
import numpy as np
from absl import logging

from jmt_jax import experiment
from jmt_jax import tasks
from jmt_jax import workdir as workdir_lib
from jmt_jax.data import clips as clips_lib
from jmt_jax.data import records
from jmt_jax.evaluation import scoring
from jmt_jax.reports import tables

FRAMES = "frames"  # what a frames modality reads from a store (signals go by their key)


def stored_key(spec):
  """What a modality of `spec` reads from a store: frames, or its signal's key."""
  if spec["kind"] not in clips_lib.SIGNAL_OF_KIND and spec["kind"] != "frames":
    raise ValueError(f"robustness degrades recordings; {spec['kind']!r} inputs (features "
                     f"extracted elsewhere) cannot be degraded")
  return FRAMES if spec["kind"] == "frames" else clips_lib.SIGNAL_OF_KIND[spec["kind"]]


def conditions(specs, settings):
  """[(condition, modality, rate)]: clean, each modality removed, then each degradation
  that applies to it at each of its rates."""
  out = [("clean", "", 0.0)] + [("removed", m, 1.0) for m in specs]
  for m, spec in specs.items():
    kinds = ("dropped", "noise") if spec["kind"] == "frames" else ("silenced", "noise")
    out += [(kind, m, float(rate)) for kind in kinds for rate in settings[kind]]
  return out


def _uniform(seed, *keys):
  """A uniform number in [0, 1) fixed by integer `keys`."""
  return np.random.default_rng([seed, *keys]).random()


class DegradedStore:
  """A `clips` store whose `key` input (FRAMES or a signal key) is removed or degraded;
  everything else is read from `store` unchanged."""

  def __init__(self, store, key, condition, rate, span_seconds=0.5, seed=0):
    if condition not in ("removed", "dropped", "silenced", "noise"):
      raise ValueError(f"unknown condition {condition!r}")
    if condition == "dropped" and key != FRAMES or condition == "silenced" and key == FRAMES:
      raise ValueError(f"{condition!r} applies to {'frames' if condition == 'dropped' else 'signals'}, "
                       f"not {key!r}")
    self.store, self.key, self.condition, self.rate = store, key, condition, rate
    self.span_seconds = span_seconds
    self.code = zlib.crc32(f"{condition}/{key}/{rate}".encode())
    self.seed = seed
    self._rms = {}

  def __getattr__(self, name):  # rates, table, num_frames, fps: the store's own
    if name == "store":  # not set yet (unpickling): no recursion through self.store
      raise AttributeError(name)
    return getattr(self.store, name)

  def read_frames(self, recording, frames, decode=True):
    images, labels = self.store.read_frames(recording, frames, decode)
    if self.key != FRAMES or images is None:
      return images, labels
    images = np.zeros_like(images) if self.condition == "removed" else images.copy()
    for i, f in enumerate(np.asarray(frames) if self.condition != "removed" else ()):
      if self.condition == "dropped" and _uniform(self.seed, self.code, recording,
                                                  int(f)) < self.rate:
        images[i] = 0
      elif self.condition == "noise":
        noise = np.random.default_rng([self.seed, self.code, recording, int(f)]).normal(
            0.0, self.rate * 255.0, images[i].shape)
        images[i] = np.clip(np.rint(images[i] + noise), 0, 255).astype(np.uint8)
    return images, labels

  def _length(self, recording):
    """Samples of the degraded signal the recording spans."""
    rate = self.store.rates[records.RATE_KEYS[self.key]]
    return records.sample_at(self.store.num_frames(recording), rate, self.store.fps(recording))

  def _recording_rms(self, recording):
    if recording not in self._rms:
      signal = self.store.read_signal(recording, self.key, 0, self._length(recording))
      signal = signal.astype(np.float64)
      self._rms[recording] = float(np.sqrt(np.mean(signal ** 2))) if signal.size else 0.0
    return self._rms[recording]

  def read_signal(self, recording, key, lo, hi):
    out = self.store.read_signal(recording, key, lo, hi)
    if key != self.key:
      return out
    if self.condition == "removed":
      return np.zeros_like(out)
    out = out.copy()
    span = max(1, int(round(self.span_seconds * self.store.rates[records.RATE_KEYS[key]])))
    rms = self._recording_rms(recording) if self.condition == "noise" else 0.0
    # Samples outside the recording are padding, not signal: left as they are.
    first, last = max(lo, 0), min(hi, self._length(recording))
    for block in range(first // span, (last - 1) // span + 1 if last > first else 0):
      a, b = max(first, block * span) - lo, min(last, (block + 1) * span) - lo
      if self.condition == "silenced":
        if _uniform(self.seed, self.code, recording, block) < self.rate:
          out[a:b] = 0
      else:  # noise: the block's noise drawn whole, so any window sees the same samples
        noise = np.random.default_rng([self.seed, self.code, recording, block]).normal(
            0.0, self.rate * rms, (span,) + out.shape[1:])
        start = max(first, block * span) - block * span
        noisy = out[a:b] + noise[start:start + b - a]
        if np.issubdtype(out.dtype, np.integer):
          info = np.iinfo(out.dtype)
          noisy = np.clip(np.rint(noisy), info.min, info.max)
        out[a:b] = noisy.astype(out.dtype)
    return out


def evaluate(config, workdir, split):
  """Scores of the newest checkpoint of `workdir` on `split` under every condition;
  writes the table (workdir/robustness/<split>_step<N>) and returns its rows."""
  if "robustness" not in config.eval:
    raise ValueError("config.eval has no robustness rates (a workdir trained before they "
                     "existed): pass the config file with --config")
  settings = config.eval.robustness.to_dict()
  run = experiment.Evaluation(config, workdir)
  # The inputs themselves, never a feature cache's embeddings: they are what is degraded.
  source = run.data.inputs(split, train=False)
  specs = source.modalities
  predict_fn = experiment.make_predict(run.model, config.task)
  predict = lambda b: predict_fn(run.variables, b)
  metrics = tasks.get(config.task).metrics
  rows = []
  for condition, modality, rate in conditions(specs, settings):
    degraded = copy.copy(source)
    if condition != "clean":
      degraded.store = DegradedStore(source.store, stored_key(specs[modality]), condition,
                                     rate, settings["span_seconds"], settings["seed"])
    scores, _ = scoring.evaluate(predict, degraded, config, run.mesh.make_global)
    rows.append({"condition": condition, "modality": modality, "rate": rate,
                 **{k: scores[k] for k in metrics}})
    logging.info("Robustness on %s, %s %s %.2f: %s", split, condition, modality, rate,
                 {k: round(v, 4) for k, v in rows[-1].items() if isinstance(v, float)})
  if jax.process_index() == 0:
    lines = tables.markdown(["condition", "modality", "rate", *metrics],
                            [[r["condition"], r["modality"] or "-", f"{r['rate']:g}",
                              *(f"{r[k]:.4f}" for k in metrics)] for r in rows])
    tables.write(workdir_lib.result_stem(workdir, "robustness", split, run.step), rows, lines,
                 {"step": int(run.step), "rows": rows})
  return rows
