"""The cross-validation driver trains every fold of the protocol on the built-in BioVid
samples and tabulates per-fold and mean +- std accuracy."""

import csv
import json

import numpy as np
import pytest

from conftest import module_command
from conftest import run
from jmt_jax.data import pipeline
from jmt_jax.data import prepared


@pytest.mark.slow
def test_every_fold_trained_and_tabulated(tmp_path, data_dir):
  workdir = tmp_path / "cv"
  proc = run(module_command(
      "jmt_jax.training.cross_validate", "--config=configs/biovid.py:tiny", f"--workdir={workdir}",
      f"--config.data.data_dir={data_dir}", "--config.compilation_cache_dir=",
      "--config.train.num_steps=2"), timeout=900)
  assert proc.returncode == 0, proc.stderr[-3000:]
  with open(workdir / "cross_validation.csv", newline="") as f:
    rows = list(csv.DictReader(f))
  assert [int(r["fold"]) for r in rows] == [0, 1, 2]
  accuracies = np.array([float(r["accuracy"]) for r in rows])
  assert np.all((accuracies >= 0) & (accuracies <= 1))
  summary = json.loads((workdir / "cross_validation.json").read_text())
  assert summary["mean"] == pytest.approx(accuracies.mean())
  assert summary["std"] == pytest.approx(accuracies.std(ddof=1))
  assert summary["ci_low"] <= summary["mean"] <= summary["ci_high"]
  table = (workdir / "cross_validation.md").read_text()
  assert f"| mean +- std | {accuracies.mean():.4f} +- {accuracies.std(ddof=1):.4f} |" in table
  assert f"| 95% interval | [{summary['ci_low']:.4f}, {summary['ci_high']:.4f}] |" in table
  for k in range(3):  # each fold trained in its own workdir and scored its own samples
    fold_eval = json.loads((workdir / f"fold_{k}" / "eval" / "validation_step2.json").read_text())
    assert fold_eval["accuracy"] == pytest.approx(accuracies[k])
  assert "mean +- std over 3 folds" in proc.stdout

  # Rerun with other folds: fold 0 of 2 would hold out other subjects than the fold-0
  # model of 3 was trained without, so it is refused, not re-scored.
  before = (workdir / "fold_0" / "eval" / "validation_step2.json").read_bytes()
  rerun = run(module_command(
      "jmt_jax.training.cross_validate", "--config=configs/biovid.py:tiny,num_folds=2",
      f"--workdir={workdir}", f"--config.data.data_dir={data_dir}",
      "--config.compilation_cache_dir=", "--config.train.num_steps=2"), timeout=900)
  assert rerun.returncode == 1
  assert rerun.stderr.strip().splitlines()[-1].startswith(
      f"error: ValueError: {workdir / 'fold_0'} belongs to another run: "
      f"data.protocol.num_folds is 3 there, 2 here"), rerun.stderr[-2000:]
  assert (workdir / "fold_0" / "eval" / "validation_step2.json").read_bytes() == before
  inputs = json.loads((workdir / "fold_0" / "inputs.json").read_text())
  assert sorted(inputs["recordings"]) == ["train", "validation"]
  assert not set(inputs["recordings"]["train"]) & set(inputs["recordings"]["validation"])


def test_folds_of_the_built_in_samples_partition_them(tiny_config):
  config = tiny_config("biovid", "tiny")
  held_out = []
  for k in range(3):
    config.data.protocol.fold = k
    splits = pipeline.open_dataset(config.data).splits
    train, val = set(splits["train"].recordings), set(splits["validation"].recordings)
    assert train and val and not train & val
    held_out += sorted(val)
  assert sorted(held_out) == list(range(6))
  table = pipeline.open_dataset(config.data).splits["train"].table
  assert prepared.count_folds(table, kind="loso") == 6
