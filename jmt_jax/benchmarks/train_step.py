"""The train step of a config, on this host's first device: compile time, step time,
examples/s, XLA's FLOPs per step, model FLOPs utilisation and memory, for frozen
backbones and fine-tuning, in float32 and bfloat16.

  python -m jmt_jax.benchmarks.train_step --config=configs/affwild2.py:jmt,synthetic
  python -m jmt_jax.benchmarks.train_step --config=configs/biovid.py:jmt,synthetic \\
      --batch_size=8

Utilisation is XLA's FLOPs per second over the device's peak for the dtype: a published
dense peak for the accelerators in PEAKS, or on a CPU the rate of a 4096x4096 matmul
measured in the same run. Memory is the peak in use on an accelerator, and on a CPU
what XLA's memory analysis gives the step (arguments, outputs and temporaries). The
batch is made up at the config's shapes (no dataset is read).
"""

import time

import jax
import jax.numpy as jnp
from absl import app
from absl import flags
from ml_collections import config_flags

from jmt_jax.benchmarks import step_timing
from jmt_jax.runtime import cli
from jmt_jax.runtime import compiler
from jmt_jax.runtime import library_logs

FLAGS = flags.FLAGS

# Published dense peak FLOP/s by device kind (a substring of jax's device_kind) and dtype.
PEAKS = {
    "H200": {"bfloat16": 989e12, "float32": 67e12},
    "H100": {"bfloat16": 989e12, "float32": 67e12},
    "A100": {"bfloat16": 312e12, "float32": 19.5e12},
    "L4": {"bfloat16": 121e12, "float32": 30.3e12},
    "TPU v5 lite": {"bfloat16": 197e12, "float32": 197e12 / 4},
    "TPU v5p": {"bfloat16": 459e12, "float32": 459e12 / 4},
    "TPU v4": {"bfloat16": 275e12, "float32": 275e12 / 4},
}


def measured_matmul_rate(dtype, n=4096, repeats=3):
  """FLOP/s of an n x n matmul in `dtype` on the default device: the best of `repeats`,
  compiled with XLA's defaults and with jmt_jax's options (`runtime.compiler`), whichever
  kernel is faster here."""
  a = jnp.ones((n, n), dtype)
  best = float("inf")
  for jit in (jax.jit, compiler.jit):
    f = jit(lambda a: a @ a).lower(a).compile()
    f(a).block_until_ready()
    for _ in range(repeats):
      t0 = time.perf_counter()
      f(a).block_until_ready()
      best = min(best, time.perf_counter() - t0)
  return 2 * n ** 3 / best


def peak(device, dtype):
  """(FLOP/s, where it comes from)."""
  for kind, by_dtype in PEAKS.items():
    if kind in device.device_kind:
      return by_dtype[dtype], f"published {kind} {dtype} peak"
  return measured_matmul_rate(dtype), f"the faster measured {dtype} 4096x4096 matmul here"


def memory_in_use(device, step):
  stats = device.memory_stats() if device.platform != "cpu" else None
  if stats and "peak_bytes_in_use" in stats:
    return stats["peak_bytes_in_use"], "peak in use"
  return step.memory_bytes, "XLA memory analysis"


def measure(config, setting, dtype, batch_size, steps, peak_flops):
  """{compile_s, step_s, examples_per_s, gflop_per_step, tflop_per_s, mfu, memory_gib,
  memory_source} of the train step of `config` with backbones `setting` ('frozen' or
  'finetune') in `dtype`, on a made-up batch of `batch_size`, over `steps` timed steps;
  `peak_flops`: the device's peak for `dtype` (`peak`)."""
  if setting not in ("frozen", "finetune"):
    raise ValueError(f"setting {setting!r}: use frozen or finetune")
  config = config.copy_and_resolve_references()
  config.model.freeze_backbones = setting == "frozen"
  config.compute_dtype = dtype
  batch = step_timing.synthetic_batch(config, batch_size, config.seed)
  step = step_timing.compile_step(config, batch)
  seconds = step.time(steps)
  rate = step.flops / seconds
  memory, source = memory_in_use(jax.devices()[0], step)
  return {"compile_s": step.compile_s, "step_s": seconds,
          "examples_per_s": batch_size / seconds, "gflop_per_step": step.flops / 1e9,
          "tflop_per_s": rate / 1e12, "mfu": rate / peak_flops,
          "memory_gib": memory / 2**30, "memory_source": source}


def main(argv):
  del argv
  library_logs.quiet()
  device = jax.devices()[0]
  print(f"jax {jax.__version__} on {device.device_kind} ({device.platform}); batch "
        f"{FLAGS.batch_size}, {FLAGS.steps} timed steps")
  peaks = {dtype: peak(device, dtype) for dtype in FLAGS.dtypes}
  for dtype, (flops, source) in peaks.items():
    print(f"peak {dtype}: {flops / 1e12:.3f} TFLOP/s ({source})")
  header = (f"{'setting':9s} {'dtype':9s} {'compile s':>9s} {'s/step':>8s} {'examples/s':>10s} "
            f"{'GFLOP/step':>10s} {'TFLOP/s':>8s} {'MFU':>6s} {'memory GiB':>10s}")
  print(header)
  for setting in FLAGS.settings:
    for dtype in FLAGS.dtypes:
      try:
        r = measure(FLAGS.config, setting, dtype, FLAGS.batch_size, FLAGS.steps,
                    peaks[dtype][0])
      except ValueError as e:
        raise app.UsageError(f"--settings: {e}") from e
      print(f"{setting:9s} {dtype:9s} {r['compile_s']:9.1f} {r['step_s']:8.3f} "
            f"{r['examples_per_s']:10.2f} {r['gflop_per_step']:10.1f} {r['tflop_per_s']:8.3f} "
            f"{r['mfu']:6.1%} {r['memory_gib']:10.2f}  ({r['memory_source']})", flush=True)


def _define_flags():
  config_flags.DEFINE_config_file("config", None, "Config file[:variant].")
  flags.DEFINE_list("settings", ["frozen", "finetune"],
                    "frozen (backbones frozen, the paper's Aff-Wild2 setting) and/or "
                    "finetune (every parameter trained).")
  flags.DEFINE_list("dtypes", ["float32", "bfloat16"], "Compute dtypes.")
  flags.DEFINE_integer("batch_size", 2, "Windows per step.")
  flags.DEFINE_integer("steps", 2, "Steps timed (after a warm one).")
  flags.mark_flags_as_required(["config"])


if __name__ == "__main__":
  cli.app_run(main, _define_flags)
