"""BioVid's task: a pain class per window, cross-entropy as the loss, scored by accuracy."""

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jmt_jax.data import clips
from jmt_jax.reports import figures


class Pain:
  """Pain classification of a window from its last clip."""

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
    indices) and `recording`s, and the `recording_stats`."""
    del table, config
    recordings = labels["recording"][:, 0]  # a window's clips share it
    names, stats = self.recording_stats(preds["logits"], labels["pain"], recordings)
    accuracy = self.metric_values(stats.sum(axis=0))["accuracy"]
    return ({"accuracy": float(accuracy), "num_windows": int(len(labels["pain"]))},
            {"logits": preds["logits"], "labels": labels["pain"], "recording": recordings,
             "recording_stats": (names, stats)})

  def recording_stats(self, logits, labels, recordings):
    """(recording indices as names, (R, 2)): per recording [windows, correct]."""
    recordings = np.asarray(recordings)
    correct = np.argmax(logits, axis=-1) == np.asarray(labels)
    names = sorted({int(r) for r in recordings})
    stats = np.array([[np.sum(recordings == r), np.sum(correct[recordings == r])]
                      for r in names], np.float64).reshape(-1, 2)
    return [str(r) for r in names], stats

  def metric_values(self, summed):
    with np.errstate(invalid="ignore", divide="ignore"):
      return {"accuracy": summed[..., 1] / summed[..., 0]}

  def plot(self, details, config):
    """(name, figure) of an evaluation: the confusion matrix."""
    return "confusion", figures.confusion_matrix(details["logits"], details["labels"],
                                                 self.class_names(config))

  def frame_window_starts(self, num_frames, clip_frames, num_clips):
    """First frames of the windows whose last clip ends on each frame of a recording."""
    return clips.causal_window_starts(np.arange(num_frames), clip_frames, num_clips)

  def frame_values(self, outputs, ends, num_frames, config):
    """{column: (num_frames,)}: the probability of pain (any class but the first) and of
    each class, per frame (from the window ending there)."""
    del ends, num_frames
    probs = np.asarray(jax.nn.softmax(outputs["logits"], axis=-1))
    values = {"pain_probability": 1.0 - probs[:, 0]}
    values.update({f"p_{name.replace(' ', '_')}": probs[:, k]
                   for k, name in enumerate(self.class_names(config))})
    return values

  def causal_values(self, outputs, config):
    """{column: (windows,)} for the frame each causal window ends on (`frame_values`:
    pain's windows are causal already)."""
    return self.frame_values(outputs, None, None, config)
