"""Train and evaluate every fold of a cross-validation protocol, then tabulate.

  python -m jmt_jax.training.cross_validate --config=configs/biovid.py:data_dir=data/biovid,protocol=loso \
      --workdir=workdirs/biovid_loso

Fold K trains in WORKDIR/fold_K (rerunning resumes unfinished folds and re-scores
finished ones from their last checkpoint; a fold directory trained with another protocol,
number of folds, seed or classes, or on other recordings or data, is refused: see
jmt_jax.workdir). WORKDIR/cross_validation.csv and .md hold
each fold's accuracy, the mean and standard deviation over folds (ddof=1) and a 95%
interval of the mean from a bootstrap over the folds and the recordings each holds out
(jmt_jax.evaluation.comparison); cross_validation.json holds the same with the protocol.
"""

import os

import jax
from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from jmt_jax import tasks
from jmt_jax import workdir as workdir_lib
from jmt_jax.data import pipeline
from jmt_jax.data import prepared
from jmt_jax.evaluation import comparison
from jmt_jax.reports import tables
from jmt_jax.runtime import cli
from jmt_jax.training import train

FLAGS = flags.FLAGS


def num_folds(config):
  """The number of folds of `config.data.protocol` on its data."""
  dataset = pipeline.open_dataset(config.data)
  table = next(iter(dataset.splits.values())).table
  return prepared.count_folds(table, **config.data.protocol)


def run(config, workdir, folds=None):
  """Trains and scores `folds` (default all); returns and writes the table as a dict."""
  if "protocol" not in config.data:
    raise ValueError("config.data has no protocol: cross-validation needs a folded dataset "
                     "(e.g. configs/biovid.py)")
  metric = tasks.get(config.task).main_metric
  folds = list(range(num_folds(config))) if folds is None else list(folds)
  rows, stats = [], []
  for fold in folds:
    fold_config = config.copy_and_resolve_references()
    fold_config.data.protocol.fold = fold
    logging.info("Fold %d of %s.", fold, folds)
    fold_dir = os.path.join(workdir, f"fold_{fold}")
    scores = train.train_and_evaluate(fold_config, fold_dir)
    rows.append({"fold": fold, **scores})
    stats.append(workdir_lib.read_recording_stats(fold_dir, config.eval.split,
                                                  config.train.num_steps)[1])
  # Each fold holds out its own recordings: each is resampled on its own.
  row = comparison.compare(config.task, {"folds": stats}, list(range(len(folds))))[metric][0]
  summary = {"protocol": config.data.protocol.to_dict(), "metric": metric, "folds": rows,
             **{k: row[k] for k in ("mean", "std", "ci_low", "ci_high")}}
  if jax.process_index() == 0:
    write_table(workdir, summary)
  return summary


def write_table(workdir, summary):
  """cross_validation.csv, .md and .json in `workdir`."""
  metric, rows = summary["metric"], summary["folds"]
  p = summary["protocol"]
  mean_std = tables.mean_std(summary["mean"], summary["std"], 4)
  interval = f"[{summary['ci_low']:.4f}, {summary['ci_high']:.4f}]"
  lines = [f"{p['kind']} protocol, {len(rows)} folds: {metric} {mean_std} (std over folds, "
           f"ddof=1), 95% interval {interval} (bootstrap over folds and their recordings)", ""]
  lines += tables.markdown(["fold", metric], [[r["fold"], f"{r[metric]:.4f}"] for r in rows]
                           + [["mean +- std", mean_std], ["95% interval", interval]])
  tables.write(os.path.join(workdir, "cross_validation"), rows, lines, summary)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  config = FLAGS.config
  folds = [int(f) for f in FLAGS.folds] or None
  summary = cli.run(config, lambda: run(config, FLAGS.workdir, folds))
  for row in summary["folds"]:
    print(f"fold {row['fold']}: {summary['metric']} {row[summary['metric']]:.4f}")
  print(f"mean +- std over {len(summary['folds'])} folds: "
        f"{tables.mean_std(summary['mean'], summary['std'], 4)}, 95% interval "
        f"[{summary['ci_low']:.4f}, {summary['ci_high']:.4f}] "
        f"(table in {FLAGS.workdir}/cross_validation.md)")


def _define_flags():
  config_flags.DEFINE_config_file("config", None, "Config with a data.protocol, e.g. "
                                  "configs/biovid.py[:args].", lock_config=False)
  flags.DEFINE_string("workdir", None, "Directory holding one workdir per fold.")
  flags.DEFINE_list("folds", [], "Only these folds (default: all).")
  flags.mark_flags_as_required(["config", "workdir"])


if __name__ == "__main__":
  cli.app_run(main, _define_flags)
