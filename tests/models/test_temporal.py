"""Temporal models over a frame encoder's embeddings of a clip's frames (models.temporal)."""

import jax
import numpy as np
import pytest

from jmt_jax.models import temporal
from jmt_jax.models.attention import Encoder

FRAMES, WIDTH = 4, 8


def _model(kind, **kwargs):
  x = np.random.default_rng(0).standard_normal((2, 3, FRAMES * WIDTH)).astype(np.float32)
  model = temporal.TemporalModel(kind, FRAMES, WIDTH, num_heads=2, **kwargs)
  return model, model.init(jax.random.key(0), x), x, x.reshape(2, 3, FRAMES, WIDTH)


@pytest.mark.parametrize("kind,pool", [("mean", np.mean), ("max", np.max)])
def test_mean_and_max_pool_the_frames(kind, pool):
  model, variables, x, frames = _model(kind)
  assert not jax.tree.leaves(variables)
  np.testing.assert_allclose(model.apply(variables, x), pool(frames, axis=2), atol=1e-6)


def test_conv_is_a_residual_same_padded_convolution_over_the_frames():
  model, variables, x, frames = _model("conv", kernel=3)
  kernel = np.asarray(variables["params"]["conv"]["kernel"])  # (3, WIDTH, WIDTH)
  bias = np.asarray(variables["params"]["conv"]["bias"])
  padded = np.pad(frames, [(0, 0), (0, 0), (1, 1), (0, 0)])
  conv = sum(np.einsum("abfi,io->abfo", padded[:, :, k:k + FRAMES], kernel[k])
             for k in range(3)) + bias
  want = (frames + np.asarray(jax.nn.gelu(conv))).mean(axis=2)
  np.testing.assert_allclose(model.apply(variables, x), want, atol=1e-5)


def test_transformer_encodes_the_frames_at_their_positions():
  model, variables, x, frames = _model("transformer", num_layers=2)
  params = variables["params"]
  encoder = Encoder(2, 2, 4 * WIDTH)
  tokens = frames.reshape(6, FRAMES, WIDTH) + np.asarray(params["position_embeddings"])
  want = np.asarray(encoder.apply({"params": params["encoder"]}, tokens)).mean(axis=1)
  np.testing.assert_allclose(model.apply(variables, x), want.reshape(2, 3, WIDTH), atol=1e-5)
  reversed_frames = frames[:, :, ::-1].reshape(x.shape)  # positions make order matter
  assert not np.allclose(model.apply(variables, reversed_frames), model.apply(variables, x))


def test_a_wrong_width_or_kind_is_refused():
  model, variables, x, _ = _model("conv")
  with pytest.raises(ValueError, match="takes 32 per clip, got 31"):
    model.apply(variables, x[..., :31])
  with pytest.raises(ValueError, match="temporal model 'lstm'"):
    temporal.TemporalModel("lstm", FRAMES, WIDTH).init(jax.random.key(0), x)
