"""The pictures training, evaluation and prediction leave behind: training curves,
predicted vs. true trajectories, a confusion matrix, and predictions over time.

Each function returns a matplotlib `Figure` (shown inline by notebooks) built without
pyplot, so no display or global backend is involved; `save` writes one to a PNG.
"""

import os

import numpy as np
from matplotlib.figure import Figure


def save(fig, path):
  """Writes `fig` to `path` (a PNG) atomically; returns `path`."""
  os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
  tmp = path + ".tmp.png"
  fig.savefig(tmp, dpi=100, bbox_inches="tight")
  os.replace(tmp, path)
  return path


def training_curves(metrics):
  """Training loss, and every evaluation metric, against the step."""
  evals = sorted(k for k in metrics if not k.startswith("train/") and "num_" not in k)
  fig = Figure(figsize=(10, 3.5))
  loss_ax, eval_ax = fig.subplots(1, 2)
  if "train/loss" in metrics:
    loss_ax.plot(*metrics["train/loss"], label="train loss")
  loss_ax.set(xlabel="step", ylabel="loss", title="training loss")
  for k in evals:
    eval_ax.plot(*metrics[k], marker="o", label=k)
  eval_ax.set(xlabel="step", title="evaluation")
  for ax in (loss_ax, eval_ax):
    ax.grid(alpha=0.3)
    if ax.lines:
      ax.legend(fontsize=8)
  return fig


def trajectories(predictions, targets, invalid, num_videos=3):
  """Predicted vs. true values of each dimension ({video: {dimension: (frames,)}}) over
  the frames of the first `num_videos` videos (sorted by name); labels equal to `invalid`
  are left out of the true curve."""
  videos = sorted(targets)[:num_videos]
  dims = list(targets[videos[0]]) if videos else []
  fig = Figure(figsize=(5 * max(1, len(dims)), 2.6 * max(1, len(videos))))
  axes = np.atleast_2d(fig.subplots(max(1, len(videos)), max(1, len(dims)), squeeze=False))
  for row, video in zip(axes, videos):
    for k, (ax, dim) in enumerate(zip(row, dims)):
      true = np.asarray(targets[video][dim], np.float64)
      true = np.where(true == invalid, np.nan, true)
      ax.plot(true, color="black", lw=1.2, label="true")
      ax.plot(predictions[video][dim], color=f"C{k}", lw=1.2, label="predicted")
      ax.set(ylim=(-1.05, 1.05), title=f"{video}: {dim}", xlabel="frame")
      ax.grid(alpha=0.3)
      ax.legend(fontsize=8, loc="lower right")
  return fig


def confusion_matrix(logits, labels, class_names):
  """Counts of (true class, predicted class) with the per-row share written in each cell."""
  n = len(class_names)
  counts = np.zeros((n, n), np.int64)
  np.add.at(counts, (np.asarray(labels), np.argmax(logits, axis=-1)), 1)
  share = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
  fig = Figure(figsize=(1.2 * n + 2, 1.2 * n + 1.5))
  ax = fig.subplots()
  ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
  for i in range(n):
    for j in range(n):
      ax.text(j, i, f"{counts[i, j]}\n{share[i, j]:.0%}", ha="center", va="center",
              color="white" if share[i, j] > 0.5 else "black", fontsize=9)
  ax.set(xticks=range(n), yticks=range(n), xticklabels=class_names, yticklabels=class_names,
         xlabel="predicted", ylabel="true",
         title=f"accuracy {np.trace(counts) / max(counts.sum(), 1):.1%}")
  return fig


def predictions_over_time(time_s, panels, ylim=(-1.05, 1.05)):
  """Per-frame predictions against time, one panel per (title, values, flags), with the
  frames where a modality was missing shaded: `values` {name: (N,)}, `flags` {name: (N,)
  bool found}."""
  fig = Figure(figsize=(10, 1 + 2.5 * len(panels)))
  axes = fig.subplots(len(panels), 1, squeeze=False, sharex=True)[:, 0]
  shades = ("tab:red", "tab:purple", "tab:gray")
  for ax, (title, values, flags) in zip(axes, panels):
    for k, (name, v) in enumerate(values.items()):
      ax.plot(time_s, v, lw=1.2, color=f"C{k}", label=name)
    for (name, found), colour in zip(flags.items(), shades):
      missing = ~np.asarray(found, bool)
      if missing.any():
        ax.fill_between(time_s, 0, 1, where=missing, transform=ax.get_xaxis_transform(),
                        color=colour, alpha=0.15, step="mid",
                        label=f"no {name.removesuffix('_found')}")
    ax.set(ylim=ylim, title=title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
  axes[-1].set(xlabel="time (s)")
  return fig


def attention_maps(maps, roles):
  """The six cross-attention maps of one window, heads averaged: `maps` {"v_a": (heads,
  T, T), ...}, `roles` {"v": first modality, "a": second, "j": "joint"}."""
  fig = Figure(figsize=(13, 7.5), layout="constrained")
  axes = fig.subplots(2, 3)
  for ax, (name, weights) in zip(axes.reshape(-1), maps.items()):
    image = ax.imshow(np.asarray(weights).mean(axis=0), cmap="viridis", vmin=0)
    query, key = roles[name[0]], roles[name[2]]
    ax.set(title=f"{name}: {query} attends to {key}", xlabel=f"{key} clip (key)",
           ylabel=f"{query} clip (query)")
    fig.colorbar(image, ax=ax, fraction=0.046)
  return fig


def comparison(table):
  """One panel per metric: each variant's mean over seeds with its 95% interval."""
  fig = Figure(figsize=(4 * len(table), 3.5))
  axes = np.atleast_1d(fig.subplots(1, len(table)))
  for ax, (metric, rows) in zip(axes, table.items()):
    x = np.arange(len(rows))
    means = np.array([r["mean"] for r in rows])
    err = np.array([[r["mean"] - r["ci_low"] for r in rows], [r["ci_high"] - r["mean"] for r in rows]])
    ax.errorbar(x, means, yerr=np.maximum(err, 0), fmt="o", capsize=4)
    ax.set_xticks(x, [r["variant"] for r in rows], rotation=30)
    ax.set(title=metric, ylabel=metric)
    ax.grid(alpha=0.3)
  fig.tight_layout()
  return fig
