"""The same training command runs data-parallel over several (fake CPU) devices."""

import json
import subprocess

from conftest import ROOT
from conftest import subprocess_env
from conftest import tiny_demo_command


def test_tiny_demo_trains_on_two_devices(tmp_path, data_dir):
  env = subprocess_env(XLA_FLAGS="--xla_force_host_platform_device_count=2")
  proc = subprocess.run(tiny_demo_command(tmp_path, data_dir, "--config.train.num_steps=2"),
                        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "over 2 devices" in proc.stderr
  lines = [json.loads(l) for l in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  assert any("validation/ccc_mean" in l for l in lines)
