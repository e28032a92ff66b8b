"""Killing training with SIGKILL and running the same command again resumes it, and
ends with the same parameters as a run that was never interrupted."""

import os
import signal
import subprocess
import time

import jax
import numpy as np
import orbax.checkpoint as ocp

from conftest import ROOT
from conftest import subprocess_env
from conftest import tiny_demo_command
from jmt_jax import checkpointing

NUM_STEPS = 30


def command(workdir, data_dir, cache_dir):
  return tiny_demo_command(workdir, data_dir, f"--config.train.num_steps={NUM_STEPS}",
                           "--config.train.checkpoint_every=5", "--config.train.eval_every=1000",
                           "--config.train.log_every=5", cache_dir=cache_dir)


def final_state(workdir):
  """The step-NUM_STEPS train state as saved in `workdir`."""
  mngr = checkpointing.manager(os.path.join(workdir, "checkpoints"), keep=None)
  assert max(mngr.all_steps()) == NUM_STEPS
  restored = mngr.restore(NUM_STEPS, args=ocp.args.Composite(state=ocp.args.StandardRestore()))
  mngr.close()
  return restored["state"]


def test_sigkill_then_rerun_resumes_and_matches_uninterrupted(tmp_path, data_dir):
  env = subprocess_env()
  cache = str(tmp_path / "xla")
  straight, killed = str(tmp_path / "straight"), str(tmp_path / "killed")
  subprocess.run(command(straight, data_dir, cache), cwd=ROOT, env=env, check=True,
                 capture_output=True, timeout=600)

  proc = subprocess.Popen(command(killed, data_dir, cache), cwd=ROOT, env=env,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  ckpt_dir = os.path.join(killed, "checkpoints")
  deadline = time.time() + 600
  while time.time() < deadline and proc.poll() is None:
    if os.path.isdir(ckpt_dir) and any(d.isdigit() and int(d) >= 10 for d in os.listdir(ckpt_dir)):
      break
    time.sleep(0.05)
  assert proc.poll() is None, "training finished before it could be interrupted"
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  assert not os.path.isdir(os.path.join(ckpt_dir, str(NUM_STEPS)))

  rerun = subprocess.run(command(killed, data_dir, cache), cwd=ROOT, env=env, check=True,
                         capture_output=True, text=True, timeout=600)
  assert "Resumed from the checkpoint at step" in rerun.stderr
  resumed_at = int(rerun.stderr.split("Resumed from the checkpoint at step ")[1].split(".")[0])
  assert 5 <= resumed_at < NUM_STEPS

  a, b = final_state(straight), final_state(killed)
  leaves_a, leaves_b = jax.tree.leaves(a), jax.tree.leaves(b)
  assert len(leaves_a) == len(leaves_b) > 0
  for x, y in zip(leaves_a, leaves_b):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
