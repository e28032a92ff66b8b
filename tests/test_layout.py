"""The package's shape: every module imports beside every other (command lines define their
flags only when run), and prediction does not pull in dataset preparation."""

import subprocess
import sys

_IMPORT_ALL = """
import importlib, pkgutil, jmt_jax
for m in pkgutil.walk_packages(jmt_jax.__path__, "jmt_jax."):
  importlib.import_module(m.name)
"""


def _python(code):
  return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)


def test_every_module_imports_in_one_process():
  run = _python(_IMPORT_ALL)
  assert run.returncode == 0, run.stderr[-2000:]


def test_prediction_does_not_import_dataset_preparation():
  run = _python("import sys\n"
                "import jmt_jax.inference.predict, jmt_jax.inference.export\n"
                "print(sorted(m for m in sys.modules if m.startswith('jmt_jax.prepare')))")
  assert run.returncode == 0, run.stderr[-2000:]
  assert run.stdout.strip() == "[]"
