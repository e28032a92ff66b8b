"""Shared fixtures and helpers: one tiny synthetic dataset directory and one persistent
compilation cache for the whole session (xdist workers and the subprocesses tests start
share both), config loading, and the tiny demo's command line."""

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from jmt_jax import config_args  # pylint: disable=wrong-import-position

# Compiled programs persist between sessions (a program's key is its HLO, the XLA flags
# and the jax version, so a changed program is simply compiled anew), and within a
# session the first process (pytest's, before it starts xdist workers) hands the cache
# to the workers and to every subprocess through the environment. Set
# JAX_COMPILATION_CACHE_DIR to use another folder (an empty one: a cold start).
_CACHE = "JAX_COMPILATION_CACHE_DIR"
_CACHE_DEFAULT = os.path.join(os.path.expanduser("~"), ".cache", "jmt_jax", "test_xla")
# The tests' programs are small and compiled far more often than they run long: XLA's
# CPU backend compiles them about twice as fast without LLVM's optimisation passes.
_XLA_FLAGS = "--xla_backend_optimization_level=0"


def pytest_configure(config):
  del config
  if "JMT_JAX_TEST_SESSION" in os.environ:  # an xdist worker: its environment is set
    return
  os.environ["JMT_JAX_TEST_SESSION"] = "1"
  os.environ.setdefault(_CACHE, _CACHE_DEFAULT)
  os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
  os.environ["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"] = "0"
  os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {_XLA_FLAGS}".strip()


def load_config(name, arg="tiny"):
  """`configs/<name>.py:<arg>` as `--config=` loads it."""
  return config_args.load(f"configs/{name}.py:{arg}")


def module_command(module, *args):
  """`python -m MODULE ARGS` as an argv list."""
  return [sys.executable, "-m", module, *args]


def tiny_demo_command(workdir, data_dir, *flags):
  """`python -m jmt_jax.main` on the tiny demo config, with its data in `data_dir` (and
  the session's compilation cache, from the environment)."""
  return module_command("jmt_jax.main", "--config=configs/demo.py:tiny", f"--workdir={workdir}",
                        f"--config.data.data_dir={data_dir}", "--config.compilation_cache_dir=",
                        *flags)


def subprocess_env(**extra):
  """The environment for a subprocess that imports jmt_jax from this checkout (XLA flags
  in `extra` are added to the session's)."""
  if "XLA_FLAGS" in extra:
    extra["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {extra['XLA_FLAGS']}".strip()
  return dict(os.environ, PYTHONPATH=ROOT, **extra)


def run(command, timeout=600, **env):
  """`command` (an argv list) run to its end from the repository root, with this
  checkout's jmt_jax and `env` added to the environment; its output as text."""
  return subprocess.run(command, cwd=ROOT, env=subprocess_env(**env), capture_output=True,
                        text=True, timeout=timeout, check=False)


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory):
  return str(tmp_path_factory.getbasetemp().parent / "jmt_jax_test_datasets")


@pytest.fixture
def tiny_config(data_dir):
  def make(name="demo", arg="tiny"):
    c = load_config(name, arg)
    c.data.data_dir = data_dir
    c.compilation_cache_dir = ""  # the session's cache (the environment's) stays in force
    return c
  return make


# recordings imports jax, which must wait for pytest_configure's environment.
# pylint: disable=import-outside-toplevel
@pytest.fixture(scope="module")
def va_workdir(tmp_path_factory, data_dir):
  """The tiny demo's initial checkpoint as a training workdir (recordings.make_workdir)."""
  import recordings
  return recordings.make_workdir(tmp_path_factory, data_dir, "tiny")


@pytest.fixture(scope="module")
def va_model(va_workdir):
  import recordings
  return recordings.make_predictor(va_workdir)


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
  import recordings
  return recordings.make_videos(tmp_path_factory.mktemp("videos"))
