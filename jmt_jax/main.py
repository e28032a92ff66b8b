"""Train or evaluate a jmt_jax model.

  python -m jmt_jax.main --config=configs/demo.py --workdir=workdirs/demo
  python -m jmt_jax.main --config=configs/demo.py --workdir=workdirs/demo --mode=eval
  python -m jmt_jax.main --config=configs/demo.py --workdir=workdirs/demo --mode=robustness
  python -m jmt_jax.main --config=configs/affwild2.py:data_dir=DIR --workdir=W \
      --mode=submission --split=test [--sample_file=F] [--per_video_txt]

Running the same training command again resumes from the newest checkpoint; after
SIGTERM (preemption) or Ctrl-C training saves a checkpoint and exits with status 75.
Notebooks can call `jmt_jax.training.train.train_and_evaluate(config, workdir)` directly.
"""

import os

from absl import app
from absl import flags
from ml_collections import config_flags

from jmt_jax.evaluation import robustness
from jmt_jax.evaluation import scoring
from jmt_jax.evaluation import submission
from jmt_jax.runtime import cli
from jmt_jax.training import train

FLAGS = flags.FLAGS


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  config, workdir = FLAGS.config, FLAGS.workdir

  def work():
    if FLAGS.mode == "train":
      return train.train_and_evaluate(config, workdir)
    if FLAGS.mode == "eval":
      return scoring.evaluate_workdir(config, workdir, FLAGS.split or config.eval.split)
    if FLAGS.mode == "robustness":
      rows = robustness.evaluate(config, workdir, FLAGS.split or config.eval.split)
      return {"conditions": len(rows), "table": os.path.join(workdir, "robustness")}
    split = FLAGS.split or "test"
    out, per_video_dir = submission.paths(workdir, split)
    rows = submission.write(config, workdir, split, out, FLAGS.sample_file,
                            per_video_dir if FLAGS.per_video_txt else "")
    return {"rows": rows, "file": out}

  scores = cli.run(config, work)
  print({k: round(v, 4) if isinstance(v, float) else v for k, v in scores.items()})


def _define_flags():
  config_flags.DEFINE_config_file("config", None, "Config file, e.g. configs/demo.py[:variant].",
                                  lock_config=True)
  flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics and results.")
  flags.DEFINE_enum(
    "mode", "train", ["train", "eval", "robustness", "submission"],
    "train: train (or resume) then evaluate; eval: evaluate the newest checkpoint; "
    "robustness: evaluate it with each modality removed and degraded (jmt_jax.evaluation.robustness); "
    "submission: write the ABAW submission file of --split.")
  flags.DEFINE_string("split", None, "Split to evaluate or predict (default "
                      "config.eval.split; 'test' for a submission).")
  flags.DEFINE_string("sample_file", "", "The organisers' sample submission CSV: "
                      "its rows fix the submission's rows and order.")
  flags.DEFINE_bool("per_video_txt", False, "Also write one <video>.txt per "
                    "video (older ABAW editions' format).")
  flags.mark_flags_as_required(["config", "workdir"])


if __name__ == "__main__":
  cli.app_run(main, _define_flags)
