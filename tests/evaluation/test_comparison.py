"""The sweep's statistics on hand-built predictions, against a direct numpy computation
that concatenates the resampled recordings' frames and scores them from the definitions."""

import numpy as np
import pytest

from jmt_jax import tasks
from jmt_jax.data.records import INVALID_LABEL
from jmt_jax.evaluation import comparison

SAMPLES = 300


def _ccc(x, y):
  """CCC from its definition (population statistics), frames labelled -5 left out."""
  keep = y != INVALID_LABEL
  x, y = x[keep], y[keep]
  cov = ((x - x.mean()) * (y - y.mean())).mean()
  return 2 * cov / (x.var() + y.var() + (x.mean() - y.mean()) ** 2)


def _accuracy(logits, labels):
  return float((np.argmax(logits, axis=-1) == labels).mean())


def _va_stats(details):
  return tasks.get("valence_arousal").recording_stats(details["predictions"],
                                                      details["targets"])[1]


def _va_details(rng, lengths, quality):
  """Per-video predictions (a noisy copy of the targets) and targets, some invalid."""
  preds, targets = {}, {}
  for i, n in enumerate(lengths):
    y = {d: rng.uniform(-1, 1, n) for d in ("valence", "arousal")}
    y["valence"][rng.random(n) < 0.1] = INVALID_LABEL
    preds[f"video{i}"] = {d: quality * np.where(v == INVALID_LABEL, 0, v)
                          + rng.normal(0, 0.5, n) for d, v in y.items()}
    targets[f"video{i}"] = y
  return {"predictions": preds, "targets": targets}


def _direct_ccc_mean(details, recordings):
  """ccc_mean over the frames of `recordings` (indices into the sorted names, repeats
  kept) concatenated."""
  names = sorted(details["predictions"])
  cat = lambda side, d: np.concatenate([details[side][names[r]][d] for r in recordings])
  return np.mean([_ccc(cat("predictions", d), cat("targets", d))
                  for d in ("valence", "arousal")])


@pytest.fixture(scope="module")
def sweep_runs():
  rng = np.random.default_rng(0)
  lengths = rng.integers(20, 80, 7)
  return {v: [_va_details(rng, lengths, q + 0.1 * s) for s in range(3)]
          for v, q in (("jmt", 1.0), ("concat", 0.8), ("video", 0.3))}


def test_recording_stats_give_the_frame_level_scores(sweep_runs):
  details = sweep_runs["jmt"][0]
  got = tasks.get("valence_arousal").metric_values(_va_stats(details).sum(axis=0))
  names = sorted(details["predictions"])
  cat = lambda side, d: np.concatenate([details[side][v][d] for v in names])
  want = {f"ccc_{d}": _ccc(cat("predictions", d), cat("targets", d))
          for d in ("valence", "arousal")}
  want["ccc_mean"] = (want["ccc_valence"] + want["ccc_arousal"]) / 2
  for k in tasks.get("valence_arousal").metrics:
    assert got[k] == pytest.approx(want[k], abs=1e-12)


def test_intervals_and_paired_differences_match_a_direct_computation(sweep_runs):
  stats = {v: [_va_stats(d) for d in runs] for v, runs in sweep_runs.items()}
  table = comparison.compare("valence_arousal", stats, [0, 0, 0], "jmt", SAMPLES, seed=3)
  recordings, seeds = comparison.draws(np.random.default_rng(3), SAMPLES, {0: 7}, 3)
  replicate = {v: np.array([np.mean([_direct_ccc_mean(runs[k], recordings[0][b])
                                     for k in seeds[b]]) for b in range(SAMPLES)])
               for v, runs in sweep_runs.items()}
  rows = {r["variant"]: r for r in table["ccc_mean"]}
  for v, runs in sweep_runs.items():
    per_seed = [_direct_ccc_mean(d, range(7)) for d in runs]
    assert rows[v]["mean"] == pytest.approx(np.mean(per_seed), abs=1e-12)
    assert rows[v]["std"] == pytest.approx(np.std(per_seed, ddof=1), abs=1e-12)
    assert [rows[v]["ci_low"], rows[v]["ci_high"]] == pytest.approx(
        np.percentile(replicate[v], [2.5, 97.5]), abs=1e-12)
    if v != "jmt":
      diff = replicate[v] - replicate["jmt"]
      assert rows[v]["diff"] == pytest.approx(np.mean(per_seed) - rows["jmt"]["mean"], abs=1e-12)
      assert [rows[v]["diff_low"], rows[v]["diff_high"]] == pytest.approx(
          np.percentile(diff, [2.5, 97.5]), abs=1e-12)
  assert "diff" not in rows["jmt"]
  # What the numbers say: the interval holds the mean, and the worse variants lie below.
  assert rows["jmt"]["ci_low"] < rows["jmt"]["mean"] < rows["jmt"]["ci_high"]
  assert rows["video"]["diff_high"] < 0


def test_folds_resample_their_own_recordings_for_accuracy():
  """Cross-validation: each fold's windows come from its own recordings (sets)."""
  rng = np.random.default_rng(1)
  folds = []
  for f in range(4):
    n = 30 + 5 * f
    recording = np.arange(n) % 10 + 100 * f
    labels = rng.integers(0, 2, n)
    logits = rng.normal(0, 1, (n, 2)) + 1.5 * np.eye(2)[labels] * (rng.random(n) < 0.7)[:, None]
    folds.append({"logits": logits, "labels": labels, "recording": recording})
  stats = [tasks.get("pain").recording_stats(d["logits"], d["labels"], d["recording"])[1]
           for d in folds]
  table = comparison.compare("pain", {"jmt": stats}, [0, 1, 2, 3], None, SAMPLES, seed=5)
  recordings, groups = comparison.draws(np.random.default_rng(5), SAMPLES,
                                        {f: 10 for f in range(4)}, 4)

  def accuracy(fold, picks):
    d = folds[fold]
    ids = sorted(set(d["recording"].tolist()))
    keep = np.concatenate([np.flatnonzero(d["recording"] == ids[p]) for p in picks])
    return _accuracy(d["logits"][keep], d["labels"][keep])

  replicate = [np.mean([accuracy(g, recordings[g][b]) for g in groups[b]])
               for b in range(SAMPLES)]
  row = table["accuracy"][0]
  assert row["mean"] == pytest.approx(np.mean([_accuracy(d["logits"], d["labels"])
                                               for d in folds]), abs=1e-12)
  assert [row["ci_low"], row["ci_high"]] == pytest.approx(np.percentile(replicate, [2.5, 97.5]),
                                                          abs=1e-12)


def test_unequal_runs_are_refused():
  stats = {"jmt": [np.ones((3, 2))] * 2, "concat": [np.ones((3, 2))]}
  with pytest.raises(ValueError, match="'concat' has 1 runs"):
    comparison.compare("pain", stats, [0, 0], "jmt", 10)
