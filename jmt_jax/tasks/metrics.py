"""Concordance correlation (CCC) as the benchmarks define it: population statistics over
all valid frames concatenated; frames labelled -5 (INVALID_LABEL) are excluded.

CCC is a function of six sums, its moments. Sums over parts of a batch add up to the
whole batch's (what makes gradient accumulation of a CCC loss exact), and sums over
recordings to a split's (what a bootstrap over recordings resamples). The same two
functions serve the loss (jax.numpy, inside the step) and scoring (numpy, float64).
"""

from jmt_jax.data.records import INVALID_LABEL


def moments(pred, label, weight):
  """(6,) weighted sums [n, sum x, sum y, sum x^2, sum y^2, sum xy] over entries of any
  shape, in the arrays' own namespace (numpy or jax.numpy) and dtype."""
  xp = pred.__array_namespace__()
  pred, label, weight = (xp.reshape(a, (-1,)) for a in (pred, label, weight))
  return xp.stack([weight.sum(), (weight * pred).sum(), (weight * label).sum(),
                   (weight * pred**2).sum(), (weight * label**2).sum(),
                   (weight * pred * label).sum()])


def ccc(m, eps=0.0):
  """CCC from `moments` sums (..., 6). With `eps` > 0 (a loss) the denominator has `eps`
  added, which keeps the value and its gradient finite where both sides are constant;
  without it (scoring), such a CCC is 0."""
  xp = m.__array_namespace__()
  n = xp.maximum(m[..., 0], 1.0)
  mx, my = m[..., 1] / n, m[..., 2] / n
  cov = m[..., 5] / n - mx * my
  # var_x + var_y + (mx - my)^2, expanded: the mean terms cancel to -2 mx my.
  denom = (m[..., 3] + m[..., 4]) / n - 2 * mx * my
  if eps:
    return 2 * cov / (denom + eps)
  return xp.where(denom > 0, 2 * cov / xp.where(denom > 0, denom, 1.0), 0.0)


def valid_label_weight(label, window_valid):
  """1 where the frame label is valid and the window is a real (not padding) one."""
  xp = label.__array_namespace__()
  return (label != INVALID_LABEL).astype(xp.float32) * window_valid[:, None]
