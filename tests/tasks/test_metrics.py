import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jmt_jax import tasks
from jmt_jax.tasks import metrics


def direct_ccc(x, y):
  """Straight from the definition: 2 cov / (var x + var y + (mean x - mean y)^2), population."""
  x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
  n = len(x)
  mx, my = sum(x) / n, sum(y) / n
  cov = sum((a - mx) * (b - my) for a, b in zip(x, y)) / n
  vx = sum((a - mx) ** 2 for a in x) / n
  vy = sum((b - my) ** 2 for b in y) / n
  return 2 * cov / (vx + vy + (mx - my) ** 2)


def ccc(pred, label):
  """CCC of numpy arrays over frames whose label is valid, in float64, as scoring takes it."""
  pred, label = np.asarray(pred, np.float64), np.asarray(label, np.float64)
  return float(metrics.ccc(metrics.moments(pred, label, (label != -5.0).astype(np.float64))))


def test_ccc_matches_direct_computation():
  rng = np.random.default_rng(0)
  y = rng.uniform(-1, 1, 300)
  x = 0.6 * y + 0.3 * rng.standard_normal(300) + 0.1
  assert ccc(x, y) == pytest.approx(direct_ccc(x, y), abs=1e-12)
  assert ccc(y, y) == pytest.approx(1.0)
  yc = y - y.mean()
  assert ccc(-yc, yc) == pytest.approx(-1.0, abs=1e-9)


def test_ccc_excludes_invalid_frames():
  rng = np.random.default_rng(1)
  y = rng.uniform(-1, 1, 200)
  x = y + 0.2 * rng.standard_normal(200)
  invalid = rng.random(200) < 0.3
  labels = np.where(invalid, -5.0, y)
  preds = np.where(invalid, 100.0, x)  # garbage on masked frames must not matter
  assert ccc(preds, labels) == pytest.approx(direct_ccc(x[~invalid], y[~invalid]), abs=1e-12)


def test_ccc_of_constant_predictions():
  y = np.linspace(-1, 1, 50)
  assert ccc(np.full(50, 0.3), y) == pytest.approx(0.0, abs=1e-12)
  # A constant label with matching constant prediction has zero variance everywhere.
  assert ccc(np.full(5, 0.2), np.full(5, 0.2)) == 0.0


def test_the_loss_ccc_in_jax_equals_the_scoring_ccc_and_adds_up_over_parts():
  rng = np.random.default_rng(2)
  y = rng.uniform(-1, 1, (4, 16))
  x = 0.5 * y + 0.2 * rng.standard_normal((4, 16))
  y[0, :5] = -5.0
  window_valid = jnp.array([1.0, 1.0, 1.0, 0.0])  # the last window is padding
  w = metrics.valid_label_weight(jnp.asarray(y, jnp.float32), window_valid)
  m = jax.jit(metrics.moments)(jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.float32), w)
  got = float(jax.jit(lambda m: metrics.ccc(m, eps=1e-8))(m))
  # Sums over parts of the batch add up to the whole batch's.
  parts = sum(metrics.moments(jnp.asarray(x[i:i + 1], jnp.float32),
                              jnp.asarray(y[i:i + 1], jnp.float32), w[i:i + 1]) for i in range(4))
  np.testing.assert_allclose(parts, m, rtol=1e-5, atol=1e-5)
  keep = (y != -5.0) & (np.asarray(window_valid)[:, None] > 0)
  assert got == pytest.approx(direct_ccc(x[keep], y[keep]), abs=1e-5)
  assert got == pytest.approx(ccc(x[keep], y[keep]), abs=1e-5)
  # Finite gradient where both sides are constant (a batch of one repeated value).
  const = metrics.moments(jnp.full(4, 0.2), jnp.full(4, 0.2), jnp.ones(4))
  assert np.isfinite(jax.grad(lambda m: metrics.ccc(m, eps=1e-8))(const)).all()


def test_task_scores_over_all_videos_exclude_invalid_frames():
  # Valence x = [1, 2, 3] against y = [1, 2, 5] (the -5 frame left out): means 2 and 8/3;
  # population variances 2/3 and 26/9; covariance 4/3. CCC = (8/3) / (2/3 + 26/9 + 4/9) = 2/3.
  task = tasks.get("valence_arousal")
  preds = {"a": {"valence": np.array([1.0, 2.0]), "arousal": np.array([0.0, 1.0])},
           "b": {"valence": np.array([9.0, 3.0]), "arousal": np.array([1.0, 0.0])}}
  labels = {"a": {"valence": np.array([1.0, 2.0]), "arousal": np.array([0.0, 1.0])},
            "b": {"valence": np.array([-5.0, 5.0]), "arousal": np.array([1.0, 0.0])}}
  names, stats = task.recording_stats(preds, labels)
  assert names == ["a", "b"] and stats.shape == (2, 2, 6)
  s = task.metric_values(stats.sum(axis=0))
  assert s["ccc_valence"] == pytest.approx(2 / 3)
  assert s["ccc_arousal"] == pytest.approx(1.0)
  assert s["ccc_mean"] == pytest.approx(5 / 6)
  empty = {"a": {"valence": np.array([-5.0]), "arousal": np.array([-5.0])}}
  assert np.isnan(task.metric_values(task.recording_stats(empty, empty)[1].sum(0))["ccc_mean"])


def test_pain_accuracy_from_recording_stats():
  task = tasks.get("pain")
  logits = np.array([[0.1, 0.9], [2.0, 1.0], [0.0, 1.0]])
  names, stats = task.recording_stats(logits, np.array([1, 0, 0]), np.array([4, 4, 7]))
  assert names == ["4", "7"]
  np.testing.assert_array_equal(stats, [[2, 2], [1, 0]])
  assert task.metric_values(stats.sum(axis=0))["accuracy"] == pytest.approx(2 / 3)
