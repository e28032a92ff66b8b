"""What a model is trained for, each task in one place: its label keys and their check,
its loss (as sums over a batch, see train_step), how a predicted split is scored and
plotted, the per-recording statistics comparisons resample, its metrics, the windows
and per-frame outputs of prediction on a recording, and its submission format if it has
one. `get(config.task)` is the one switch; another task (say ABAW's expression
classification) is another class here and a config that names it.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jmt_jax.data import windows
from jmt_jax.data.records import INVALID_LABEL
from jmt_jax.evaluation import abaw
from jmt_jax.evaluation import metrics
from jmt_jax.evaluation import plots


class ValenceArousal:
  """Aff-Wild2: per-frame valence and arousal, (1 - CCC) summed over the two as the loss,
  scored by CCC over all frames of all videos (after `config.eval.smoothing`)."""

  name = "valence_arousal"
  label_keys = ("valence", "arousal", "valid")
  metrics = ("ccc_mean", "ccc_valence", "ccc_arousal")
  main_metric = "ccc_mean"

  def loss_sums(self, outputs, batch):
    return {k: metrics.moments(outputs[k], batch[k],
                               metrics.valid_label_weight(batch[k], batch["valid"]))
            for k in abaw.DIMENSIONS}

  def loss_from_sums(self, sums):
    logs = {f"ccc_{k}": metrics.ccc_from_moments(sums[k]) for k in abaw.DIMENSIONS}
    loss = 2.0 - logs["ccc_valence"] - logs["ccc_arousal"]
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
    `targets` per video."""
    predictions, targets = self.per_video(preds, labels, table, config)
    return (abaw.scores(predictions, targets), {"predictions": predictions, "targets": targets})

  def plot(self, details, config):
    """(name, figure) of an evaluation: the first videos' trajectories."""
    del config
    return "trajectories", plots.trajectories(details["predictions"], details["targets"])

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
    clips end at `ends`: valence and arousal, post-processed as in evaluation."""
    per_dim = {d: abaw.reassemble(["recording"], [num_frames], np.zeros(ends.shape, np.int64),
                                  ends, outputs[d])["recording"] for d in abaw.DIMENSIONS}
    return abaw.postprocess({"recording": per_dim}, dict(config.eval.smoothing))["recording"]

  def recording_stats(self, details):
    """(video names, (R, 2, 6)): per video and dimension the CCC moments [n, sum x,
    sum y, sum x^2, sum y^2, sum xy] over valid frames."""
    names = sorted(details["predictions"])
    stats = np.zeros((len(names), len(abaw.DIMENSIONS), 6))
    for i, v in enumerate(names):
      for k, d in enumerate(abaw.DIMENSIONS):
        x = np.asarray(details["predictions"][v][d], np.float64)
        y = np.asarray(details["targets"][v][d], np.float64)
        keep = y != INVALID_LABEL
        x, y = x[keep], y[keep]
        stats[i, k] = [x.size, x.sum(), y.sum(), (x * x).sum(), (y * y).sum(), (x * y).sum()]
    return names, stats

  def metric_values(self, summed):
    """{metric: (...)} from statistics summed over recordings (..., 2, 6)."""
    out = {f"ccc_{d}": metrics.ccc_of_sums(summed[..., k, :])
           for k, d in enumerate(abaw.DIMENSIONS)}
    out["ccc_mean"] = (out["ccc_valence"] + out["ccc_arousal"]) / 2
    return out


class Pain:
  """BioVid: a pain class per window, cross-entropy as the loss, scored by accuracy."""

  name = "pain"
  label_keys = ("pain", "valid")
  metrics = ("accuracy",)
  main_metric = "accuracy"

  def loss_sums(self, outputs, batch):
    logits = outputs["logits"].astype(jnp.float32)
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, batch["pain"])
    correct = logits.argmax(-1) == batch["pain"]
    return {"pain": jnp.stack([batch["valid"].sum(), (ce * batch["valid"]).sum(),
                               (correct * batch["valid"]).sum()])}

  def loss_from_sums(self, sums):
    n = jnp.maximum(sums["pain"][0], 1.0)
    loss = sums["pain"][1] / n
    return loss, {"loss": loss, "accuracy": sums["pain"][2] / n}

  def check_labels(self, dataset, config):
    """The head's classes must be those the labels name."""
    levels = sorted({int(p) for s in dataset.splits.values() for p in s.table.pain[s.recordings]})
    needed = len(config.input.pain_classes) if config.input.pain_classes else levels[-1] + 1
    if config.model.head.num_classes != needed:
      raise ValueError(f"config.model.head.num_classes={config.model.head.num_classes} but the "
                       f"labels need {needed} (pain_classes={list(config.input.pain_classes)}, "
                       f"levels in the data: {levels})")

  def class_names(self, config):
    """Names of the output classes: the pain levels they stand for."""
    levels = config.input.pain_classes or range(config.model.head.num_classes)
    return [f"level {int(p)}" for p in levels]

  def score(self, preds, labels, table, config):
    """(scores, details): `details` holds the windows' `logits`, `labels` (class
    indices) and `recording`s."""
    del table, config
    return ({"accuracy": metrics.accuracy(preds["logits"], labels["pain"]),
             "num_windows": int(len(labels["pain"]))},
            {"logits": preds["logits"], "labels": labels["pain"],
             "recording": labels["recording"][:, 0]})  # a window's clips share it

  def recording_stats(self, details):
    """(recording indices as names, (R, 2)): per recording [windows, correct]."""
    recordings = np.asarray(details["recording"])
    correct = np.argmax(details["logits"], axis=-1) == np.asarray(details["labels"])
    names = sorted({int(r) for r in recordings})
    stats = np.array([[np.sum(recordings == r), np.sum(correct[recordings == r])]
                      for r in names], np.float64).reshape(-1, 2)
    return [str(r) for r in names], stats

  def metric_values(self, summed):
    with np.errstate(invalid="ignore", divide="ignore"):
      return {"accuracy": summed[..., 1] / summed[..., 0]}

  def plot(self, details, config):
    """(name, figure) of an evaluation: the confusion matrix."""
    return "confusion", plots.confusion_matrix(details["logits"], details["labels"],
                                               self.class_names(config))

  def frame_window_starts(self, num_frames, clip_frames, num_clips):
    """First frames of the windows whose last clip ends on each frame of a recording."""
    return np.arange(num_frames) - clip_frames * num_clips + 1

  def frame_values(self, outputs, ends, num_frames, config):
    """{column: (num_frames,)}: the probability of pain (any class but the first) and of
    each class, per frame (from the window ending there)."""
    del ends, num_frames
    probs = np.asarray(jax.nn.softmax(outputs["logits"], axis=-1))
    values = {"pain_probability": 1.0 - probs[:, 0]}
    values.update({f"p_{name.replace(' ', '_')}": probs[:, k]
                   for k, name in enumerate(self.class_names(config))})
    return values


TASKS = {t.name: t for t in (ValenceArousal(), Pain())}


def get(name):
  """The task named by a config's `task`."""
  if name not in TASKS:
    raise ValueError(f"unknown task {name!r}; use one of {sorted(TASKS)}")
  return TASKS[name]


def loss(task, outputs, batch):
  """(loss, logs) of `task` on one batch."""
  return task.loss_from_sums(task.loss_sums(outputs, batch))
