"""The BioVid 1-D CNN for EDA: Conv1d-ReLU-MaxPool twice, then Flatten-Linear."""

from typing import Sequence

import flax.linen as nn
import jax.numpy as jnp


class BiosignalCNN(nn.Module):
  """Input (N, samples, channels) -> (N, embed_dim).

  Unpadded convolutions and channel-major flattening, as the PyTorch original
  (Conv1d(1,32,k5,s2)-ReLU-MaxPool(2)-Conv1d(32,64,k5)-ReLU-MaxPool(2)-Flatten-Linear).
  """

  widths: Sequence[int] = (32, 64)
  kernel: int = 5
  first_stride: int = 2
  embed_dim: int = 512

  @property
  def out_dim(self):
    return self.embed_dim

  @nn.compact
  def __call__(self, x, train=False):
    del train
    for i, width in enumerate(self.widths):
      stride = self.first_stride if i == 0 else 1
      x = nn.Conv(width, (self.kernel,), (stride,), padding="VALID", name=f"conv{i + 1}")(x)
      x = nn.max_pool(nn.relu(x), (2,), (2,))
    x = jnp.swapaxes(x, 1, 2).reshape(x.shape[0], -1)
    return nn.Dense(self.embed_dim, name="fc")(x)
