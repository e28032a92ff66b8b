"""Aff-Wild2's task: per-frame valence and arousal, (1 - CCC) summed over the dimensions
as the loss, scored by CCC over all frames of all videos (after `config.eval.smoothing`),
as the ABAW challenge scores it (tasks.abaw)."""

import numpy as np

from jmt_jax.data import windows
from jmt_jax.data.records import DIMENSIONS
from jmt_jax.data.records import INVALID_LABEL
from jmt_jax.reports import figures
from jmt_jax.tasks import abaw
from jmt_jax.tasks import metrics


class ValenceArousal:
  """Per-frame valence and arousal regression."""

  name = "valence_arousal"
  label_keys = (*DIMENSIONS, "valid")
  metrics = ("ccc_mean", *(f"ccc_{d}" for d in DIMENSIONS))
  main_metric = "ccc_mean"

  def loss_sums(self, outputs, batch):
    return {d: metrics.moments(outputs[d], batch[d],
                               metrics.valid_label_weight(batch[d], batch["valid"]))
            for d in DIMENSIONS}

  def loss_from_sums(self, sums):
    logs = {f"ccc_{d}": metrics.ccc(sums[d], eps=1e-8) for d in DIMENSIONS}
    loss = float(len(DIMENSIONS))
    for d in DIMENSIONS:
      loss = loss - logs[f"ccc_{d}"]
    return loss, {"loss": loss, **logs}

  def check_labels(self, dataset, config):
    del dataset, config  # every frame's labels are in [-1, 1] or -5 (records checks)

  def per_video(self, preds, labels, table, config):
    """(predictions, targets) per video: reassembled frame by frame, predictions
    post-processed as `config.eval.smoothing` says (the benchmark's protocol)."""
    predictions, targets = abaw.per_video(table, preds, labels)
    return abaw.postprocess(predictions, dict(config.eval.smoothing)), targets

  def score(self, preds, labels, table, config):
    """(scores, details): `details` holds the post-processed `predictions` and the
    `targets` per video, and their `recording_stats`."""
    predictions, targets = self.per_video(preds, labels, table, config)
    names, stats = self.recording_stats(predictions, targets)
    scores = {k: float(v) for k, v in self.metric_values(stats.sum(axis=0)).items()}
    scores["num_frames"] = int(stats[:, 0, 0].sum())
    return scores, {"predictions": predictions, "targets": targets,
                    "recording_stats": (names, stats)}

  def recording_stats(self, predictions, targets):
    """(video names, (R, dimensions, 6)): per video and dimension the CCC moments over
    its valid frames."""
    names = sorted(targets)
    stats = np.zeros((len(names), len(DIMENSIONS), 6))
    for i, v in enumerate(names):
      for k, d in enumerate(DIMENSIONS):
        y = np.asarray(targets[v][d], np.float64)
        x = np.asarray(predictions[v][d], np.float64)
        stats[i, k] = metrics.moments(x, y, (y != INVALID_LABEL).astype(np.float64))
    return names, stats

  def metric_values(self, summed):
    """{metric: (...)} from statistics summed over recordings (..., dimensions, 6); NaN
    where no frame is labelled."""
    out = {f"ccc_{d}": np.where(summed[..., k, 0] > 0, metrics.ccc(summed[..., k, :]), np.nan)
           for k, d in enumerate(DIMENSIONS)}
    out["ccc_mean"] = sum(out[f"ccc_{d}"] for d in DIMENSIONS) / len(DIMENSIONS)
    return out

  def plot(self, details, config):
    """(name, figure) of an evaluation: the first videos' trajectories."""
    del config
    return "trajectories", figures.trajectories(details["predictions"], details["targets"],
                                                INVALID_LABEL)

  def write_submission(self, preds, labels, table, config, out_path, sample_file="",
                       per_video_dir=""):
    """ABAW's submission CSV at `out_path` (rows and order from the organisers'
    `sample_file` when given), and one .txt per video in `per_video_dir` if set.
    Returns (rows, videos)."""
    predictions, _ = self.per_video(preds, labels, table, config)
    frame_list = abaw.read_sample_file(sample_file) if sample_file else None
    rows = abaw.write_submission(out_path, predictions, frame_list)
    if per_video_dir:
      abaw.write_per_video_txt(per_video_dir, predictions)
    return rows, len(predictions)

  def frame_window_starts(self, num_frames, clip_frames, num_clips):
    """First frames of the windows that predict each frame of a recording once."""
    return np.sort(windows.eval_windows([num_frames], [0], clip_frames, num_clips)[:, 1])

  def frame_values(self, outputs, ends, num_frames, config):
    """{column: (num_frames,)} of one recording from the outputs of the windows whose
    clips end at `ends`: each dimension, post-processed as in evaluation."""
    per_dim = {d: abaw.reassemble(["recording"], [num_frames], np.zeros(ends.shape, np.int64),
                                  ends, outputs[d])["recording"] for d in DIMENSIONS}
    return abaw.postprocess({"recording": per_dim}, dict(config.eval.smoothing))["recording"]

  def causal_values(self, outputs, config):
    """{column: (windows,)} for the frame each causal window ends on: its last clip's
    prediction, clipped to [-1, 1]. Evaluation's smoothing looks ahead, so none here."""
    del config
    return {d: np.clip(np.asarray(outputs[d])[:, -1], -1.0, 1.0) for d in DIMENSIONS}
