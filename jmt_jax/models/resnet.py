"""ResNets in torchvision's layouts: `resnet18` (2D), `r3d_18` (3D) and `r2plus1d_18`
((2+1)D), channels-last, with depth and width from config.

Layer and parameter names follow torchvision's (`stem`, `layer{i}_{j}`, `conv1`,
`bn1`, `downsample_conv`...) so PyTorch checkpoints map onto them one to one.
"""

from typing import Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

# PyTorch BatchNorm: momentum 0.1 on the new value, eps 1e-5.
_BN_MOMENTUM = 0.9
_BN_EPS = 1e-5


def batch_norm(train, name, momentum=_BN_MOMENTUM, epsilon=_BN_EPS):
  return nn.BatchNorm(use_running_average=not train, momentum=momentum, epsilon=epsilon, name=name)


class Conv3D(nn.Module):
  """A bias-free 3-D convolution computed as a sum of 2-D convolutions over time.

  Same parameter as `nn.Conv` (kernel (kt, kh, kw, in, out)) and same result, but
  XLA's CPU backend runs strided 3-D convolutions and their gradients 20-40x slower
  than the equivalent 2-D ones (BUILD_NOTES.md), so each temporal tap is a 2-D
  convolution over the frames folded into the batch.
  """

  features: int
  kernel_size: Sequence[int]
  strides: Sequence[int]
  # ((before, after),) * 3 for (t, h, w); None: PyTorch's symmetric k // 2.
  padding: Optional[Sequence[Sequence[int]]] = None

  @nn.compact
  def __call__(self, x):
    kt, kh, kw = self.kernel_size
    st = self.strides[0]
    kernel = self.param("kernel", nn.initializers.lecun_normal(),
                        (kt, kh, kw, x.shape[-1], self.features))
    pad_t, pad_h, pad_w = self.padding or [(k // 2, k // 2) for k in self.kernel_size]
    n = x.shape[0]
    x = jnp.pad(x, ((0, 0), tuple(pad_t), (0, 0), (0, 0), (0, 0)))
    t_out = (x.shape[1] - kt) // st + 1
    out = 0.0
    for k in range(kt):
      xs = x[:, k:k + st * (t_out - 1) + 1:st]
      if kh == kw == 1 and self.strides[1:] == (1, 1):  # a pure temporal tap is a matmul
        out = out + xs @ kernel[k, 0, 0].astype(x.dtype)
        continue
      out = out + jax.lax.conv_general_dilated(
          xs.reshape((n * t_out,) + xs.shape[2:]), kernel[k].astype(x.dtype), self.strides[1:],
          [tuple(pad_h), tuple(pad_w)], dimension_numbers=("NHWC", "HWIO", "NHWC"))
    return out if out.ndim == 5 else out.reshape((n, t_out) + out.shape[1:])


def conv(features, kernel, strides, name):
  """Bias-free convolution with PyTorch's symmetric `k // 2` padding."""
  if len(kernel) == 3:
    return Conv3D(features, tuple(kernel), tuple(strides), name=name)
  return nn.Conv(features, tuple(kernel), tuple(strides), padding=[(k // 2, k // 2) for k in kernel],
                 use_bias=False, name=name)


def r2plus1d_midplanes(in_planes, out_planes):
  """torchvision's rule: the (2+1)D pair has as many parameters as one full 3x3x3 conv."""
  return (in_planes * out_planes * 27) // (in_planes * 9 + 3 * out_planes)


class BasicBlock(nn.Module):
  """Two 3x3 convolutions with a residual; `conv_type` is '2d', '3d' or '2plus1d'."""

  features: int
  stride: int
  conv_type: str

  def _conv(self, x, stride, midplanes, train, name):
    f = self.features
    if self.conv_type == "2d":
      return conv(f, (3, 3), (stride, stride), name)(x)
    if self.conv_type == "3d":
      return conv(f, (3, 3, 3), (stride,) * 3, name)(x)
    x = conv(midplanes, (1, 3, 3), (1, stride, stride), f"{name}_spatial")(x)
    x = nn.relu(batch_norm(train, f"{name}_mid_bn")(x))
    return conv(f, (3, 1, 1), (stride, 1, 1), f"{name}_temporal")(x)

  @nn.compact
  def __call__(self, x, train):
    midplanes = r2plus1d_midplanes(x.shape[-1], self.features)
    y = self._conv(x, self.stride, midplanes, train, "conv1")
    y = nn.relu(batch_norm(train, "bn1")(y))
    y = self._conv(y, 1, midplanes, train, "conv2")
    y = batch_norm(train, "bn2")(y)
    if self.stride != 1 or x.shape[-1] != self.features:
      ndim = x.ndim - 2
      x = conv(self.features, (1,) * ndim, (self.stride,) * ndim, "downsample_conv")(x)
      x = batch_norm(train, "downsample_bn")(x)
    return nn.relu(x + y)


def reduce_features(x, reduction, dim, name="reduce_fc"):
  """Per-example embedding from the last feature map: 'mean', 'max' or 'flatten_linear'."""
  axes = tuple(range(1, x.ndim - 1))
  if reduction == "mean":
    return x.mean(axis=axes)
  if reduction == "max":
    return x.max(axis=axes)
  if reduction == "flatten_linear":
    # Channel-major flattening, as torch.flatten on an NC... tensor.
    x = jnp.moveaxis(x, -1, 1).reshape(x.shape[0], -1)
    return nn.Dense(dim, name=name)(x)
  raise ValueError(f"unknown reduction {reduction!r}; use 'mean', 'max' or 'flatten_linear'")


class ResNet(nn.Module):
  """The trunk of torchvision's ResNet-18 family up to the global reduction (no fc).

  kind: 'resnet2d' (input (N, H, W, C)), 'r3d' or 'r2plus1d' (input (N, T, H, W, C)).
  """

  kind: str
  widths: Sequence[int] = (64, 128, 256, 512)
  blocks: Sequence[int] = (2, 2, 2, 2)
  stem_width: int = 64
  stem_mid: int = 45  # r2plus1d only: the stem's spatial-conv width
  reduction: str = "mean"
  # A Linear(widths[-1] -> embed_dim) after the reduction, in torchvision's `fc` slot: the
  # authors' BioVid `Visual_model2` keeps a trained 512x512 one in its features.
  projection: bool = False
  embed_dim: int = 512  # used by reduction='flatten_linear' and by the projection

  @property
  def out_dim(self):
    if self.reduction == "flatten_linear" or self.projection:
      return self.embed_dim
    return self.widths[-1]

  @nn.compact
  def __call__(self, x, train=False):
    if self.kind == "resnet2d":
      x = conv(self.stem_width, (7, 7), (2, 2), "stem_conv")(x)
      x = nn.relu(batch_norm(train, "stem_bn")(x))
      x = nn.max_pool(x, (3, 3), (2, 2), padding=((1, 1), (1, 1)))
      conv_type = "2d"
    elif self.kind == "r3d":
      x = conv(self.stem_width, (3, 7, 7), (1, 2, 2), "stem_conv")(x)
      x = nn.relu(batch_norm(train, "stem_bn")(x))
      conv_type = "3d"
    elif self.kind == "r2plus1d":
      x = conv(self.stem_mid, (1, 7, 7), (1, 2, 2), "stem_conv_spatial")(x)
      x = nn.relu(batch_norm(train, "stem_bn_spatial")(x))
      x = conv(self.stem_width, (3, 1, 1), (1, 1, 1), "stem_conv_temporal")(x)
      x = nn.relu(batch_norm(train, "stem_bn_temporal")(x))
      conv_type = "2plus1d"
    else:
      raise ValueError(f"unknown ResNet kind {self.kind!r}")
    for i, (width, num) in enumerate(zip(self.widths, self.blocks)):
      for j in range(num):
        stride = 2 if i > 0 and j == 0 else 1
        x = BasicBlock(width, stride, conv_type, name=f"layer{i + 1}_{j}")(x, train)
    x = reduce_features(x, self.reduction, self.embed_dim)
    return nn.Dense(self.embed_dim, name="fc")(x) if self.projection else x
