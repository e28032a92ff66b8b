"""The pictures' contents: metrics read back as a resumed run left them, and the
confusion matrix's counts."""

import json

import numpy as np

from jmt_jax import workdir
from jmt_jax.reports import figures


def test_read_metrics_keeps_the_last_row_of_a_step(tmp_path):
  rows = [{"step": 2, "train/loss": 3.0}, {"step": 4, "train/loss": 2.0},
          {"step": 4, "train/loss": 1.5, "validation/ccc_mean": 0.2},  # resumed after step 2
          {"step": 6, "train/loss": 1.0}]
  (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
  metrics = workdir.read_metrics(str(tmp_path))
  assert metrics["train/loss"] == ([2, 4, 6], [3.0, 1.5, 1.0])
  assert metrics["validation/ccc_mean"] == ([4], [0.2])
  fig = figures.training_curves(metrics)
  assert [len(ax.lines) for ax in fig.axes] == [1, 1]


def test_confusion_matrix_counts(tmp_path):
  labels = np.array([0, 0, 0, 1, 1])
  logits = np.array([[2, 1], [2, 1], [0, 1], [0, 1], [0, 1]], np.float32)
  fig = figures.confusion_matrix(logits, labels, ["level 0", "level 4"])
  texts = [t.get_text() for t in fig.axes[0].texts]
  assert texts == ["2\n67%", "1\n33%", "0\n0%", "2\n100%"]
  assert fig.axes[0].get_title() == "accuracy 80.0%"
  figures.save(fig, str(tmp_path / "c.png"))
  assert (tmp_path / "c.png").read_bytes()[:4] == b"\x89PNG"
