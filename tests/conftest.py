"""Shared fixtures: one tiny synthetic dataset directory for the whole session."""

import importlib.util
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG_DIR = os.path.join(ROOT, "configs")


def load_config(name, arg="tiny"):
  """`configs/<name>.py:<arg>` as ml_collections loads it on the command line."""
  spec = importlib.util.spec_from_file_location(f"configs_{name}", os.path.join(CONFIG_DIR, f"{name}.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg)


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
