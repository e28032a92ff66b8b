"""Whole-split evaluation, the way the benchmarks score it.

Valence/arousal: every frame is predicted exactly once (see data.windows.eval_windows);
the predictions are reassembled per video, post-processed as `config.eval.smoothing`
says (clipped to [-1, 1]; a moving average of that many frames per dimension; see
jmt_jax.tasks.abaw) and scored by CCC over all frames of all videos, -5 labels excluded.
Pain: accuracy over windows. Each task says how (jmt_jax.tasks).
"""

import math
import os
import time

import jax
import numpy as np
from absl import logging
from jax.experimental import multihost_utils

from jmt_jax import experiment
from jmt_jax import tasks
from jmt_jax import workdir as workdir_lib
from jmt_jax.data import pipeline
from jmt_jax.reports import figures


def _gather(tree):
  """Host numpy copies of sharded global arrays (all processes get everything)."""
  return jax.tree.map(np.asarray, multihost_utils.process_allgather(tree, tiled=True))


def predict_split(predict_fn, source, global_batch_size, make_global, read_threads):
  """(outputs, labels) of every window of `source`, padding dropped; labels hold the
  batch's label keys plus `recording` and `frame` of each clip.

  `source` windows are split across processes; every process runs the same number of
  batches (padding with invalid windows) so collective operations line up.
  """
  count, index = jax.process_count(), jax.process_index()
  num_batches = math.ceil(len(source) / global_batch_size)
  local = pipeline.process_slice(source, index, count)
  preds, labels = [], []
  for batch in pipeline.eval_batches(local, global_batch_size // count, read_threads,
                                     num_batches):
    out, lab = _gather(predict_fn(make_global(batch)))
    preds.append(out)
    labels.append(lab)
  cat = lambda parts: {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
  preds, labels = cat(preds), cat(labels)
  valid = labels["valid"] > 0
  return ({k: v[valid] for k, v in preds.items()}, {k: v[valid] for k, v in labels.items()})


def evaluate(predict_fn, source, config, make_global):
  """(scores, details) of `source` as its task scores it (`tasks`: for valence/arousal
  the post-processed predictions and targets per video; for pain the windows' logits,
  labels and recordings)."""
  preds, labels = predict_split(predict_fn, source, config.eval.batch_size, make_global,
                                config.train.read_threads)
  return tasks.get(config.task).score(preds, labels, source.table, config)


def evaluate_and_record(predict_fn, source, config, workdir, split, step, make_global,
                        writer=None):
  """`evaluate`, and what a workdir keeps of it: its scores and per-recording statistics
  (jmt_jax.workdir), the scores in `writer`'s metrics, and (process 0) plots/: training
  curves so far and the task's figure of this evaluation, each file showing the latest.
  Returns the scores."""
  t0 = time.time()
  scores, details = evaluate(predict_fn, source, config, make_global)
  path = workdir_lib.write_scores(workdir, split, step, scores,
                                  {"smoothing": config.eval.smoothing.to_dict()})
  workdir_lib.write_recording_stats(workdir, split, step, *details["recording_stats"])
  if writer is not None:
    writer.write(step, {f"{split}/{k}": v for k, v in scores.items()})
  if jax.process_index() == 0:
    out = os.path.join(workdir, "plots")
    figures.save(figures.training_curves(workdir_lib.read_metrics(workdir)),
                 os.path.join(out, "curves.png"))
    name, fig = tasks.get(config.task).plot(details, config)
    figures.save(fig, os.path.join(out, f"{split}_{name}.png"))
  logging.info("Eval at step %d on %s (%.1fs): %s -> %s", step, split, time.time() - t0,
               {k: round(v, 4) for k, v in scores.items()}, path)
  return scores


def evaluate_workdir(config, workdir, split):
  """Scores the newest readable checkpoint of `workdir` on `split` and records it."""
  run = experiment.Evaluation(config, workdir)
  return evaluate_and_record(run.predict, run.source(split), config, workdir, split, run.step,
                             run.mesh.make_global)
