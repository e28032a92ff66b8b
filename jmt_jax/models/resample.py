"""Polyphase resampling inside the jitted model, numerically scipy's
`signal.resample_poly(x, up, down)` (its Kaiser-windowed FIR, beta 5, and zero padding):
the speech encoders take 16 kHz audio, the data stores the rate it was prepared at.

The filter's taps for the `up` output phases are laid out as one strided convolution
(`up` output channels, stride `down`), so that memory stays linear in the clip length
on every backend, at the cost of about (down + taps) / taps times the ideal arithmetic,
a rounding error beside a speech encoder's.
"""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from scipy import signal


@functools.lru_cache(maxsize=16)
def _kernel(rate_in, rate_out):
  """(kernel (span, 1, up), left padding, up, down) of the resampling as one convolution."""
  g = math.gcd(int(rate_in), int(rate_out))
  up, down = int(rate_out) // g, int(rate_in) // g
  half_len = 10 * max(up, down)
  h = signal.firwin(2 * half_len + 1, 1.0 / max(up, down), window=("kaiser", 5.0)) * up
  # Output n = q * up + r is sum_m x[q * down + c_r + m] * h[r * down + half_len - (c_r + m) * up].
  r = np.arange(up)
  first = -((half_len - r * down) // up)  # c_r = ceil((r * down - half_len) / up)
  taps = 2 * half_len // up + 1
  lo = first.min()
  span = first.max() - lo + taps
  kernel = np.zeros((span, up))
  for phase in range(up):
    m = np.arange(taps)
    j = phase * down + half_len - (first[phase] + m) * up
    ok = (j >= 0) & (j < len(h))
    kernel[first[phase] - lo + m[ok], phase] = h[j[ok]]
  return kernel[:, None, :].astype(np.float32), int(-lo), up, down


def resample(x, rate_in, rate_out):
  """(..., n) float signals at `rate_in` -> (..., ceil(n * rate_out / rate_in)) at `rate_out`."""
  if int(rate_in) == int(rate_out):
    return x
  kernel, left, up, down = _kernel(rate_in, rate_out)
  n = x.shape[-1]
  n_out = -(-n * up // down)
  blocks = -(-n_out // up)
  right = max(0, (blocks - 1) * down + kernel.shape[0] - left - n)
  y = jax.lax.conv_general_dilated(
      x.reshape(-1, n, 1), jnp.asarray(kernel, x.dtype), window_strides=(down,),
      padding=[(left, right)], dimension_numbers=("NWC", "WIO", "NWC"),
      precision=jax.lax.Precision.HIGHEST)
  return y[:, :blocks].reshape(x.shape[:-1] + (blocks * up,))[..., :n_out]
