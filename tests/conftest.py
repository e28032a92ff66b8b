"""Shared fixtures and helpers: one tiny synthetic dataset directory for the whole
session, config loading, and the tiny demo's command line."""

import importlib.util
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG_DIR = os.path.join(ROOT, "configs")


def load_config_module(name):
  """The module of `configs/<name>.py`, loaded from its path as config_flags does."""
  path = os.path.join(CONFIG_DIR, f"{name}.py")
  spec = importlib.util.spec_from_file_location(f"configs_{name}", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def load_config(name, arg="tiny"):
  """`configs/<name>.py:<arg>` as ml_collections loads it on the command line."""
  return load_config_module(name).get_config(arg)


def tiny_demo_command(workdir, data_dir, *flags, cache_dir=""):
  """`python -m jmt_jax.main` on the tiny demo config, with its data in `data_dir`."""
  return [sys.executable, "-m", "jmt_jax.main", "--config=configs/demo.py:tiny",
          f"--workdir={workdir}", f"--config.data.data_dir={data_dir}",
          f"--config.compilation_cache_dir={cache_dir}", *flags]


def subprocess_env(**extra):
  """The environment for a subprocess that imports jmt_jax from this checkout."""
  return dict(os.environ, PYTHONPATH=ROOT, **extra)


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory):
  return str(tmp_path_factory.getbasetemp().parent / "jmt_jax_test_datasets")


@pytest.fixture
def tiny_config(data_dir):
  def make(name="demo", arg="tiny"):
    c = load_config(name, arg)
    c.data.data_dir = data_dir
    c.compilation_cache_dir = ""
    return c
  return make


sys.path.insert(0, ROOT)
