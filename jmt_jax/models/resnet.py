"""ResNets in torchvision's layouts: `resnet18` (2D), `r3d_18` (3D) and `r2plus1d_18`
((2+1)D), channels-last, with depth and width from config.

Layer and parameter names follow torchvision's (`stem`, `layer{i}_{j}`, `conv1`,
`bn1`, `downsample_conv`...) so PyTorch checkpoints map onto them one to one.
"""

import functools
from typing import Optional
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

# PyTorch BatchNorm: momentum 0.1 on the new value, eps 1e-5.
_BN_MOMENTUM = 0.9
_BN_EPS = 1e-5


def batch_norm(train, name, momentum=_BN_MOMENTUM, epsilon=_BN_EPS):
  return nn.BatchNorm(use_running_average=not train, momentum=momentum, epsilon=epsilon, name=name)


CONV3D_IMPLS = ("auto", "native", "per_tap")


def conv3d_impl(impl, platform=None):
  """'native' or 'per_tap' for a config's `conv3d` on `platform` (default: this host's
  backend); 'auto' is per_tap on CPUs, native on GPUs and TPUs."""
  if impl not in CONV3D_IMPLS:
    raise ValueError(f"conv3d={impl!r}: use one of {list(CONV3D_IMPLS)}")
  if impl == "auto":
    return "per_tap" if (platform or jax.default_backend()) == "cpu" else "native"
  return impl


# Output maps of at most this many positions are convolved as one matmul over patches:
# XLA's CPU convolution takes 1 s for a 3x3, 512-channel map of 2x4 (batch 32) that the
# matmul does in 9 ms (ResNet-18's layer 4 on a log-mel spectrogram; BUILD_NOTES.md).
_SMALL_MAP = 16


def conv2d(x, kernel, strides, padding):
  """(N, H, W, C) x (kh, kw, C, O) -> (N, H', W', O), `padding` ((before, after),) * 2."""
  kh, kw, c, o = kernel.shape
  (pt, pb), (pl, pr) = padding
  ho = (x.shape[1] + pt + pb - kh) // strides[0] + 1
  wo = (x.shape[2] + pl + pr - kw) // strides[1] + 1
  if ho * wo > _SMALL_MAP:
    return jax.lax.conv_general_dilated(x, kernel, tuple(strides), [tuple(p) for p in padding],
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"))
  x = jnp.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)))
  patches = [x[:, i:i + strides[0] * (ho - 1) + 1:strides[0],
               j:j + strides[1] * (wo - 1) + 1:strides[1]] for i in range(kh) for j in range(kw)]
  return jnp.concatenate(patches, axis=-1) @ kernel.reshape(kh * kw * c, o)


