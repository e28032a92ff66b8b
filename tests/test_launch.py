"""The launch scripts' dry runs print the commands they would run, and run nothing."""

import os
import subprocess

from conftest import ROOT


def test_single_host_dry_run_prints_train_and_eval(tmp_path):
  workdir = tmp_path / "w"
  out = subprocess.run([os.path.join(ROOT, "launch", "single_host.sh"), "--dry-run",
                        "configs/demo.py:audio", str(workdir), "--config.train.num_steps=5"],
                       capture_output=True, text=True, check=True, cwd=ROOT).stdout.splitlines()
  assert out == [
      f"python -m jmt_jax.main --config=configs/demo.py:audio --workdir={workdir} "
      "--config.train.num_steps=5 ",
      f"python -m jmt_jax.main --config=configs/demo.py:audio --workdir={workdir} --mode=eval "
      "--config.train.num_steps=5 ",
  ]
  assert not workdir.exists()


def test_single_host_usage_error():
  proc = subprocess.run([os.path.join(ROOT, "launch", "single_host.sh")], capture_output=True,
                        text=True, cwd=ROOT)
  assert proc.returncode == 2 and "usage:" in proc.stderr
