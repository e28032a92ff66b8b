"""One training command, the same losses: on 1 device, on 8 (fake CPU) devices with the
backbones fully sharded, and on 2 processes joined through jax.distributed."""

import json
import socket
import subprocess

import jax
import ml_collections
import numpy as np
import pytest

from conftest import ROOT
from conftest import subprocess_env
from conftest import tiny_demo_command
from jmt_jax.runtime import sharding

STEPS = 4
FLAGS = (f"--config.train.num_steps={STEPS}", "--config.train.batch_size=8",
         "--config.train.log_every=1", "--config.train.eval_every=1000",
         "--config.train.checkpoint_every=1000", "--config.sharding.min_size=64")


def _losses(workdir):
  lines = [json.loads(l) for l in (workdir / "metrics.jsonl").read_text().splitlines()]
  losses = {l["step"]: l["train/loss"] for l in lines if "train/loss" in l}
  assert sorted(losses) == list(range(1, STEPS + 1))
  scores = [l["validation/ccc_mean"] for l in lines if "validation/ccc_mean" in l]
  return np.array([losses[s] for s in sorted(losses)]), scores[-1]


def _free_port():
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


@pytest.mark.slow
def test_same_losses_on_one_device_eight_devices_and_two_processes(tmp_path, data_dir):
  one = subprocess.run(tiny_demo_command(tmp_path / "one", data_dir, *FLAGS),
                       cwd=ROOT, env=subprocess_env(), capture_output=True, text=True,
                       timeout=600)
  assert one.returncode == 0, one.stderr[-3000:]

  eight = subprocess.run(
      tiny_demo_command(tmp_path / "eight", data_dir, *FLAGS, "--config.mesh.data=2",
                        "--config.mesh.fsdp=4"),
      cwd=ROOT, env=subprocess_env(XLA_FLAGS="--xla_force_host_platform_device_count=8"),
      capture_output=True, text=True, timeout=600)
  assert eight.returncode == 0, eight.stderr[-3000:]
  assert "over 8 devices in 1 processes" in eight.stderr
  sharded = int(eight.stderr.split("Train state: ")[1].split(" arrays sharded")[0])
  assert sharded > 0  # the backbones' kernels and their optimizer state are split 4 ways

  port = _free_port()
  env = subprocess_env(XLA_FLAGS="--xla_force_host_platform_device_count=2")
  procs = [subprocess.Popen(
      tiny_demo_command(tmp_path / "two", data_dir, *FLAGS, "--config.mesh.fsdp=2",
                        f"--coordinator_address=127.0.0.1:{port}", "--num_processes=2",
                        f"--process_id={i}"),
      cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
           for i in range(2)]
  outs = [p.communicate(timeout=600) for p in procs]
  for p, (_, err) in zip(procs, outs):
    assert p.returncode == 0, err[-3000:]
  assert "over 4 devices in 2 processes" in outs[0][1]

  losses_one, score_one = _losses(tmp_path / "one")
  for run in ("eight", "two"):
    losses, score = _losses(tmp_path / run)
    np.testing.assert_allclose(losses, losses_one, rtol=2e-4, atol=2e-5, err_msg=run)
    assert score == pytest.approx(score_one, abs=1e-3), run
  assert np.ptp(losses_one) > 0  # the parameters moved: later steps saw updated weights


def test_sharding_rules_place_backbones_and_replicate_the_rest():
  mesh = sharding.make_mesh({"data": 1, "fsdp": 1})
  cfg = ml_collections.ConfigDict(dict(rules=(("_backbone/", "fsdp"), (".*", "replicate")),
                                       fsdp_axis="fsdp", min_size=4))
  tree = {"params": {"video_backbone": {"kernel": jax.ShapeDtypeStruct((3, 8), np.float32),
                                        "bias": jax.ShapeDtypeStruct((2,), np.float32)},
                     "head": {"kernel": jax.ShapeDtypeStruct((8, 8), np.float32)}}}
  got = sharding.state_shardings(tree, mesh, cfg)
  # A size-1 fsdp axis shards nothing; the spec logic is what a larger axis would use.
  assert got["params"]["head"]["kernel"].spec == jax.sharding.PartitionSpec()
  assert sharding._fsdp_spec((3, 8), "fsdp", 4, 4) == jax.sharding.PartitionSpec(None, "fsdp")  # pylint: disable=protected-access
  assert sharding._fsdp_spec((2,), "fsdp", 4, 1) == jax.sharding.PartitionSpec()  # pylint: disable=protected-access
  assert sharding._fsdp_spec((16, 8), "fsdp", 4, 1000) == jax.sharding.PartitionSpec()  # pylint: disable=protected-access
  cfg.rules = (("head", "tensor"),)
  with pytest.raises(ValueError, match="unknown placement 'tensor' for params/head/kernel"):
    sharding.state_shardings(tree, mesh, cfg)


def test_the_first_matching_rule_wins():
  """On a 4-way fsdp mesh (abstract: no devices needed), the rule order decides."""
  mesh = jax.sharding.AbstractMesh((1, 4), ("data", "fsdp"))
  tree = {"params": {"video_backbone": {"kernel": jax.ShapeDtypeStruct((3, 8), np.float32)},
                     "head": {"kernel": jax.ShapeDtypeStruct((8, 8), np.float32)}}}

  def specs(rules):
    cfg = ml_collections.ConfigDict(dict(rules=rules, fsdp_axis="fsdp", min_size=4))
    got = sharding.state_shardings(tree, mesh, cfg)["params"]
    return got["video_backbone"]["kernel"].spec, got["head"]["kernel"].spec

  P = jax.sharding.PartitionSpec  # pylint: disable=invalid-name
  assert specs((("_backbone/", "fsdp"), (".*", "replicate"))) == (P(None, "fsdp"), P())
  assert specs(((".*", "replicate"), ("_backbone/", "fsdp"))) == (P(), P())
  assert specs((("head", "replicate"), (".*", "fsdp"))) == (P(None, "fsdp"), P())
  assert specs(((".*", "fsdp"), ("head", "replicate"))) == (P(None, "fsdp"), P("fsdp", None))
