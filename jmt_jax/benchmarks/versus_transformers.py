"""What the encoder benchmarks (speech_encoders, vit_encoders) share: a jmt_jax encoder's
forward compiled in a dtype, and sides timed alternately and printed with their rates,
XLA's FLOPs, utilisation of the peak and ratio to `transformers`' PyTorch side."""

import os
import statistics
import sys
import time

import jax
import jax.numpy as jnp

from jmt_jax import config_args
from jmt_jax.benchmarks import train_step as train_step_bench
from jmt_jax.models import model as model_lib
from jmt_jax.runtime import compiler
from jmt_jax.weights import torch_import

TORCH_SIDE = "transformers float32"


def import_torch(threads):
  """(torch, transformers), PyTorch on `threads` threads (0: every core), after a line
  naming both sides; exits with a message where they are not installed."""
  try:
    import torch  # pylint: disable=import-outside-toplevel
    import transformers  # pylint: disable=import-outside-toplevel
  except ImportError:
    sys.exit("error: this benchmark needs PyTorch and transformers (pip install torch "
             "transformers)")
  torch.set_num_threads(threads or os.cpu_count())
  print(f"jax {jax.__version__} on {jax.devices()[0].device_kind} ({os.cpu_count()} host "
        f"cores); torch {torch.__version__} on {torch.get_num_threads()} threads; "
        f"transformers {transformers.__version__}")
  return torch, transformers


def converted_encoder(config_arg, modality, directory):
  """(jmt_jax backbone of `modality` in `config_arg`, its float32 variables converted
  from the transformers checkpoint folder `directory`)."""
  config = config_args.load(config_arg)
  group = f"{modality}_backbone"
  variables, _ = torch_import.convert(config, [((group,), directory)])
  encoder = model_lib.build_backbone(model_lib.build_model(config).config.backbones[modality])
  return encoder, {"params": variables["params"][group]}


def jax_side(encoder, variables, x, dtype, method=None, flops_method=None):
  """(compiled forward of `encoder` (its `method`, default __call__) on `x`, returning
  its float32 output; XLA's FLOPs) in `dtype`, parameters cast to it too. The FLOPs are
  counted on the compiled program, or on the lowered `flops_method` (the same work
  without loops: XLA counts a loop's body once)."""
  cast = jax.tree.map(lambda p: jnp.asarray(p, dtype), variables)
  forward = lambda m: compiler.jit(lambda v, y: encoder.apply(  # noqa: E731
      v, y.astype(dtype), method=m).astype(jnp.float32))
  compiled = forward(method).lower(cast, x).compile()
  cost = (compiled if flops_method is None else
          forward(flops_method).lower(cast, x)).cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  run = lambda: compiled(cast, x).block_until_ready()  # noqa: E731
  run()
  return run, float((cost or {}).get("flops", float("nan")))


def time_sides(sides, flops, batch, unit, rounds, title):
  """Times `sides` ({name: () -> output}; jmt_jax's named 'jmt_jax <dtype>', with their
  FLOPs per call in `flops` by dtype, PyTorch's TORCH_SIDE) alternately `rounds` times
  and prints medians, `unit`s/s for `batch` per call, MFU and the ratios to PyTorch."""
  seconds = {name: [] for name in sides}
  for _ in range(rounds):
    for name, fn in sides.items():
      t0 = time.perf_counter()
      fn()
      seconds[name].append(time.perf_counter() - t0)
  device = jax.devices()[0]
  print(f"\n{title}, median of {rounds} rounds")
  rate = {}
  for name, s in seconds.items():
    median = statistics.median(s)
    rate[name] = batch / median
    line = f"  {name:22s} {rate[name]:8.2f} {unit}/s  {median:.3f} s/batch"
    dtype = name.split()[-1]
    if name.startswith("jmt_jax"):
      peak, source = train_step_bench.peak(device, dtype)
      line += (f"  {flops[dtype] / 1e9:.1f} GFLOP/batch  {flops[dtype] / median / 1e12:.3f} "
               f"TFLOP/s  MFU {flops[dtype] / median / peak:.1%} ({source})")
    print(line + f"  (rounds: {', '.join(f'{v:.3f}' for v in s)})")
  for name in rate:
    if name.startswith("jmt_jax"):
      print(f"  ratio {name} / {TORCH_SIDE}: {rate[name] / rate[TORCH_SIDE]:.2f}x")
  return rate
