import jax.numpy as jnp
import numpy as np
import pytest

from jmt_jax.evaluation import metrics


def direct_ccc(x, y):
  """Straight from the definition: 2 cov / (var x + var y + (mean x - mean y)^2), population."""
  x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
  n = len(x)
  mx, my = sum(x) / n, sum(y) / n
  cov = sum((a - mx) * (b - my) for a, b in zip(x, y)) / n
  vx = sum((a - mx) ** 2 for a in x) / n
  vy = sum((b - my) ** 2 for b in y) / n
  return 2 * cov / (vx + vy + (mx - my) ** 2)


def test_ccc_matches_direct_computation():
  rng = np.random.default_rng(0)
  y = rng.uniform(-1, 1, 300)
  x = 0.6 * y + 0.3 * rng.standard_normal(300) + 0.1
  assert metrics.ccc(x, y) == pytest.approx(direct_ccc(x, y), abs=1e-12)
  assert metrics.ccc(y, y) == pytest.approx(1.0)
  yc = y - y.mean()
  assert metrics.ccc(-yc, yc) == pytest.approx(-1.0, abs=1e-9)


def test_ccc_excludes_invalid_frames():
  rng = np.random.default_rng(1)
  y = rng.uniform(-1, 1, 200)
  x = y + 0.2 * rng.standard_normal(200)
  invalid = rng.random(200) < 0.3
  labels = np.where(invalid, -5.0, y)
  preds = np.where(invalid, 100.0, x)  # garbage on masked frames must not matter
  assert metrics.ccc(preds, labels) == pytest.approx(direct_ccc(x[~invalid], y[~invalid]), abs=1e-12)
  assert np.isnan(metrics.ccc([0.1, 0.2], [-5.0, -5.0]))


def test_ccc_of_constant_predictions():
  y = np.linspace(-1, 1, 50)
  assert metrics.ccc(np.full(50, 0.3), y) == pytest.approx(0.0, abs=1e-12)
  # A constant label with matching constant prediction has zero variance everywhere.
  assert metrics.ccc(np.full(5, 0.2), np.full(5, 0.2)) == 0.0


def test_ccc_from_moments_equals_numpy_ccc():
  rng = np.random.default_rng(2)
  y = rng.uniform(-1, 1, (4, 16))
  x = 0.5 * y + 0.2 * rng.standard_normal((4, 16))
  y[0, :5] = -5.0
  window_valid = jnp.array([1.0, 1.0, 1.0, 0.0])  # the last window is padding
  w = metrics.valid_label_weight(jnp.asarray(y), window_valid)
  m = metrics.moments(jnp.asarray(x), jnp.asarray(y), w)
  got = float(metrics.ccc_from_moments(m))
  # Sums over parts of the batch add up to the whole batch's.
  parts = sum(metrics.moments(jnp.asarray(x[i:i + 1]), jnp.asarray(y[i:i + 1]), w[i:i + 1])
              for i in range(4))
  np.testing.assert_allclose(parts, m, rtol=1e-5, atol=1e-5)
  keep = (y != -5.0) & (np.asarray(window_valid)[:, None] > 0)
  assert got == pytest.approx(direct_ccc(x[keep], y[keep]), abs=1e-5)


def test_valence_arousal_scores_and_accuracy():
  y = np.linspace(-1, 1, 40)
  scores = metrics.valence_arousal_scores({"valence": y, "arousal": np.zeros(40)},
                                          {"valence": y, "arousal": y})
  assert scores["ccc_valence"] == pytest.approx(1.0)
  assert scores["ccc_arousal"] == pytest.approx(0.0)
  assert scores["ccc_mean"] == pytest.approx(0.5)
  assert scores["num_frames"] == 40
  assert metrics.accuracy(np.array([[0.1, 0.9], [2.0, 1.0], [0.0, 1.0]]), np.array([1, 0, 0])) == pytest.approx(2 / 3)
