"""A workdir's checkpoints (Orbax round trip of state + data iterator, fallback past a
corrupt checkpoint, a checkpoint of another model), its config file (one run per
workdir, hand edits) and its training lock."""

import glob
import json
import os
import subprocess
import sys

import grain
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jmt_jax import experiment
from jmt_jax import workdir as workdir_lib
from jmt_jax.evaluation import scoring
from jmt_jax.training import train_step


def make_iterator():
  return iter(grain.MapDataset.source(list(range(100))).shuffle(seed=3).repeat()
              .to_iter_dataset().batch(4))


def make_state(seed):
  k = jax.random.PRNGKey(seed)
  return train_step.TrainState(step=jnp.asarray(seed, jnp.int32),
                          params={"w": jax.random.normal(k, (3, 4)), "b": jnp.arange(4.0)},
                          batch_stats={"mean": jnp.ones(4) * seed}, opt_state=(jnp.zeros(2),),
                          rng=k)


def assert_trees_equal(a, b):
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_round_trip_restores_state_and_data_position(tmp_path):
  it = make_iterator()
  next(it)
  mngr = workdir_lib.checkpoints(str(tmp_path), keep=3)
  state = make_state(5)
  workdir_lib.save(mngr, 5, state, it)
  mngr.wait_until_finished()
  expected_next = next(it)

  it2 = make_iterator()
  step, restored = workdir_lib.restore_latest(mngr, jax.eval_shape(lambda: make_state(0)), it2)
  assert step == 5
  assert_trees_equal(restored, state)
  np.testing.assert_array_equal(next(it2), expected_next)
  mngr.close()


def test_restore_falls_back_past_a_corrupt_newest_checkpoint(tmp_path):
  mngr = workdir_lib.checkpoints(str(tmp_path), keep=3)
  it = make_iterator()
  for step in (1, 2):
    workdir_lib.save(mngr, step, make_state(step), it)
    mngr.wait_until_finished()
  # Truncate every file of the newest step's state, as a crash mid-write would leave them.
  for path in glob.glob(str(tmp_path / "checkpoints" / "2" / "state" / "**" / "*"), recursive=True):
    if os.path.isfile(path):
      with open(path, "wb"):
        pass
  mngr.close()
  mngr = workdir_lib.checkpoints(str(tmp_path), keep=3)
  step, restored = workdir_lib.restore_latest(mngr, jax.eval_shape(lambda: make_state(0)), None)
  assert step == 1
  assert_trees_equal(restored, make_state(1))
  mngr.close()


def test_eval_mode_without_checkpoint_says_how_to_train(tiny_config, tmp_path):
  config = tiny_config("demo", "tiny")
  with pytest.raises(FileNotFoundError, match="train first"):
    scoring.evaluate_workdir(config, str(tmp_path), "validation")


def test_config_round_trip_and_differences(tiny_config, tmp_path):
  config = tiny_config("demo", "tiny")
  assert workdir_lib.config_differences(config, str(tmp_path)) == []
  workdir_lib.write_config(config, str(tmp_path))
  assert workdir_lib.read_config(str(tmp_path)).to_dict() == json.loads(
      config.to_json_best_effort())
  assert workdir_lib.config_differences(config, str(tmp_path)) == []
  other = tiny_config("demo", "concat,tiny")
  other.train.num_steps = 9
  other.train.read_threads = 7  # how the input is read: not a difference
  assert workdir_lib.config_differences(other, str(tmp_path)) == [
      ("model.fusion.kind", "jmt", "concat"), ("train.num_steps", 4, 9)]
  other = tiny_config("demo", "tiny")
  other.eval.smoothing.valence = 5
  assert [d[0] for d in workdir_lib.config_differences(other, str(tmp_path))] == [
      "eval.smoothing.valence"]
  assert workdir_lib.config_differences(other, str(tmp_path), evaluating=True) == []


def _trained(workdir):
  mngr = workdir_lib.checkpoints(workdir, keep=3)
  workdir_lib.save(mngr, 1, make_state(1), None)
  mngr.wait_until_finished()
  mngr.close()


def test_another_config_is_refused_where_checkpoints_exist(tiny_config, tmp_path):
  workdir = str(tmp_path)
  config = tiny_config("demo", "tiny")
  workdir_lib.write_config(config, workdir)
  forgot_tiny = tiny_config("demo", "")
  workdir_lib.check_config(forgot_tiny, workdir)  # nothing trained yet: the new run takes it
  _trained(workdir)
  with pytest.raises(ValueError) as e:
    workdir_lib.check_config(forgot_tiny, workdir)
  message = str(e.value)
  assert "\n" not in message and "belongs to another run" in message
  assert "data.render.max_frames is 60 there, 360 here" in message, message
  assert "another --workdir" in message and os.path.join(workdir, "config.json") in message
  workdir_lib.check_config(config, workdir)


