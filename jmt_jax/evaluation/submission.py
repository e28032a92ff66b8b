"""A benchmark's submission file, predicted by the newest checkpoint of a workdir.

  python -m jmt_jax.main --config=configs/affwild2.py:data_dir=DIR --workdir=W \
      --mode=submission --split=test [--sample_file=F] [--per_video_txt]
"""

import os

import jax
from absl import logging

from jmt_jax import experiment
from jmt_jax import tasks
from jmt_jax.evaluation import scoring


def paths(workdir, split):
  """(the submission file, the folder of per-video files) of `split` in `workdir`."""
  return (os.path.join(workdir, "submission", f"{split}.csv"),
          os.path.join(workdir, "submission", split))


def write(config, workdir, split, out_path, sample_file="", per_video_dir=""):
  """The submission file(s) of `split` in the task's format (ABAW's CSV, and optionally
  per-video .txt files, for valence/arousal). Returns the number of rows written."""
  task = tasks.get(config.task)
  if not hasattr(task, "write_submission"):
    raise ValueError(f"{task.name} models have no submission file: ABAW's format is for "
                     f"valence/arousal (Aff-Wild2) models")
  run = experiment.Evaluation(config, workdir)
  source = run.source(split)
  preds, labels = scoring.predict_split(run.predict, source, config.eval.batch_size,
                                        run.mesh.make_global, config.train.read_threads)
  if jax.process_index() != 0:
    return 0
  rows, recordings = task.write_submission(preds, labels, source.table, config, out_path,
                                           sample_file, per_video_dir)
  logging.info("Wrote %d rows for %d recordings of %s (step %d) to %s.", rows, recordings,
               split, run.step, out_path)
  return rows
