"""Every variant x seed of a config, trained and evaluated by the training function `main`
runs, then compared: mean +- std over seeds, 95% bootstrap intervals over recordings and
seeds, and each variant's paired difference to a reference (jmt_jax.evaluation.comparison).

  python -m jmt_jax.training.sweep --config=configs/demo.py --variants=jmt,vanilla,concat,video,audio \
      --seeds=3 --workdir=workdirs/demo_sweep [--config.train.num_steps=600] [--robustness]

Run (variant, seed k) trains in WORKDIR/<variant>/seed<k> with config.seed = k and the
`--config.*` overrides (as `jmt_jax.main` takes them) applied to every variant. Rerunning
the command skips finished runs (WORKDIR/<variant>/seed<k>/run.json) and resumes
unfinished ones from their checkpoints; a run directory trained with another config or
on other data (other recordings, or prepared files whose checksums changed) is refused,
never reused. Runs go one after the other, each on every device and process of
the job, as `main` would run it. The tables go to WORKDIR/comparison.{csv,md,json} and
the plot to WORKDIR/comparison.png; with --robustness every run is also scored with each
modality removed and degraded, and WORKDIR/robustness.md gives the means over seeds.
"""

import json
import os

import jax
import numpy as np
from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from jmt_jax import config_args
from jmt_jax import experiment
from jmt_jax import tasks
from jmt_jax import workdir as workdir_lib
from jmt_jax.evaluation import comparison
from jmt_jax.evaluation import robustness
from jmt_jax.reports import figures
from jmt_jax.reports import tables
from jmt_jax.runtime import cli
from jmt_jax.training import train

FLAGS = flags.FLAGS


def run_config(spec, variant, seed, overrides=None):
  """The config of one run: `spec`'s file with `variant` first in its args, then
  `overrides` ({dotted field: value}, what `--config.FIELD=VALUE` flags give)."""
  path, _, args = spec.partition(":")
  config = config_args.load(f"{path}:{','.join(filter(None, [variant, args]))}")
  config_args.override(config, overrides or {})
  config.seed = seed
  if "protocol" in config.data:
    raise ValueError("a sweep compares runs on one split; for a cross-validation protocol "
                     "run python -m jmt_jax.training.cross_validate per variant")
  return config


def run_one(config, rundir, with_robustness):
  """Trains (or resumes) one run unless finished; returns its run.json record."""
  record_path = os.path.join(rundir, "run.json")
  if os.path.exists(record_path):
    # A finished run is reused only as it was trained (training checks an unfinished one).
    workdir_lib.check_config(config, rundir)
    workdir_lib.check_inputs(rundir,
                             experiment.Data(config).record(("train", config.eval.split)))
    with open(record_path) as f:
      record = json.load(f)
    logging.info("%s finished at step %d: skipped.", rundir, record["step"])
  else:
    scores = train.train_and_evaluate(config, rundir)
    step = config.train.num_steps
    record = {"seed": int(config.seed), "step": step, "split": config.eval.split,
              "scores": scores}
    if jax.process_index() == 0:
      with open(record_path + ".tmp", "w") as f:
        json.dump(record, f, indent=2)
      os.replace(record_path + ".tmp", record_path)
  table = workdir_lib.result_stem(rundir, "robustness", record["split"], record["step"])
  if with_robustness and not os.path.exists(table + ".json"):
    robustness.evaluate(config, rundir, record["split"])
  return record


def sweep(spec, variants, seeds, workdir, overrides=None, reference="jmt",
          with_robustness=False, num_samples=comparison.NUM_SAMPLES):
  """Runs every variant x seed, then writes and returns the comparison table (on
  process 0; None on the others). The workdir must be one filesystem for all processes,
  as Orbax checkpoints need."""
  if seeds < 1:
    raise ValueError(f"--seeds={seeds}: need at least one")
  configs = {(v, k): run_config(spec, v, k, overrides) for v in variants for k in range(seeds)}
  task_names = {v: configs[(v, 0)].task for v in variants}
  if len(set(task_names.values())) > 1:
    raise ValueError(f"the variants have different tasks ({task_names}): compare each task's "
                     f"variants in a sweep of their own")
  stats, task, names = {}, None, None
  for i, ((v, k), config) in enumerate(configs.items()):
    rundir = os.path.join(workdir, v, f"seed{k}")
    logging.info("Run %d of %d: %s seed %d in %s.", i + 1, len(configs), v, k, rundir)
    record = run_one(config, rundir, with_robustness)
    jax.clear_caches()  # one run's compiled programs at a time (the disk cache keeps them)
    if jax.process_index() != 0:  # the statistics and tables are process 0's
      continue
    run_names, run_stats = workdir_lib.read_recording_stats(rundir, record["split"],
                                                            record["step"])
    if names is not None and run_names != names:
      raise ValueError(f"{rundir} was scored on other recordings than the first run "
                       f"({len(run_names)} vs {len(names)}): the runs must share a split")
    names, task = run_names, config.task
    stats.setdefault(v, []).append(run_stats)
  if jax.process_index() != 0:
    return None
  table = comparison.compare(task, stats, [0] * seeds, reference if reference in stats else None,
                             num_samples)
  write_tables(workdir, table, seeds, len(names), num_samples)
  if with_robustness:
    write_robustness_summary(workdir, variants, seeds, configs)
  return table


