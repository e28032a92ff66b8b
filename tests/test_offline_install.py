"""The offline install: launch/wheels.sh gathers jmt_jax and its dependencies as wheels
(from the package registry, for a named platform and Python), launch/install_offline.sh
installs them into a fresh virtual environment with pip kept off every index, and the
tiny demo trains there; a JAX already installed in range is kept, one out of range stops
the install with a message."""

import os
import subprocess
import sys

import pytest

from conftest import ROOT

WHEELS = os.path.join(ROOT, "launch", "wheels.sh")
INSTALL = os.path.join(ROOT, "launch", "install_offline.sh")


def _pip_env(**extra):
  """This environment without pip's configuration (no machine-wide find-links or indexes:
  the wheels folder must hold everything) and without this checkout on the path."""
  env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_") and k != "PYTHONPATH"}
  return env | {"PIP_CONFIG_FILE": os.devnull, "PIP_DISABLE_PIP_VERSION_CHECK": "1"} | extra


def _run(cmd, cwd, **env):
  return subprocess.run(cmd, cwd=cwd, env=_pip_env(**env), capture_output=True, text=True,
                        timeout=1800)


def test_dry_runs_print_the_commands_and_install_nothing(tmp_path):
  out = _run([WHEELS, "--dry-run", str(tmp_path / "w"), "cuda12"], tmp_path,
             PLATFORM="manylinux_2_27_x86_64", PYTHON_VERSION="3.12", PYTHON=sys.executable)
  assert out.returncode == 0, out.stderr
  download = [l for l in out.stdout.splitlines() if " pip download " in l][0]
  assert "--only-binary=:all: --platform manylinux_2_27_x86_64" in download
  assert "--platform manylinux_2_17_x86_64" in download and "--python-version 3.12" in download
  assert download.endswith("jmt_jax-0.1.0-py3-none-any.whl\\[cuda12\\] ")
  assert not (tmp_path / "w").exists()
  bad = _run([WHEELS, str(tmp_path / "w"), "metal"], tmp_path)
  assert bad.returncode == 2 and "unknown extra 'metal'" in bad.stderr
  empty = _run([INSTALL, str(tmp_path)], tmp_path)
  assert empty.returncode == 1 and "holds no jmt_jax wheel" in empty.stderr


@pytest.mark.slow
def test_offline_install_into_a_fresh_environment_runs_the_tiny_demo(tmp_path, data_dir):
  wheels = tmp_path / "wheels"
  gathered = _run([WHEELS, str(wheels)], tmp_path, PYTHON=sys.executable)
  assert gathered.returncode == 0, gathered.stderr[-3000:]
  assert list(wheels.glob("jmt_jax-*.whl")) and list(wheels.glob("promise-*.whl"))

  venv = tmp_path / "venv"
  subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
  python = str(venv / "bin" / "python")
  installed = _run([INSTALL, str(wheels)], tmp_path, PYTHON=python)
  assert installed.returncode == 0, installed.stdout[-2000:] + installed.stderr[-3000:]
  assert "jmt_jax installed with jax" in installed.stdout
  assert "Looking in indexes" not in installed.stdout  # --no-index: no index consulted

  trained = _run([python, "-m", "jmt_jax.main", f"--config={ROOT}/configs/demo.py:tiny",
                  f"--workdir={tmp_path / 'demo'}", f"--config.data.data_dir={data_dir}",
                  "--config.compilation_cache_dir="], tmp_path)
  assert trained.returncode == 0, trained.stderr[-3000:]
  assert (tmp_path / "demo" / "metrics.jsonl").exists()
  site = subprocess.run([python, "-c", "import jmt_jax; print(jmt_jax.__file__)"], cwd=tmp_path,
                        capture_output=True, text=True, check=True).stdout
  assert str(venv) in site  # the installed wheel ran, not this checkout

  again = _run([INSTALL, str(wheels), "cuda12"], tmp_path, PYTHON=python)
  assert again.returncode == 0, again.stderr[-3000:]
  assert "keeping the node's JAX: jax==" in again.stdout  # no CUDA packages asked for

  old = tmp_path / "old_jax"  # an environment whose JAX is older than jmt_jax's range
  subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(old)], check=True)
  site_packages = next((old / "lib").glob("python3*")) / "site-packages"
  (site_packages / "jax-0.4.30.dist-info").mkdir(parents=True)
  (site_packages / "jax-0.4.30.dist-info" / "METADATA").write_text(
      "Metadata-Version: 2.1\nName: jax\nVersion: 0.4.30\n")
  refused = _run([INSTALL, str(wheels)], tmp_path, PYTHON=python,
                 PYTHONPATH=str(site_packages))
  assert refused.returncode == 1 and "jax==0.4.30 is outside the range" in refused.stderr
