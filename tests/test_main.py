"""The command line reports user errors in one line, without a traceback."""

from conftest import run
from conftest import tiny_demo_command


def run_main(tmp_path, data_dir, *flags):
  return run(tiny_demo_command(tmp_path, data_dir, *flags))


def test_bad_config_value_is_one_line(tmp_path, data_dir):
  proc = run_main(tmp_path, data_dir, "--config.model.fusion.kind=bogus")
  assert proc.returncode == 1
  last = proc.stderr.strip().splitlines()[-1]
  assert last.startswith("error: ValueError: unknown fusion kind 'bogus'")
  assert "Traceback" not in proc.stderr


def test_eval_of_untrained_workdir_says_how_to_train(tmp_path, data_dir):
  proc = run_main(tmp_path, data_dir, "--mode=eval")
  assert proc.returncode == 1
  assert "no readable checkpoint" in proc.stderr and "train first" in proc.stderr
  assert "Traceback" not in proc.stderr
