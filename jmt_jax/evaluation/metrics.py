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


def moments(pred, label, weight):
  """(6,) weighted sums [n, sum x, sum y, sum x^2, sum y^2, sum xy] over entries of any shape.

  CCC is a function of these sums, so sums over parts of a batch add up to the whole
  batch's: what makes gradient accumulation of a CCC loss exact.
  """
  pred, label, weight = (a.reshape(-1).astype(jnp.float32) for a in (pred, label, weight))
  return jnp.stack([weight.sum(), (weight * pred).sum(), (weight * label).sum(),
                    (weight * pred**2).sum(), (weight * label**2).sum(),
                    (weight * pred * label).sum()])


def ccc_from_moments(m, eps=1e-8):
  """Differentiable CCC (population statistics) from `moments` sums."""
  n = jnp.maximum(m[0], 1.0)
  mx, my = m[1] / n, m[2] / n
  cov = m[5] / n - mx * my
  # var_x + var_y + (mx - my)^2, expanded: the mean terms cancel to -2 mx my.
  return 2 * cov / ((m[3] + m[4]) / n - 2 * mx * my + eps)


def ccc_of_sums(m):
  """Numpy CCC of summed `moments` (..., 6) in float64, population statistics as `ccc`
  (0 where both sides are constant)."""
  n = np.maximum(m[..., 0], 1.0)
  mx, my = m[..., 1] / n, m[..., 2] / n
  cov = m[..., 5] / n - mx * my
  denom = m[..., 3] / n - mx * mx + m[..., 4] / n - my * my + (mx - my) ** 2
  safe = np.where(denom > 0, denom, 1.0)
  return np.where(denom > 0, 2 * cov / safe, 0.0)


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
