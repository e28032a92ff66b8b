"""Every command line answers a user's mistake with one `error:` line naming the flag or
file, and no traceback (it is logged at --verbosity=1)."""

import subprocess
import sys

import pytest

from conftest import ROOT
from conftest import subprocess_env

CONFIG = "--config=configs/demo.py:tiny"


def _mistakes(tmp):
  """(command line, word the error line must hold, working directory)."""
  return [
      (["jmt_jax.main", "--config=configs/nope.py", f"--workdir={tmp}/w"], "configs/nope.py", ROOT),
      (["jmt_jax.main", CONFIG, "--config.train.num_stepz=3", f"--workdir={tmp}/w"], "num_stepz",
       ROOT),
      (["jmt_jax.main", "--config=configs/demo.py:jmtt", f"--workdir={tmp}/w"], "jmtt", ROOT),
      (["jmt_jax.main", "--config=configs/demo.py:tiny,fast", f"--workdir={tmp}/w"], "'fast'",
       ROOT),
      (["jmt_jax.main", CONFIG, "--config.train.num_steps=abc", f"--workdir={tmp}/w"],
       "num_steps=abc", ROOT),
      (["jmt_jax.main", CONFIG, f"--workdri={tmp}/w"], "workdri", ROOT),
      (["jmt_jax.main", CONFIG], "--workdir", ROOT),
      (["jmt_jax.main", CONFIG, f"--workdir={tmp}/w", "--mode=evaluate"], "--mode", ROOT),
      (["jmt_jax.main", CONFIG, f"--workdir={tmp}/w", "extra"], "extra", ROOT),
      # A config path relative to the repository, from another directory, is found: the
      # mistake here is evaluating before training.
      (["jmt_jax.main", CONFIG, f"--workdir={tmp}/w", "--mode=eval"], "checkpoint", tmp),
      (["jmt_jax.main", "--config=configs/biovid.py:tiny", f"--workdir={tmp}/w",
        "--mode=submission"], "valence/arousal", ROOT),
      (["jmt_jax.prepare", "biovd", f"--raw_dir={tmp}", f"--out_dir={tmp}/o"], "biovid", ROOT),
      (["jmt_jax.prepare", "biovid", f"--raw_dir={tmp}", f"--out_dir={tmp}/o"], "samples.csv",
       ROOT),
      (["jmt_jax.weights.convert", CONFIG, f"--out={tmp}/c"], "--weights", ROOT),
      (["jmt_jax.weights.convert", CONFIG, f"--out={tmp}/c", "--weights=video.pth"],
       "GROUPS=FILE", ROOT),
      (["jmt_jax.weights.convert", CONFIG, f"--out={tmp}/c",
        f"--weights=video_backbone={tmp}/v.pth"], f"{tmp}/v.pth", ROOT),
      (["jmt_jax.inference.predict", f"--workdir={tmp}", f"--video={tmp}/v.mp4", f"--out={tmp}/p"],
       "config.json", ROOT),
      (["jmt_jax.inference.predict", f"--workdir={tmp}", f"--video={tmp}/v.mp4", f"--out={tmp}/p",
        "--faces=everyone"], "--faces", ROOT),
      (["jmt_jax.inference.export", f"--workdir={tmp}", f"--out={tmp}/e"], "config.json", ROOT),
      (["jmt_jax.features.extract"], "--config", ROOT),
      (["jmt_jax.training.cross_validate", CONFIG, f"--workdir={tmp}/cv"], "protocol", ROOT),
      (["jmt_jax.training.sweep", "--config=configs/demo.py:tiny", "--variants=jmt,pain",
        f"--workdir={tmp}/s"], "different tasks", ROOT),
      (["jmt_jax.training.sweep", "--config=configs/demo.py:tiny", "--variants=jmt,vanila",
        f"--workdir={tmp}/s"], "vanila", ROOT),
      (["jmt_jax.training.sweep", "--config=configs/demo.py:tiny", "--variants=jmt",
        "--config.train.num_step=3", f"--workdir={tmp}/s"], "num_step", ROOT),
      (["jmt_jax.main", CONFIG, f"--workdir={tmp}/w", "--mode=robustness"], "checkpoint", ROOT),
  ]


@pytest.mark.slow
def test_every_command_says_a_mistake_in_one_line(tmp_path):
  cases = _mistakes(str(tmp_path))
  runs = [subprocess.Popen([sys.executable, "-m", *args], cwd=cwd, env=subprocess_env(),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
          for args, _, cwd in cases]
  for (args, word, _), run in zip(cases, runs):
    _, err = run.communicate(timeout=600)
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert run.returncode != 0, args
    assert len(errors) == 1 and word in errors[0], (args, err[-1500:])
    assert "Traceback" not in err, (args, err[-1500:])
