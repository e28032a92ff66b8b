"""The XLA options jmt_jax's programs are compiled with.

On a CPU, XLA hands matmuls (with the elementwise work around them) to YNNPACK fusions
by default. For the programs that run backbones, its own (Eigen) matmuls were faster on
the 2-core development machine: the frozen R(2+1)D-18 step at the paper's shapes 6.62
-> 5.09 s, a ViT-B forward 1.11x, a fine-tuning step 95 -> 88 s, WavLM unchanged. For
the fusion alone on cached embeddings, whose matmuls are small, YNNPACK's were (the
fusion step at 0.84x PyTorch with them, 0.60x without): those programs keep XLA's
defaults (BUILD_NOTES.md). `jit` is `jax.jit` with the options; a jaxlib that does not
know an option compiles without it. GPUs and TPUs get none.
"""

import functools

import jax
import numpy as np

CPU_OPTIONS = {"xla_cpu_experimental_ynn_fusion_type": ""}  # no YNNPACK fusions


@functools.cache
def _cpu_options():
  try:
    jax.jit(lambda x: x + 1, compiler_options=CPU_OPTIONS).lower(np.float32(0)).compile()
  except Exception:  # pylint: disable=broad-except  a jaxlib without the option
    return {}
  return dict(CPU_OPTIONS)


def options(platform=None, fusion_only=False):
  """`compiler_options` for a program compiled for `platform` (default: this host's
  backend) that runs backbones, or with `fusion_only` one on their cached embeddings."""
  cpu = (platform or jax.default_backend()) == "cpu"
  return dict(_cpu_options()) if cpu and not fusion_only else {}


def jit(fn, fusion_only=False, **kwargs):
  """`jax.jit(fn, **kwargs)` compiled with this host's `options(fusion_only=...)`."""
  return jax.jit(fn, compiler_options=options(fusion_only=fusion_only), **kwargs)
