"""Scores of several runs compared as a reviewer would accept: mean +- std over seeds (or
folds), a 95% bootstrap interval, and each variant's paired difference to a reference.

Frames of one video are not independent, so the bootstrap resamples recordings, not
frames, and it resamples the runs' seeds (or folds) too. Each run is reduced to
sufficient statistics per recording (its task's `recording_stats`), from which its
metrics are exact functions of sums: a replicate weights every recording by how often
it was drawn.
Runs that were scored on the same recordings (the seeds of a sweep) share one draw of
them, and every variant shares the draws, so differences are paired; folds of a
cross-validation hold different recordings and draw each their own.
"""

import numpy as np

from jmt_jax import tasks

NUM_SAMPLES = 2000


def draws(rng, num_samples, set_sizes, num_groups):
  """The resampling of every replicate: ({set: (B, R_set) recording indices}, (B, G)
  group indices), each drawn with replacement."""
  recordings = {s: rng.integers(0, n, (num_samples, n)) for s, n in sorted(set_sizes.items())}
  return recordings, rng.integers(0, num_groups, (num_samples, num_groups))


def compare(task_name, runs, groups_set, reference=None, num_samples=NUM_SAMPLES, seed=0,
            level=0.95):
  """The results table of `runs` ({variant: [per-group (R_set, ...) statistics]}, the
  groups being seeds or folds, in the same order for every variant); `groups_set[g]`
  names the recordings group g was scored on (runs on the same recordings share one).

  Returns {metric: [row per variant]}, a row holding the variant, the groups, the mean
  and std (ddof=1) over groups of the per-run scores, the interval of that mean, and
  (reference given and present) the paired difference to the reference with its
  interval. Intervals are percentile intervals of `num_samples` replicates.
  """
  task = tasks.get(task_name)
  variants = list(runs)
  num_groups = len(groups_set)
  for v in variants:
    if len(runs[v]) != num_groups:
      raise ValueError(f"variant {v!r} has {len(runs[v])} runs; every variant needs "
                       f"{num_groups} (one per seed or fold)")
  sizes = {s: len(runs[variants[0]][g]) for g, s in enumerate(groups_set)}
  recordings, group_idx = draws(np.random.default_rng(seed), num_samples, sizes, num_groups)
  weights = {s: np.stack([np.bincount(row, minlength=n) for row in recordings[s]]).astype(
      np.float64) for s, n in sizes.items()}
  point, replicate = {}, {}
  for v in variants:
    per_run = [task.metric_values(stats.sum(axis=0)) for stats in runs[v]]
    point[v] = {k: np.array([r[k] for r in per_run]) for k in per_run[0]}
    # (G, B) metric of group g's run on replicate b's recordings.
    resampled = [task.metric_values(np.tensordot(weights[groups_set[g]], stats, axes=1))
                 for g, stats in enumerate(runs[v])]
    replicate[v] = {k: np.take_along_axis(np.stack([r[k] for r in resampled]), group_idx.T,
                                          axis=0).mean(axis=0) for k in resampled[0]}
  lo, hi = 100 * (1 - level) / 2, 100 * (1 + level) / 2
  table = {}
  for k in task.metrics:
    rows = []
    for v in variants:
      values = point[v][k]
      row = {"variant": v, "runs": num_groups, "mean": float(values.mean()),
             "std": float(values.std(ddof=1)) if num_groups > 1 else float("nan"),
             "ci_low": float(np.percentile(replicate[v][k], lo)),
             "ci_high": float(np.percentile(replicate[v][k], hi))}
      if reference in runs and v != reference:
        diff = replicate[v][k] - replicate[reference][k]
        row.update(reference=reference, diff=float(values.mean() - point[reference][k].mean()),
                   diff_low=float(np.percentile(diff, lo)),
                   diff_high=float(np.percentile(diff, hi)))
      rows.append(row)
    table[k] = rows
  return table

