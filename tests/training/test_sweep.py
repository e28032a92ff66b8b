"""`jmt_jax.training.sweep`: variants x seeds through the training function, an interrupted sweep
resumed without repeating finished runs, stale run directories refused, the tables."""

import json
import os

import numpy as np
import pytest

from jmt_jax import workdir as workdir_lib
from jmt_jax.data.records import DIMENSIONS
from jmt_jax.evaluation import comparison
from jmt_jax.runtime import preemption
from jmt_jax.tasks import metrics
from jmt_jax.training import sweep
from jmt_jax.training import train


@pytest.mark.slow
def test_interrupted_sweep_resumes_without_repeating_finished_runs(data_dir, tmp_path,
                                                                   monkeypatch):
  overrides = {"train.num_steps": 2, "data.data_dir": data_dir}
  workdir = str(tmp_path / "sweep")
  trained, restored = [], []
  real_train, real_restore = train.train_and_evaluate, workdir_lib.restore_latest

  def counting_train(config, rundir):
    trained.append(os.path.relpath(rundir, workdir))
    if len(trained) == 3:  # SIGTERM in the third run's first step
      monkeypatch.setattr(preemption.StopRequests, "requested", lambda self: True)
    return real_train(config, rundir)

  def recording_restore(*args, **kwargs):
    out = real_restore(*args, **kwargs)
    restored.append(out[0])
    return out

  monkeypatch.setattr(train, "train_and_evaluate", counting_train)
  monkeypatch.setattr(workdir_lib, "restore_latest", recording_restore)
  with pytest.raises(preemption.Preempted):
    sweep.sweep("configs/demo.py:tiny", ["jmt", "concat"], 2, workdir, overrides)
  finished = {d: os.path.getmtime(os.path.join(workdir, d, "run.json"))
              for d in ("jmt/seed0", "jmt/seed1")}
  assert not os.path.exists(os.path.join(workdir, "concat/seed0/run.json"))
  monkeypatch.undo()
  monkeypatch.setattr(train, "train_and_evaluate", counting_train)
  monkeypatch.setattr(workdir_lib, "restore_latest", recording_restore)
  trained.clear()
  restored.clear()

  table = sweep.sweep("configs/demo.py:tiny", ["jmt", "concat"], 2, workdir, overrides,
                      num_samples=200)
  assert trained == ["concat/seed0", "concat/seed1"]  # the finished runs were not repeated
  assert restored[0] == 1  # the interrupted run resumed from its step-1 checkpoint
  for d, mtime in finished.items():
    assert os.path.getmtime(os.path.join(workdir, d, "run.json")) == mtime
  seeds = {json.load(open(os.path.join(workdir, v, f"seed{k}", "run.json")))["seed"]
           for v in ("jmt", "concat") for k in (0, 1)}
  assert seeds == {0, 1}
  rows = {r["variant"]: r for r in table["ccc_mean"]}
  assert rows["jmt"]["runs"] == 2 and "diff" in rows["concat"]
  assert rows["concat"]["diff"] == pytest.approx(rows["concat"]["mean"] - rows["jmt"]["mean"])
  for name in ("comparison.csv", "comparison.md", "comparison.json"):
    assert os.path.getsize(os.path.join(workdir, name)) > 0
  with open(os.path.join(workdir, "comparison.png"), "rb") as f:
    assert f.read(4) == b"\x89PNG"

  # The same workdir with another config: refused, not reused.
  with pytest.raises(ValueError, match="belongs to another run: train.num_steps is 2 there, 3 here"):
    sweep.sweep("configs/demo.py:tiny", ["jmt"], 1, workdir,
                {"train.num_steps": 3, "data.data_dir": data_dir})
  # The data prepared again since (a run's record of its checksums no longer holds):
  # refused, never re-scored beside the other runs.
  inputs_path = os.path.join(workdir, "jmt", "seed0", "inputs.json")
  with open(inputs_path) as f:
    inputs = json.load(f)
  shard = next(k for k in inputs["checksums"] if "train.array_record" in k)
  inputs["checksums"][shard] = "0" * 64
  with open(inputs_path, "w") as f:
    json.dump(inputs, f)
  with pytest.raises(ValueError, match=f"has changed since \\({shard} differs"):
    sweep.sweep("configs/demo.py:tiny", ["jmt", "concat"], 2, workdir, overrides)


def test_overrides_name_existing_fields():
  config = sweep.run_config("configs/demo.py:tiny", "concat", 4,
                            {"train.num_steps": 7, "eval.smoothing.valence": 3,
                             "data.data_dir": "/x/y"})
  assert (config.train.num_steps, config.eval.smoothing.valence, config.seed) == (7, 3, 4)
  assert config.data.data_dir == "/x/y" and config.model.fusion.kind == "concat"
  with pytest.raises(ValueError, match="no field 'train.num_step'"):
    sweep.run_config("configs/demo.py:tiny", "jmt", 0, {"train.num_step": 7})
  with pytest.raises(ValueError, match="cross_validate"):
    sweep.run_config("configs/biovid.py:tiny", "jmt", 0)


def test_a_one_seed_table_shows_scores_without_a_std(tmp_path):
  rng = np.random.default_rng(0)
  y = rng.uniform(-1, 1, (5, 40))
  stats = {v: [np.stack([[metrics.moments(y[r] * q + rng.normal(0, 0.3, 40), y[r],
                                          np.ones(40)) for _ in DIMENSIONS] for r in range(5)])]
           for v, q in (("jmt", 1.0), ("video", 0.5))}
  table = comparison.compare("valence_arousal", stats, [0], "jmt", 50)
  sweep.write_tables(str(tmp_path), table, 1, 5, 50)
  text = (tmp_path / "comparison.md").read_text()
  assert "nan" not in text and "1 seed per variant (no std over seeds)" in text
  assert "| variant | score | 95% interval |" in text
  row = next(r for r in table["ccc_mean"] if r["variant"] == "jmt")
  assert f"| jmt | {row['mean']:.3f} | [" in text
