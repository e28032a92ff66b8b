"""Every notebook in notebooks/ runs top to bottom in a real Jupyter kernel (nbclient),
with the tiny demo config: the quick start trains a workdir, and the two others use it."""

import os
import subprocess
import sys

import nbformat
import pytest
from nbclient import NotebookClient

from conftest import ROOT

NOTEBOOKS = ("quick_start", "predict_video", "cross_attention")


def _execute(name, cwd):
  nb = nbformat.read(os.path.join(ROOT, "notebooks", f"{name}.ipynb"), as_version=4)
  NotebookClient(nb, kernel_name="python3", timeout=600,
                 resources={"metadata": {"path": str(cwd)}}).execute()
  return nb


def _images(nb):
  return sum("image/png" in out.get("data", {}) for cell in nb.cells if cell.cell_type == "code"
             for out in cell.get("outputs", []))


def test_every_notebook_is_tested():
  found = sorted(f[:-len(".ipynb")] for f in os.listdir(os.path.join(ROOT, "notebooks"))
                 if f.endswith(".ipynb"))
  assert found == sorted(NOTEBOOKS)


@pytest.mark.slow
def test_notebooks_run_top_to_bottom(tmp_path, data_dir, monkeypatch):
  workdir = tmp_path / "workdir"
  monkeypatch.setenv("JMT_JAX_NOTEBOOK_TINY", "1")
  monkeypatch.setenv("JMT_JAX_DATA_DIR", data_dir)
  monkeypatch.setenv("JMT_JAX_WORKDIR", str(workdir))
  monkeypatch.setenv("PYTHONPATH", ROOT)
  monkeypatch.delenv("JMT_JAX_VIDEO", raising=False)
  quick = _execute("quick_start", tmp_path)
  assert (workdir / "checkpoints").is_dir() and (workdir / "plots" / "curves.png").exists()
  assert _images(quick) == 2  # training curves; predicted vs. true
  video = _execute("predict_video", tmp_path)
  assert (tmp_path / "predictions" / "demo_clip.csv").exists()
  assert _images(video) == 1
  rows = (tmp_path / "predictions" / "demo_clip.csv").read_text().splitlines()
  assert len(rows) == 1 + 60 and rows[0].startswith("frame,time_s,face_found,audio_found")
  attention = _execute("cross_attention", tmp_path)
  assert _images(attention) == 2  # the six maps; the window's clips
  text = "".join(o.get("text", "") for c in attention.cells if c.cell_type == "code"
                 for o in c.get("outputs", []))
  for name in ("v_a", "a_v", "j_v", "v_j", "j_a", "a_j"):
    assert f"'{name}'" in text


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebooks_are_stored_without_outputs(name):
  nb = nbformat.read(os.path.join(ROOT, "notebooks", f"{name}.ipynb"), as_version=4)
  nbformat.validate(nb)
  assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code")
  assert "pip" in nb.cells[1].source and "install" in nb.cells[1].source  # first code cell


def test_install_cell_installs_from_the_checkout_or_the_address_set(tmp_path):
  """The first code cell, run as Colab would (pip resolving for real, --dry-run so that
  nothing is installed): from the checkout the notebook sits in; outside a checkout,
  a clear message until JMT_JAX_REPO is set, then from there."""
  cell = nbformat.read(os.path.join(ROOT, "notebooks", "quick_start.ipynb"),
                       as_version=4).cells[1].source
  env = {k: v for k, v in os.environ.items() if k not in ("JMT_JAX_REPO", "PYTHONPATH")}
  env["JMT_JAX_PIP_DRY_RUN"] = "1"
  run = lambda cwd, **extra: subprocess.run([sys.executable, "-c", cell], cwd=cwd,
                                            env={**env, **extra}, capture_output=True,
                                            text=True, timeout=600, check=False)
  inside = run(os.path.join(ROOT, "notebooks"))
  assert inside.returncode == 0, inside.stderr[-2000:]
  assert f"would install jmt_jax from {ROOT} with the extras ['notebooks']" in inside.stdout
  outside = run(tmp_path)
  assert outside.returncode == 1
  assert "set JMT_JAX_REPO at the top of this cell" in outside.stderr
  named = run(tmp_path, JMT_JAX_REPO=ROOT)
  assert named.returncode == 0, named.stderr[-2000:]
  assert f"would install jmt_jax from {ROOT}" in named.stdout
