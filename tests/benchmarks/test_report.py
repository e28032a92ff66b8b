"""`python -m jmt_jax.benchmarks.report`: its reduced run on this CPU measures every
section and writes report.json and report.md; a failed measurement is recorded and the
others still run."""

import json
import subprocess

import pytest

from conftest import ROOT
from conftest import module_command
from conftest import subprocess_env
from jmt_jax.benchmarks import report


def test_help_names_the_flags():
  run = subprocess.run(module_command("jmt_jax.benchmarks.report", "--help"), cwd=ROOT,
                       env=subprocess_env(), capture_output=True, text=True, timeout=120)
  assert run.returncode == 0, run.stderr[-2000:]
  for flag in ("--out", "--[no]reduced", "--sections", "--steps", "--video_seconds"):
    assert flag in run.stdout
  assert "python -m jmt_jax.benchmarks.report --out=report" in run.stdout


def test_a_failed_measurement_is_recorded_and_written(tmp_path):
  r = report.Report(str(tmp_path), "reduced")
  r.add("step", {"config": "affwild2", "setting": "frozen", "dtype": "float32", "batch": 1,
                 "error": "XlaRuntimeError: RESOURCE_EXHAUSTED: out of memory"})
  r.add("extract", {"config": "biovid", "dtype": "bfloat16", "clips_per_s": 123.4,
                    "compile_s": 2.0})
  data = json.loads((tmp_path / "report.json").read_text())
  assert data["step"][0]["error"].startswith("XlaRuntimeError") and data["extract"][0][
      "clips_per_s"] == 123.4
  md = (tmp_path / "report.md").read_text()
  assert "| affwild2 | frozen | float32 | 1 | XlaRuntimeError: RESOURCE_EXHAUSTED" in md
  assert "| biovid | bfloat16 | 123.4 | 2.0 |" in md


@pytest.mark.slow
def test_the_reduced_report_measures_every_section(tmp_path):
  run = subprocess.run(module_command("jmt_jax.benchmarks.report", "--reduced",
                                      f"--out={tmp_path}"),
                       cwd=ROOT, env=subprocess_env(), capture_output=True, text=True,
                       timeout=900)
  assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
  data = json.loads((tmp_path / "report.json").read_text())
  assert data["device"]["platform"] == "cpu" and data["mode"] == "reduced"
  rows = [r for s in ("step", "pipeline", "extract", "predict") for r in data[s]]
  assert not [r for r in rows if "error" in r]
  assert {(r["config"], r["setting"], r["dtype"]) for r in data["step"]} == {
      (c, s, d) for c in report.PAPER for s in report.SETTINGS for d in report.DTYPES}
  assert all(r["examples_per_s"] > 0 and r["gflop_per_step"] > 0 for r in data["step"])
  assert [r["workers"] for r in data["pipeline"]][0] == 0 and all(
      r["examples_per_s"] > 0 for r in data["pipeline"])
  assert {r["config"] for r in data["extract"]} == set(report.PAPER)
  (predicted,) = data["predict"]
  assert predicted["frames"] == 50 and predicted["faces"] >= 45  # 2 s at 25 fps, one face
  md = (tmp_path / "report.md").read_text()
  assert md.strip() in run.stdout  # the tables are printed too
  for title in ("Train step", "Input pipeline", "Feature extraction", "Prediction on a video"):
    assert f"### {title}" in md