def write_tables(workdir, table, seeds, num_recordings, num_samples):
  """comparison.csv, .md, .json and .png in `workdir`."""
  lines = [f"{seeds} seed{'s' if seeds > 1 else ''} per variant"
           f"{'' if seeds > 1 else ' (no std over seeds)'}; 95% intervals from a bootstrap "
           f"over the {num_recordings} recordings{' and the seeds' if seeds > 1 else ''}; "
           f"differences paired (same draws)."]
  for metric, rows in table.items():
    ref = next((r["reference"] for r in rows if "reference" in r), None)
    header = ["variant", "mean +- std" if seeds > 1 else "score", "95% interval"]
    if ref:
      header += [f"difference to {ref}", "its 95% interval"]
    cells = []
    for r in rows:
      cells.append([r["variant"], tables.mean_std(r["mean"], r["std"], 3),
                    f"[{r['ci_low']:.3f}, {r['ci_high']:.3f}]"])
      if ref:
        cells[-1] += ([f"{r['diff']:+.3f}", f"[{r['diff_low']:+.3f}, {r['diff_high']:+.3f}]"]
                      if "diff" in r else ["(reference)", ""])
    lines += ["", f"**{metric}**", ""] + tables.markdown(header, cells)
  tables.write(os.path.join(workdir, "comparison"),
               [{"metric": k, **r} for k, rs in table.items() for r in rs], lines,
               {"seeds": seeds, "recordings": num_recordings, "bootstrap_samples": num_samples,
                "table": table})
  figures.save(figures.comparison(table), os.path.join(workdir, "comparison.png"))


def write_robustness_summary(workdir, variants, seeds, configs):
  """workdir/robustness.md: each condition's mean +- std over seeds of every metric."""
  means = {}
  for v in variants:
    for k in range(seeds):
      rundir = os.path.join(workdir, v, f"seed{k}")
      with open(os.path.join(rundir, "run.json")) as f:
        record = json.load(f)
      with open(workdir_lib.result_stem(rundir, "robustness", record["split"],
                                        record["step"]) + ".json") as f:
        for row in json.load(f)["rows"]:
          cond = (row["condition"], row["modality"], row["rate"])
          for metric in tasks.get(configs[(v, k)].task).metrics:
            means.setdefault((metric, cond), {}).setdefault(v, []).append(row[metric])
  lines = [(f"Mean +- std over {seeds} seeds" if seeds > 1 else "One seed")
           + " (jmt_jax.evaluation.robustness)."]
  for metric in dict.fromkeys(m for m, _ in means):
    cells = []
    for (m, (cond, modality, rate)), by_variant in means.items():
      if m == metric:
        cells.append([cond, modality or "-", f"{rate:g}"] + [
            tables.mean_std(np.mean(by_variant[v]),
                            np.std(by_variant[v], ddof=1) if seeds > 1 else None, 3)
            if v in by_variant else "-" for v in variants])
    lines += ["", f"**{metric}**", ""] + tables.markdown(
        ["condition", "modality", "rate", *variants], cells)
  with open(os.path.join(workdir, "robustness.md"), "w") as f:
    f.write("\n".join(lines) + "\n")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")

  spec = config_flags.get_config_filename(FLAGS["config"])
  overrides = config_flags.get_override_values(FLAGS["config"])

  def work():
    return sweep(spec, FLAGS.variants, FLAGS.seeds, FLAGS.workdir, overrides, FLAGS.reference,
                 FLAGS.robustness, FLAGS.bootstrap_samples)

  if cli.run(FLAGS.config, work) is not None:
    with open(os.path.join(FLAGS.workdir, "comparison.md")) as f:
      print(f.read())
    print(f"(tables in {FLAGS.workdir}/comparison.{{md,csv,json}}, plot in comparison.png)")


def _define_flags():
  config_flags.DEFINE_config_file(
      "config", None, "Config file[:args], e.g. configs/demo.py or "
      "configs/affwild2.py:data_dir=DIR; each variant is put first in its args, and "
      "--config.FIELD=VALUE overrides apply to every run.", lock_config=True)
  flags.DEFINE_list("variants", None, "Variants of the config to compare.")
  flags.DEFINE_integer("seeds", 3, "Seeds per variant (0 .. N-1).")
  flags.DEFINE_string("workdir", None, "Directory holding one workdir per run.")
  flags.DEFINE_string("reference", "jmt", "Variant the differences are taken to.")
  flags.DEFINE_bool("robustness", False, "Also score every run with each "
                    "modality removed and degraded (jmt_jax.evaluation.robustness).")
  flags.DEFINE_integer("bootstrap_samples", comparison.NUM_SAMPLES,
                       "Bootstrap replicates.")
  flags.mark_flags_as_required(["config", "variants", "workdir"])


if __name__ == "__main__":
  cli.app_run(main, _define_flags)
