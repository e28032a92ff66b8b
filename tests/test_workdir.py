"""A workdir's checkpoints (Orbax round trip of state + data iterator, fallback past a
corrupt checkpoint) and its config file."""

import glob
import json
import os

import grain
import jax
import jax.numpy as jnp
import numpy as np
import pytest

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
  assert workdir_lib.config_differences(other, str(tmp_path)) == ["model.fusion.kind",
                                                                  "train.num_steps"]
