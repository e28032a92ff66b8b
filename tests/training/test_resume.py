"""Never lose work: after SIGKILL at a random step, SIGTERM or Ctrl-C, the same command
resumes and ends with the parameters of a run that was never interrupted; a corrupt
newest checkpoint falls back to the previous one, and training sets it aside and saves
that step again; a non-finite loss stops the run without saving it."""

import glob
import json
import os
import random
import signal
import subprocess
import time

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from conftest import ROOT
from conftest import subprocess_env
from conftest import tiny_demo_command
from jmt_jax import workdir as workdir_lib

pytestmark = [pytest.mark.slow,  # kill-and-resume runs train several models
              pytest.mark.xdist_group("resume")]  # its module fixtures are built once

NUM_STEPS = 30


def command(workdir, data_dir, *flags):
  return tiny_demo_command(workdir, data_dir, f"--config.train.num_steps={NUM_STEPS}",
                           "--config.train.checkpoint_every=5", "--config.train.eval_every=1000",
                           "--config.train.log_every=1", *flags)


def final_state(workdir):
  """The step-NUM_STEPS train state as saved in `workdir`."""
  mngr = workdir_lib.checkpoints(workdir, keep=None)
  assert max(mngr.all_steps()) == NUM_STEPS
  restored = mngr.restore(NUM_STEPS, args=ocp.args.Composite(state=ocp.args.StandardRestore()))
  mngr.close()
  return restored["state"]


def assert_same_final_state(a, b):
  leaves_a, leaves_b = jax.tree.leaves(final_state(a)), jax.tree.leaves(final_state(b))
  assert len(leaves_a) == len(leaves_b) > 0
  for x, y in zip(leaves_a, leaves_b):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def logged_steps(workdir):
  path = os.path.join(workdir, "metrics.jsonl")
  if not os.path.exists(path):
    return 0
  with open(path) as f:
    steps = [json.loads(l)["step"] for l in f if l.strip().endswith("}")]
  return max(steps, default=0)


def committed_steps(workdir):
  """Checkpoint steps whose asynchronous save has finished (Orbax renames the step's
  temporary directory to the bare step number when it commits)."""
  path = os.path.join(workdir, "checkpoints")
  return [int(d) for d in os.listdir(path) if d.isdigit()] if os.path.isdir(path) else []


def start_and_signal(cmd, workdir, at_step, sig):
  """Starts `cmd`, sends `sig` once it has logged step `at_step` and committed a
  checkpoint (saves are asynchronous: on a busy machine the step-5 save can still be
  running at step 9, and there is nothing to resume from yet), waits for it to end."""
  proc = subprocess.Popen(cmd, cwd=ROOT, env=subprocess_env(), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)
  deadline = time.time() + 600
  while time.time() < deadline and proc.poll() is None and (
      logged_steps(workdir) < at_step or not committed_steps(workdir)):
    time.sleep(0.02)
  assert proc.poll() is None, "training finished before it could be interrupted"
  proc.send_signal(sig)
  _, err = proc.communicate(timeout=600)
  return proc.returncode, err


@pytest.fixture(scope="module")
def runs(tmp_path_factory, data_dir):
  """An uninterrupted run, which the interrupted ones are held to."""
  root = tmp_path_factory.mktemp("resume")
  straight = str(root / "straight")
  subprocess.run(command(straight, data_dir), cwd=ROOT, env=subprocess_env(), check=True,
                 capture_output=True, timeout=600)
  return root, straight


def test_sigkill_at_a_random_step_then_rerun_matches_uninterrupted(runs, data_dir):
  """With Grain worker processes making the batches: the iterator state they save restores
  exactly, and equals the single-process stream of the uninterrupted run."""
  root, straight = runs
  killed = str(root / "killed")
  workers = "--config.train.read_workers=2"
  at = random.Random().randint(6, NUM_STEPS - 4)
  print(f"killing at step {at}")
  code, _ = start_and_signal(command(killed, data_dir, workers), killed, at,
                             signal.SIGKILL)
  assert code == -signal.SIGKILL
  assert not os.path.isdir(os.path.join(killed, "checkpoints", str(NUM_STEPS)))

  rerun = subprocess.run(command(killed, data_dir, workers), cwd=ROOT,
                         env=subprocess_env(), check=True, capture_output=True, text=True,
                         timeout=600)
  resumed_at = int(rerun.stderr.split("Resumed from the checkpoint at step ")[1].split(".")[0])
  assert 5 <= resumed_at < NUM_STEPS
  assert_same_final_state(straight, killed)


