"""Concordance correlation (CCC) and accuracy, as the benchmarks define them.

CCC uses population statistics over all valid frames concatenated; frames labelled
-5 (INVALID_LABEL) are excluded.
"""

import jax.numpy as jnp
import numpy as np

from jmt_jax.data.records import INVALID_LABEL


def ccc(pred, label):
  """Numpy CCC of 1-D arrays over frames whose label is valid. NaN if none are."""
  pred, label = np.asarray(pred, np.float64), np.asarray(label, np.float64)
  valid = label != INVALID_LABEL
  x, y = pred[valid], label[valid]
  if x.size == 0:
    return float("nan")
  mx, my = x.mean(), y.mean()
  cov = ((x - mx) * (y - my)).mean()
  denom = x.var() + y.var() + (mx - my) ** 2
  return float(2 * cov / denom) if denom > 0 else 0.0


def masked_ccc(pred, label, weight, eps=1e-8):
  """Differentiable CCC over entries with weight 1 (any shape, flattened)."""
  pred, label, weight = pred.reshape(-1), label.reshape(-1), weight.reshape(-1)
  n = jnp.maximum(weight.sum(), 1.0)
  mx, my = (weight * pred).sum() / n, (weight * label).sum() / n
  dx, dy = pred - mx, label - my
  cov = (weight * dx * dy).sum() / n
  var_x, var_y = (weight * dx**2).sum() / n, (weight * dy**2).sum() / n
  return 2 * cov / (var_x + var_y + (mx - my) ** 2 + eps)


def valid_label_weight(label, window_valid):
  """1 where the frame label is valid and the window is a real (not padding) one."""
  return (label != INVALID_LABEL).astype(jnp.float32) * window_valid[:, None]


def valence_arousal_scores(pred, label):
  """{'ccc_valence', 'ccc_arousal', 'ccc_mean', 'num_frames'} from per-frame arrays."""
  scores = {f"ccc_{k}": ccc(pred[k], label[k]) for k in ("valence", "arousal")}
  scores["ccc_mean"] = (scores["ccc_valence"] + scores["ccc_arousal"]) / 2
  scores["num_frames"] = int((np.asarray(label["valence"]) != INVALID_LABEL).sum())
  return scores


def accuracy(logits, labels):
  return float((np.argmax(logits, axis=-1) == labels).mean()) if len(labels) else float("nan")