class Conv2D(nn.Module):
  """A bias-free 2-D convolution with `nn.Conv`'s parameter (kernel (kh, kw, in, out)),
  through `conv2d`."""

  features: int
  kernel_size: Sequence[int]
  strides: Sequence[int]

  @nn.compact
  def __call__(self, x):
    kernel = self.param("kernel", nn.initializers.lecun_normal(),
                        tuple(self.kernel_size) + (x.shape[-1], self.features))
    return conv2d(x, kernel.astype(x.dtype), self.strides,
                  [(k // 2, k // 2) for k in self.kernel_size])


class Conv3D(nn.Module):
  """A bias-free 3-D convolution, with the parameter of `nn.Conv` (kernel (kt, kh, kw,
  in, out)), computed as `impl` says (`conv3d_impl`).

  'native' is XLA's 3-D convolution. 'per_tap' is the same sum as 2-D convolutions over
  the frames folded into the batch, one per temporal tap (a purely temporal kernel is one
  2-D convolution over frames and pixels): XLA's CPU backend runs strided 3-D
  convolutions and their gradients 20-40x slower than the equivalent 2-D ones
  (BUILD_NOTES.md).
  """

  features: int
  kernel_size: Sequence[int]
  strides: Sequence[int]
  # ((before, after),) * 3 for (t, h, w); None: PyTorch's symmetric k // 2.
  padding: Optional[Sequence[Sequence[int]]] = None
  impl: str = "auto"

  @nn.compact
  def __call__(self, x):
    kt, kh, kw = self.kernel_size
    kernel = self.param("kernel", nn.initializers.lecun_normal(),
                        (kt, kh, kw, x.shape[-1], self.features)).astype(x.dtype)
    pads = [tuple(p) for p in (self.padding or [(k // 2, k // 2) for k in self.kernel_size])]
    if conv3d_impl(self.impl) == "native":
      return native_conv3d(x, kernel, tuple(self.strides), tuple(pads))
    st = self.strides[0]
    n = x.shape[0]
    if kh == kw == 1 and tuple(self.strides[1:]) == (1, 1):
      return temporal_conv(x, kernel[:, 0, 0], st, pads[0])
    x = jnp.pad(x, ((0, 0), pads[0], (0, 0), (0, 0), (0, 0)))
    t_out = (x.shape[1] - kt) // st + 1
    out = 0.0
    for k in range(kt):
      xs = x[:, k:k + st * (t_out - 1) + 1:st]
      out = out + conv2d(xs.reshape((n * t_out,) + xs.shape[2:]), kernel[k], self.strides[1:],
                         pads[1:])
    return out.reshape((n, t_out) + out.shape[1:])


def _temporal_taps(x, kernel, stride, pads):
  x = jnp.pad(x, ((0, 0), pads, (0, 0), (0, 0), (0, 0)))
  t_out = (x.shape[1] - kernel.shape[0]) // stride + 1
  return sum(x[:, k:k + stride * (t_out - 1) + 1:stride] @ kernel[k]
             for k in range(kernel.shape[0]))


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def temporal_conv(x, kernel, stride, pads):
  """(N, T, H, W, C) convolved over T with (kt, C, O) at `stride`, T padded by `pads`
  (before, after). On XLA's CPU backend the forward is fastest as one 2-D convolution
  over (frames, pixels), 2.6x a matmul per tap (whose taps' slices are copies) on layer 1
  of R(2+1)D-18; the gradient is fastest through the matmuls, whose gradient is matmuls."""
  n, t, h, w, c = x.shape
  y = conv2d(x.reshape(n, t, h * w, c), kernel[:, None], (stride, 1), [pads, (0, 0)])
  return y.reshape(y.shape[:2] + (h, w, y.shape[-1]))


def _temporal_conv_forward(x, kernel, stride, pads):
  return temporal_conv(x, kernel, stride, pads), (x, kernel)


def _temporal_conv_backward(stride, pads, residuals, grad):
  return jax.vjp(lambda x, k: _temporal_taps(x, k, stride, pads), *residuals)[1](grad)


temporal_conv.defvjp(_temporal_conv_forward, _temporal_conv_backward)


def _conv3d(x, kernel, strides, pads):
  return jax.lax.conv_general_dilated(x, kernel, strides, pads,
                                      dimension_numbers=("NDHWC", "DHWIO", "NDHWC"))


def stride_one_form(x, kernel, strides, pads):
  """The strided 3-D convolution `_conv3d(x, kernel, strides, pads)` computed with stride
  1: an axis of kernel size 1 is subsampled, any other strided axis is folded into the
  channels (space-to-depth) with the kernel's taps zero-padded to a multiple of the
  stride, so a tap of the folded kernel covers `stride` input positions."""
  n, c, o = x.shape[0], x.shape[-1], kernel.shape[-1]
  outs = [(length + lo + hi - k) // s + 1
          for length, k, s, (lo, hi) in zip(x.shape[1:4], kernel.shape[:3], strides, pads)]
  folds, conv_pads = [], []
  for axis, (k, s, (lo, hi), out) in enumerate(zip(kernel.shape[:3], strides, pads, outs)):
    if s == 1:
      folds.append(1)
      conv_pads.append((lo, hi))
      continue
    taps = -(-k // s) if k > 1 else 1
    span = s * (out + taps - 1) if k > 1 else s * (out - 1) + 1
    x = jax.lax.pad(x, jnp.zeros((), x.dtype), [(0, 0, 0)] * (axis + 1) + [
        (lo, span - x.shape[axis + 1] - lo, 0)] + [(0, 0, 0)] * (3 - axis))
    if k == 1:
      x = jax.lax.slice_in_dim(x, 0, span, s, axis=axis + 1)
      folds.append(1)
    else:
      kernel = jnp.pad(kernel, [(0, 0)] * axis + [(0, taps * s - k)] + [(0, 0)] * (4 - axis))
      folds.append(s)
    conv_pads.append((0, 0))
  # (N, D*fd, H*fh, W*fw, C) -> (N, D, H, W, fd*fh*fw*C), and the kernel alike.
  fd, fh, fw = folds
  x = x.reshape(n, x.shape[1] // fd, fd, x.shape[2] // fh, fh, x.shape[3] // fw, fw, c)
  x = x.transpose(0, 1, 3, 5, 2, 4, 6, 7).reshape(n, *x.shape[1:7:2], fd * fh * fw * c)
  kd, kh, kw = kernel.shape[:3]
  kernel = kernel.reshape(kd // fd, fd, kh // fh, fh, kw // fw, fw, c, o)
  kernel = kernel.transpose(0, 2, 4, 1, 3, 5, 6, 7).reshape(
      kd // fd, kh // fh, kw // fw, fd * fh * fw * c, o)
  return _conv3d(x, kernel, (1, 1, 1), conv_pads)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def native_conv3d(x, kernel, strides, pads):
  """XLA's 3-D convolution, whose gradients are those of `stride_one_form`: stride-1
  convolutions, where a strided convolution's own gradients would be transposed (input-
  dilated) and kernel-dilated ones, slow paths of XLA on GPUs (BUILD_NOTES.md)."""
  return _conv3d(x, kernel, strides, pads)


def _native_conv3d_forward(x, kernel, strides, pads):
  return _conv3d(x, kernel, strides, pads), (x, kernel)


def _native_conv3d_backward(strides, pads, residuals, grad):
  if all(s == 1 for s in strides):
    return jax.vjp(lambda x, k: _conv3d(x, k, strides, pads), *residuals)[1](grad)
  return jax.vjp(lambda x, k: stride_one_form(x, k, strides, pads), *residuals)[1](grad)


native_conv3d.defvjp(_native_conv3d_forward, _native_conv3d_backward)


def conv(features, kernel, strides, name, conv3d="auto"):
  """Bias-free convolution with PyTorch's symmetric `k // 2` padding."""
  if len(kernel) == 3:
    return Conv3D(features, tuple(kernel), tuple(strides), impl=conv3d, name=name)
  return Conv2D(features, tuple(kernel), tuple(strides), name=name)


def r2plus1d_midplanes(in_planes, out_planes):
  """torchvision's rule: the (2+1)D pair has as many parameters as one full 3x3x3 conv."""
  return (in_planes * out_planes * 27) // (in_planes * 9 + 3 * out_planes)


class BasicBlock(nn.Module):
  """Two 3x3 convolutions with a residual; `conv_type` is '2d', '3d' or '2plus1d'."""

  features: int
  stride: int
  conv_type: str
  conv3d: str = "auto"

  def _conv(self, x, stride, midplanes, train, name):
    f = self.features
    if self.conv_type == "2d":
      return conv(f, (3, 3), (stride, stride), name)(x)
    if self.conv_type == "3d":
      return conv(f, (3, 3, 3), (stride,) * 3, name, self.conv3d)(x)
    x = conv(midplanes, (1, 3, 3), (1, stride, stride), f"{name}_spatial", self.conv3d)(x)
    x = nn.relu(batch_norm(train, f"{name}_mid_bn")(x))
    return conv(f, (3, 1, 1), (stride, 1, 1), f"{name}_temporal", self.conv3d)(x)

  @nn.compact
  def __call__(self, x, train):
    midplanes = r2plus1d_midplanes(x.shape[-1], self.features)
    y = self._conv(x, self.stride, midplanes, train, "conv1")
    y = nn.relu(batch_norm(train, "bn1")(y))
    y = self._conv(y, 1, midplanes, train, "conv2")
    y = batch_norm(train, "bn2")(y)
    if self.stride != 1 or x.shape[-1] != self.features:
      ndim = x.ndim - 2
      x = conv(self.features, (1,) * ndim, (self.stride,) * ndim, "downsample_conv",
               self.conv3d)(x)
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
  conv3d: str = "auto"  # how 3-D convolutions are computed (Conv3D)

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
      x = conv(self.stem_width, (3, 7, 7), (1, 2, 2), "stem_conv", self.conv3d)(x)
      x = nn.relu(batch_norm(train, "stem_bn")(x))
      conv_type = "3d"
    elif self.kind == "r2plus1d":
      x = conv(self.stem_mid, (1, 7, 7), (1, 2, 2), "stem_conv_spatial", self.conv3d)(x)
      x = nn.relu(batch_norm(train, "stem_bn_spatial")(x))
      x = conv(self.stem_width, (3, 1, 1), (1, 1, 1), "stem_conv_temporal", self.conv3d)(x)
      x = nn.relu(batch_norm(train, "stem_bn_temporal")(x))
      conv_type = "2plus1d"
    else:
      raise ValueError(f"unknown ResNet kind {self.kind!r}")
    for i, (width, num) in enumerate(zip(self.widths, self.blocks)):
      for j in range(num):
        stride = 2 if i > 0 and j == 0 else 1
        x = BasicBlock(width, stride, conv_type, self.conv3d, name=f"layer{i + 1}_{j}")(x, train)
    x = reduce_features(x, self.reduction, self.embed_dim)
    return nn.Dense(self.embed_dim, name="fc")(x) if self.projection else x
