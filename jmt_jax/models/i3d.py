"""I3D (Inception-v1 inflated) with the TCN head, as the JMT authors' Aff-Wild2 code
builds it (`InceptionI3d` of pytorch-i3d with temporal strides 1, then `I3D_WSDDA`'s
TemporalConvNet(1024 -> [512] x 4, kernel 5)), channels-last.

Submodule and parameter names mirror the PyTorch modules (`Conv3d_1a_7x7/conv3d`,
`Mixed_4b/b1b/bn`, `temporal/network_0/conv1/weight_g`...) so state dicts map onto
them by renaming alone (jmt_jax/weights/torch_layout.py).
"""

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jmt_jax.models import resnet

# pytorch-i3d's BatchNorm3d(eps=0.001, momentum=0.01).
_BN_MOMENTUM = 0.99
_BN_EPS = 1e-3

# (name, output widths [b0, b1a, b1b, b2a, b2b, b3b]) of the inception blocks, and the
# max-pools (kernel, stride) MaxPool3d_4a and MaxPool3d_5a placed before the named block.
_MIXED = (("Mixed_3b", (64, 96, 128, 16, 32, 32)), ("Mixed_3c", (128, 128, 192, 32, 96, 64)),
          ("Mixed_4b", (192, 96, 208, 16, 48, 64)), ("Mixed_4c", (160, 112, 224, 24, 64, 64)),
          ("Mixed_4d", (128, 128, 256, 24, 64, 64)), ("Mixed_4e", (112, 144, 288, 32, 64, 64)),
          ("Mixed_4f", (256, 160, 320, 32, 128, 128)), ("Mixed_5b", (256, 160, 320, 32, 128, 128)),
          ("Mixed_5c", (384, 192, 384, 48, 128, 128)))
_POOL_BEFORE = {"Mixed_4b": ((3, 3, 3), (1, 2, 2)), "Mixed_5b": ((2, 2, 2), (1, 2, 2))}


def same_padding(size, kernel, stride):
  """TensorFlow 'SAME' padding (before, after), as pytorch-i3d computes it per forward."""
  total = max(kernel - stride, 0) if size % stride == 0 else max(kernel - size % stride, 0)
  return total // 2, total - total // 2


def max_pool_same(x, kernel, stride):
  """pytorch-i3d's MaxPool3dSamePadding: zero padding (not -inf), then a valid max-pool."""
  pads = [same_padding(s, k, st) for s, k, st in zip(x.shape[1:4], kernel, stride)]
  x = jnp.pad(x, [(0, 0)] + pads + [(0, 0)])
  return nn.max_pool(x, tuple(kernel), tuple(stride))


class Unit3D(nn.Module):
  """Conv3d (no bias) with 'SAME' padding, BatchNorm, ReLU."""

  features: int
  kernel: Sequence[int] = (1, 1, 1)
  stride: Sequence[int] = (1, 1, 1)
  conv3d: str = "auto"

  @nn.compact
  def __call__(self, x, train):
    pads = [same_padding(s, k, st) for s, k, st in zip(x.shape[1:4], self.kernel, self.stride)]
    x = resnet.Conv3D(self.features, tuple(self.kernel), tuple(self.stride), padding=pads,
                      impl=self.conv3d, name="conv3d")(x)
    x = resnet.batch_norm(train, "bn", momentum=_BN_MOMENTUM, epsilon=_BN_EPS)(x)
    return nn.relu(x)


class InceptionModule(nn.Module):
  widths: Sequence[int]
  conv3d: str = "auto"

  @nn.compact
  def __call__(self, x, train):
    w = self.widths
    unit = lambda width, name, kernel=(1, 1, 1): Unit3D(width, kernel, conv3d=self.conv3d,
                                                        name=name)
    b0 = unit(w[0], "b0")(x, train)
    b1 = unit(w[2], "b1b", (3, 3, 3))(unit(w[1], "b1a")(x, train), train)
    b2 = unit(w[4], "b2b", (3, 3, 3))(unit(w[3], "b2a")(x, train), train)
    b3 = unit(w[5], "b3b")(max_pool_same(x, (3, 3, 3), (1, 1, 1)), train)
    return jnp.concatenate([b0, b1, b2, b3], axis=-1)


