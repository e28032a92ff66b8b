"""The launch scripts' dry runs print the commands they would run, and run nothing."""

import glob
import os
import shutil
import subprocess
import sys

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


def test_shellcheck_passes_on_every_launch_script():
  scripts = sorted(glob.glob(os.path.join(ROOT, "launch", "*.sh")))
  assert len(scripts) == 5
  shellcheck = shutil.which("shellcheck") or os.path.join(os.path.dirname(sys.executable),
                                                          "shellcheck")
  proc = subprocess.run([shellcheck, *scripts], capture_output=True, text=True)
  assert proc.returncode == 0, proc.stdout


def test_tpu_pod_dry_run_creates_installs_runs_everywhere_and_copies_back(tmp_path):
  out = subprocess.run(
      [os.path.join(ROOT, "launch", "tpu_pod.sh"), "--dry-run", "jmt-v4", "us-central2-b",
       "v4-32", "configs/affwild2.py:data_dir=/data/a", "/mnt/shared/w", "--config.seed=3"],
      capture_output=True, text=True, check=True, cwd=ROOT,
      env=dict(os.environ, PROJECT="my-proj", SPOT="1", RESULTS=str(tmp_path / "r"))).stdout
  lines = out.splitlines()
  assert lines[0].startswith("gcloud compute tpus tpu-vm create jmt-v4 --accelerator-type=v4-32 ")
  assert "--spot" in lines[0] and "--project=my-proj" in lines[0]
  assert sum("--worker=all" in l for l in lines) == 3  # copy, install, train
  train_line = next(l for l in lines if "jmt_jax.main" in l)
  assert "--distributed" in train_line and "--config.seed=3" in train_line
  assert "--workdir=/mnt/shared/w" in train_line
  assert lines[-1].startswith("gcloud compute tpus tpu-vm scp --recurse jmt-v4:/mnt/shared/w/eval")
  assert not (tmp_path / "r").exists()


def test_slurm_dry_run_prints_the_job_and_its_submission(tmp_path):
  workdir = tmp_path / "w"
  out = subprocess.run(
      [os.path.join(ROOT, "launch", "slurm_gpu.sh"), "--dry-run", "2", "8",
       "configs/affwild2.py:data_dir=/data/a", str(workdir), "--config.seed=3"],
      capture_output=True, text=True, check=True, cwd=ROOT,
      env=dict(os.environ, SBATCH_FLAGS="--partition=gpu --time=1:00:00")).stdout
  assert "#SBATCH --nodes=2" in out and "#SBATCH --ntasks-per-node=8" in out
  assert "#SBATCH --signal=TERM@120" in out and 'scontrol requeue "$SLURM_JOB_ID"' in out
  srun = next(l for l in out.splitlines() if l.startswith("srun "))
  assert f"--workdir={workdir} --distributed --config.seed=3" in srun
  assert out.splitlines()[-1] == f"sbatch --partition=gpu --time=1:00:00 {workdir}/slurm_job.sh "
  assert not workdir.exists()


def test_launch_scripts_install_from_a_wheels_folder_when_given_one(tmp_path):
  common = dict(capture_output=True, text=True, check=True, cwd=ROOT)
  tpu = subprocess.run(
      [os.path.join(ROOT, "launch", "tpu_pod.sh"), "--dry-run", "jmt-v4", "us-central2-b",
       "v4-32", "configs/affwild2.py:data_dir=/data/a", "/mnt/shared/w"],
      env=dict(os.environ, WHEELS="/srv/wheels", RESULTS=str(tmp_path / "r")), **common)
  lines = tpu.stdout.splitlines()
  assert "tar -czf /tmp/jmt_jax_wheels.tar.gz -C /srv/wheels . " in lines
  install = next(l for l in lines if "install_offline.sh" in l)
  assert r"launch/install_offline.sh\ ~/jmt_jax_wheels\ tpu" in install
  assert r"pip\ install" not in install
  slurm = subprocess.run(
      [os.path.join(ROOT, "launch", "slurm_gpu.sh"), "--dry-run", "1", "4",
       "configs/affwild2.py:data_dir=/data/a", str(tmp_path / "w")],
      env=dict(os.environ, WHEELS="/srv/wheels", PYTHON="/opt/venv/bin/python"), **common)
  first = slurm.stdout.splitlines()[0]
  assert first == (f"env PYTHON=/opt/venv/bin/python {ROOT}/launch/install_offline.sh "
                   "/srv/wheels cuda12 ")
