"""Whole-split evaluation, the way the benchmarks score it.

Valence/arousal: every frame is predicted exactly once (see data.windows.eval_windows);
the predictions of all frames of all recordings are concatenated and scored by CCC,
frames labelled -5 excluded. Pain: accuracy over windows.
"""

import json
import math
import os

import jax
import numpy as np
from jax.experimental import multihost_utils

from jmt_jax import metrics
from jmt_jax.data import pipeline


def _gather(tree):
  """Host numpy copies of sharded global arrays (all processes get everything)."""
  return jax.tree.map(np.asarray, multihost_utils.process_allgather(tree, tiled=True))


def evaluate(predict_fn, source, task, global_batch_size, make_global, read_threads):
  """Runs `predict_fn(batch) -> (outputs, labels)` over `source` and scores it.

  `source` windows are split across processes; every process runs the same number of
  batches (padding with invalid windows) so collective operations line up.
  """
  count, index = jax.process_count(), jax.process_index()
  local_batch = global_batch_size // count
  num_batches = math.ceil(len(source) / global_batch_size)
  local = pipeline.process_slice(source, index, count)
  preds, labels = [], []
  for batch in pipeline.eval_batches(local, local_batch, read_threads, num_batches):
    out, lab = _gather(predict_fn(make_global(batch)))
    preds.append(out)
    labels.append(lab)
  preds = {k: np.concatenate([p[k] for p in preds]) for k in preds[0]}
  labels = {k: np.concatenate([l[k] for l in labels]) for k in labels[0]}
  valid = labels["valid"] > 0
  if task == "valence_arousal":
    return metrics.valence_arousal_scores(
        {k: preds[k][valid].reshape(-1) for k in ("valence", "arousal")},
        {k: labels[k][valid].reshape(-1) for k in ("valence", "arousal")})
  return {"accuracy": metrics.accuracy(preds["logits"][valid], labels["pain"][valid]),
          "num_windows": int(valid.sum())}


def write_json(workdir, split, step, scores):
  """workdir/eval/<split>_step<N>.json (process 0 only); returns the path."""
  path = os.path.join(workdir, "eval", f"{split}_step{step}.json")
  if jax.process_index() == 0:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
      json.dump({"split": split, "step": int(step), **scores}, f, indent=2)
  return path