@pytest.mark.parametrize("edit, problem", [
    (lambda c: c["train"].update(num_steps="4"), "'train.num_steps' is a string ('4'), not a number"),
    (lambda c: c.pop("model"), "the section 'model' is missing"),
    (lambda c: c["model"].pop("head"), "the section 'model.head' is missing"),
    (lambda c: c["optimizer"].pop("learning_rate"), "the field 'optimizer.learning_rate' is missing"),
    (lambda c: c.update(eval=[]), "'eval' is a list, not a section"),
])
def test_a_hand_edited_config_json_names_the_file_and_the_field(tiny_config, tmp_path, edit,
                                                                problem):
  workdir_lib.write_config(tiny_config("demo", "tiny"), str(tmp_path))
  path = os.path.join(str(tmp_path), "config.json")
  with open(path) as f:
    raw = json.load(f)
  edit(raw)
  with open(path, "w") as f:
    json.dump(raw, f)
  with pytest.raises(ValueError) as e:
    workdir_lib.read_config(str(tmp_path))
  assert str(e.value).startswith(f"{path}: {problem};"), str(e.value)


def test_a_checkpoint_of_another_model_is_reported_as_not_fitting(tmp_path):
  mngr = workdir_lib.checkpoints(str(tmp_path), keep=3)
  workdir_lib.save(mngr, 1, make_state(1), None)
  mngr.wait_until_finished()
  other = jax.eval_shape(lambda: make_state(0).replace(params={"w": jnp.zeros((3, 5)),
                                                               "b": jnp.zeros(4)}))
  with pytest.raises(ValueError, match=r"does not fit this config: params/w is \(3, 4\) there, "
                                       r"\(3, 5\) in this config's model"):
    workdir_lib.restore_latest(mngr, other, None)
  mngr.close()


def test_keeping_no_checkpoint_is_refused(tmp_path):
  with pytest.raises(ValueError, match="keep_checkpoints=0: must be at least 1"):
    workdir_lib.checkpoints(str(tmp_path), keep=0)


def test_a_second_trainer_is_refused_and_the_lock_dies_with_its_holder(tmp_path):
  holder = subprocess.Popen(
      [sys.executable, "-c", "import sys, time; from jmt_jax import workdir as w\n"
       "with w.training_lock(sys.argv[1]):\n  print('locked', flush=True); time.sleep(600)",
       str(tmp_path)], stdout=subprocess.PIPE, text=True)
  try:
    assert holder.stdout.readline().strip() == "locked"
    with pytest.raises(ValueError, match=rf"is in use: process {holder.pid} on .* is training"):
      with workdir_lib.training_lock(str(tmp_path)):
        pass
  finally:
    holder.kill()  # SIGKILL: no cleanup runs
    holder.wait()
  with workdir_lib.training_lock(str(tmp_path)):
    pass


def test_a_run_on_changed_data_is_refused(tiny_config, tmp_path):
  config = tiny_config("demo", "tiny")
  config.data.data_dir = str(tmp_path / "data")
  data = experiment.Data(config)
  workdir = str(tmp_path / "run")
  _trained(workdir)
  workdir_lib.write_inputs(workdir, data.record(("train", "validation")))
  workdir_lib.check_inputs(workdir, data.record(("train", "validation")))
  shard = glob.glob(os.path.join(data.dataset.directory, "*train.array_record*"))[0]
  with open(shard, "ab") as f:  # the data prepared again, differently
    f.write(b"\0")
  with pytest.raises(ValueError, match=rf"has changed since \({os.path.basename(shard)} differs: "
                                       r"prepared again\?\)\. Use another --workdir"):
    workdir_lib.check_inputs(workdir, data.record(("train", "validation")))


def test_a_fold_run_on_another_partition_is_refused(tiny_config, tmp_path):
  config = tiny_config("biovid", "tiny")
  workdir = str(tmp_path)
  _trained(workdir)
  workdir_lib.write_inputs(workdir, experiment.Data(config).record(("train", "validation")))
  config.data.protocol.fold = 1
  with pytest.raises(ValueError, match="was trained on other recordings: its train split held 4"):
    workdir_lib.check_inputs(workdir, experiment.Data(config).record(("train", "validation")))


def test_the_environment_is_recorded_once_and_changes_named(tmp_path, caplog):
  workdir_lib.record_environment(str(tmp_path))
  path = tmp_path / "environment.json"
  record = json.loads(path.read_text())
  assert record["packages"]["jax"] == jax.__version__ and record["device_count"] >= 1
  record["packages"]["jax"] = "0.0.1"
  path.write_text(json.dumps(record))
  workdir_lib.record_environment(str(tmp_path))
  assert json.loads(path.read_text())["packages"]["jax"] == "0.0.1"  # the run's start is kept
  assert f"jax 0.0.1 -> {jax.__version__}" in caplog.text
