"""What the step benchmarks share: a batch of the config's shapes made up from its input
spec (no dataset opened), the jitted train step compiled for it, and its timing."""

import dataclasses
import time

import jax
import numpy as np

from jmt_jax.data.records import DIMENSIONS
from jmt_jax.models import model as model_lib
from jmt_jax.runtime import compiler
from jmt_jax.training import train
from jmt_jax.training import train_step


def synthetic_batch(config, batch_size, seed=0, embeddings=False):
  """A training batch of `batch_size` windows with the config's shapes and dtypes: random
  pixels, audio, biosignals and labels, no augmentation (identity factors). With
  `embeddings`, per-clip backbone embeddings stand in for the raw inputs, as the feature
  cache gives them."""
  rng = np.random.default_rng(seed)
  t = config.input.num_clips
  batch = {}
  for m, s in ({} if embeddings else model_lib.input_spec(config)).items():
    shape = (batch_size,) + s.shape[1:]
    if s.dtype == np.uint8:
      batch[m] = rng.integers(0, 256, shape, np.uint8)
    elif s.dtype == np.int16:
      batch[m] = rng.integers(-8000, 8000, shape, np.int16)
    else:
      batch[m] = rng.standard_normal(shape).astype(s.dtype)
    if config.input.modalities[m].kind == "frames":
      batch.setdefault("augment", {})[m] = np.tile(np.float32([0, 1, 1]), (batch_size, t, 1))
  if embeddings:
    batch["embeddings"] = {m: rng.standard_normal((batch_size, t, model_lib.clip_embedding_width(
        config, m))).astype(np.float32) for m in config.model.modalities}
  for d in DIMENSIONS:
    batch[d] = rng.uniform(-1, 1, (batch_size, t)).astype(np.float32)
  batch["pain"] = rng.integers(0, config.model.head.num_classes or 1, batch_size).astype(np.int32)
  batch["valid"] = np.ones(batch_size, np.float32)
  return batch


@dataclasses.dataclass
class CompiledStep:
  """The train step of a config compiled for one batch, with XLA's own accounting."""
  run: object  # (state, batch) -> (state, logs)
  state: object
  batch: object
  compile_s: float
  flops: float  # per step, from XLA's cost analysis (`step_flops`; nan where it gives none)
  memory_bytes: float  # arguments + outputs + temporaries, from XLA's memory analysis

  def time(self, steps):
    """Seconds per step over `steps` steps (the state moves on; inputs stay)."""
    t0 = time.perf_counter()
    for _ in range(steps):
      self.state, logs = self.run(self.state, self.batch)
    jax.block_until_ready(logs)
    return (time.perf_counter() - t0) / steps


def _jitted_step(config, from_embeddings):
  """(model, optimizer, the config's jitted train step)."""
  model = model_lib.build_model(config)
  tx = train.make_optimizer(config.optimizer, config.train.num_steps,
                            config.model.get("freeze_backbones", False))
  step = compiler.jit(train_step.make_train_step(model, tx, config.task,
                                            config.train.grad_accum_steps, from_embeddings),
                 fusion_only=from_embeddings, donate_argnums=0)
  return model, tx, step


def step_flops(config, batch, from_embeddings=False):
  """FLOPs of one train step of `config` on `batch`: XLA's count on the lowered program
  with every backbone embedding its clips in one call. XLA counts a loop's body once, so
  the program that embeds a few clips a call (`clips_per_call`, on a CPU) would be
  undercounted by its number of calls."""
  config = config.copy_and_resolve_references()
  model_lib.set_clips_per_call(config, 0)
  model, tx, step = _jitted_step(config, from_embeddings)
  state = jax.eval_shape(lambda: train.initial_state(model, tx, config, None))
  cost = step.lower(state, jax.tree.map(
      lambda x: jax.ShapeDtypeStruct(np.shape(x), np.asarray(x).dtype), batch)).cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  return float((cost or {}).get("flops", float("nan")))


def compile_step(config, batch, from_embeddings=False):
  """The config's jitted train step compiled for `batch` (of inputs, or with
  `from_embeddings` of the backbones' embeddings), run once (warm)."""
  model, tx, step = _jitted_step(config, from_embeddings)
  state = train.initial_state(model, tx, config, None)
  batch = jax.device_put(batch)
  t0 = time.perf_counter()
  compiled = step.lower(state, batch).compile()
  compile_s = time.perf_counter() - t0
  memory = compiled.memory_analysis()
  memory_bytes = float("nan") if memory is None else float(
      memory.argument_size_in_bytes + memory.output_size_in_bytes + memory.temp_size_in_bytes)
  out = CompiledStep(compiled, state, batch, compile_s,
                     step_flops(config, batch, from_embeddings), memory_bytes)
  out.time(1)
  return out