class WeightNormConv1D(nn.Module):
  """torch.nn.utils.weight_norm(Conv1d): kernel = g * v / ||v|| per output channel,
  causal (left) padding of (k - 1) * dilation, i.e. Conv1d + Chomp1d."""

  features: int
  kernel: int
  dilation: int

  @nn.compact
  def __call__(self, x):
    v = self.param("weight_v", nn.initializers.lecun_normal(),
                   (self.kernel, x.shape[-1], self.features))
    g = self.param("weight_g", lambda _, shape: jnp.linalg.norm(v.reshape(-1, shape[0]), axis=0),
                   (self.features,))
    b = self.param("bias", nn.initializers.zeros, (self.features,))
    kernel = v * (g / jnp.linalg.norm(v.reshape(-1, self.features), axis=0))
    pad = (self.kernel - 1) * self.dilation
    y = jax.lax.conv_general_dilated(x, kernel.astype(x.dtype), (1,), [(pad, 0)],
                                     rhs_dilation=(self.dilation,),
                                     dimension_numbers=("NWC", "WIO", "NWC"))
    return y + b.astype(x.dtype)


class TemporalBlock(nn.Module):
  features: int
  kernel: int
  dilation: int
  dropout: float

  @nn.compact
  def __call__(self, x, train):
    # Dropout2d on (N, C, T): whole channels are dropped, so the mask broadcasts over time.
    drop = nn.Dropout(self.dropout, broadcast_dims=(1,), deterministic=not train)
    y = x
    for name in ("conv1", "conv2"):
      y = drop(nn.leaky_relu(WeightNormConv1D(self.features, self.kernel, self.dilation,
                                              name=name)(y), 0.01))
    if x.shape[-1] != self.features:
      x = nn.Conv(self.features, (1,), name="downsample")(x)
    return nn.leaky_relu(y + x, 0.01)


class I3DTCN(nn.Module):
  """Clip (N, T, H, W, 3) -> I3D trunk -> mean over the last spatial map and pairs of
  frames (pytorch-i3d's AvgPool3d((2, 7, 7), stride 1) at 224x224) -> TCN -> max over
  time -> (N, tcn_widths[-1])."""

  tcn_widths: Sequence[int] = (512, 512, 512, 512)
  tcn_kernel: int = 5
  tcn_dropout: float = 0.1
  conv3d: str = "auto"  # how 3-D convolutions are computed (resnet.Conv3D)

  @property
  def out_dim(self):
    return self.tcn_widths[-1]

  @nn.compact
  def __call__(self, x, train=False):
    if x.shape[1] < 2:
      raise ValueError(f"I3D needs at least 2 frames per clip (its final pooling spans 2), "
                       f"got {x.shape[1]}")
    c3 = self.conv3d
    x = Unit3D(64, (7, 7, 7), (1, 2, 2), c3, name="Conv3d_1a_7x7")(x, train)
    x = max_pool_same(x, (1, 3, 3), (1, 2, 2))
    x = Unit3D(64, conv3d=c3, name="Conv3d_2b_1x1")(x, train)
    x = Unit3D(192, (3, 3, 3), conv3d=c3, name="Conv3d_2c_3x3")(x, train)
    x = max_pool_same(x, (1, 3, 3), (1, 2, 2))
    for name, widths in _MIXED:
      if name in _POOL_BEFORE:
        x = max_pool_same(x, *_POOL_BEFORE[name])
      x = InceptionModule(widths, c3, name=name)(x, train)
    x = nn.avg_pool(x, (2,) + x.shape[2:4]).reshape(x.shape[0], -1, x.shape[-1])  # (N, T-1, C)
    for i, width in enumerate(self.tcn_widths):
      x = TemporalBlock(width, self.tcn_kernel, 2 ** i, self.tcn_dropout,
                        name=f"temporal_network_{i}")(x, train)
    return x.max(axis=1)