@pytest.mark.parametrize("sig, name", [(signal.SIGTERM, "SIGTERM"), (signal.SIGINT, "Ctrl-C")])
def test_sigterm_or_ctrl_c_saves_exits_and_resumes(runs, data_dir, sig, name):
  root, straight = runs
  stopped = str(root / f"stopped_{name}")
  code, err = start_and_signal(command(stopped, data_dir), stopped, 7, sig)
  assert code == 75, err[-2000:]
  line = next(l for l in err.splitlines() if l.startswith(f"preempted: stopped by {name}"))
  step = int(line.split("at step ")[1].split(",")[0])
  assert 7 <= step < NUM_STEPS
  assert os.path.isdir(os.path.join(stopped, "checkpoints", str(step)))  # saved on the spot

  rerun = subprocess.run(command(stopped, data_dir), cwd=ROOT, env=subprocess_env(),
                         check=True, capture_output=True, text=True, timeout=600)
  assert f"Resumed from the checkpoint at step {step}." in rerun.stderr
  assert_same_final_state(straight, stopped)


def test_a_second_trainer_is_refused_and_the_first_ones_kill_frees_the_workdir(runs, data_dir):
  root, straight = runs
  workdir = str(root / "two")
  first = subprocess.Popen(command(workdir, data_dir), cwd=ROOT, env=subprocess_env(),
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  try:
    deadline = time.time() + 600
    while time.time() < deadline and first.poll() is None and logged_steps(workdir) < 2:
      time.sleep(0.05)
    second = subprocess.run(command(workdir, data_dir), cwd=ROOT, env=subprocess_env(),
                            capture_output=True, text=True, timeout=600)
    assert first.poll() is None, "the first trainer finished before the second started"
    assert second.returncode == 1
    assert second.stderr.strip().splitlines()[-1].startswith(
        f"error: ValueError: {workdir} is in use: process {first.pid} on "), second.stderr[-2000:]
  finally:
    first.kill()  # SIGKILL: the lock goes with the process
    first.wait()
  rerun = subprocess.run(command(workdir, data_dir), cwd=ROOT, env=subprocess_env(),
                         capture_output=True, text=True, timeout=600)
  assert rerun.returncode == 0, rerun.stderr[-2000:]
  assert_same_final_state(straight, workdir)


def test_corrupt_newest_checkpoint_is_reported_and_the_previous_one_used(runs, data_dir):
  root, straight = runs
  workdir = str(root / "corrupt")
  subprocess.run(["cp", "-r", straight, workdir], check=True)
  for path in glob.glob(os.path.join(workdir, "checkpoints", str(NUM_STEPS), "state", "**", "*"),
                        recursive=True):
    if os.path.isfile(path):
      with open(path, "r+b") as f:
        f.truncate(max(0, os.path.getsize(path) // 2))
  proc = subprocess.run(command(workdir, data_dir, "--mode=eval"), cwd=ROOT,
                        env=subprocess_env(), capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert f"checkpoints/{NUM_STEPS} is unreadable" in proc.stderr
  assert os.path.exists(os.path.join(workdir, "eval", f"validation_step{NUM_STEPS - 5}.json"))
  assert os.path.isdir(os.path.join(workdir, "checkpoints", str(NUM_STEPS)))  # eval moves nothing

  # Training resumes from the previous step, sets the corrupt one aside and saves that
  # step again: the newest checkpoint is whole, and the run's as if never corrupted.
  proc = subprocess.run(command(workdir, data_dir), cwd=ROOT, env=subprocess_env(),
                        capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert f"Resumed from the checkpoint at step {NUM_STEPS - 5}." in proc.stderr
  assert os.path.isdir(os.path.join(workdir, "checkpoints_set_aside", str(NUM_STEPS)))
  assert_same_final_state(straight, workdir)


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, data_dir):
  workdir = str(tmp_path / "nan")
  # A learning rate this large sends the weights to inf within a few steps.
  proc = subprocess.run(command(workdir, data_dir, "--config.train.checkpoint_every=1",
                                "--config.optimizer.learning_rate=1e38",
                                "--config.optimizer.warmup_steps=0",
                                "--config.optimizer.schedule=constant",
                                "--config.optimizer.grad_clip_norm=1e38"),
                        cwd=ROOT, env=subprocess_env(), capture_output=True, text=True,
                        timeout=600)
  assert proc.returncode == 1
  last = proc.stderr.strip().splitlines()[-1]
  assert last.startswith("error: FloatingPointError: non-finite loss at step "), last
  bad_step = int(last.split("at step ")[1].split(" ")[0])
  saved = sorted(int(d) for d in os.listdir(os.path.join(workdir, "checkpoints")) if d.isdigit())
  assert saved and max(saved) == bad_step - 1
  assert f"The last good checkpoint (step {bad_step - 1})" in last
