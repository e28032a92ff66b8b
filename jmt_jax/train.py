"""Training and evaluation of a jmt_jax model: one linear function per mode."""

import math
import os
import time
from typing import Any

import flax
import jax
import jax.numpy as jnp
import optax
from absl import logging

from jmt_jax import checkpointing
from jmt_jax import evaluation
from jmt_jax import metric_writers
from jmt_jax import metrics
from jmt_jax import sharding
from jmt_jax import weight_import
from jmt_jax.data import pipeline
from jmt_jax.models import model as model_lib


@flax.struct.dataclass
class TrainState:
  step: jax.Array
  params: Any
  batch_stats: Any
  opt_state: Any
  rng: jax.Array  # raw uint32 key data, so that checkpoints hold plain arrays


def make_optimizer(cfg, num_steps, freeze_backbones=False):
  """The configured optimizer; with `freeze_backbones`, backbone parameters get no update
  (and no optimizer state)."""
  if cfg.schedule == "cosine":
    lr = optax.warmup_cosine_decay_schedule(0.0, cfg.learning_rate, cfg.warmup_steps,
                                            max(num_steps, cfg.warmup_steps + 1))
  elif cfg.schedule == "constant":
    lr = optax.join_schedules([optax.linear_schedule(0.0, cfg.learning_rate, cfg.warmup_steps),
                               optax.constant_schedule(cfg.learning_rate)], [cfg.warmup_steps])
  else:
    raise ValueError(f"unknown schedule {cfg.schedule!r}; use 'cosine' or 'constant'")
  if cfg.name == "adamw":
    tx = optax.adamw(lr, weight_decay=cfg.weight_decay)
  elif cfg.name == "adam":
    tx = optax.adam(lr)
  elif cfg.name == "sgd":
    tx = optax.sgd(lr, momentum=cfg.momentum, nesterov=cfg.nesterov)
  else:
    raise ValueError(f"unknown optimizer {cfg.name!r}; use 'adamw', 'adam' or 'sgd'")
  tx = optax.chain(optax.clip_by_global_norm(cfg.grad_clip_norm), tx)
  if freeze_backbones:
    labels = lambda params: {k: "frozen" if model_lib.is_backbone(k) else "trained" for k in params}
    tx = optax.multi_transform({"trained": tx, "frozen": optax.set_to_zero()}, labels)
  return tx


def init_from_converted(state, path, abstract_state):
  """`state` with the parameter groups of the converted checkpoint at `path` replacing
  the random ones; every replaced leaf must match in shape."""
  variables, groups = weight_import.load(path)
  params, batch_stats = dict(state.params), dict(state.batch_stats)
  for collection, target, abstract in (("params", params, abstract_state.params),
                                       ("batch_stats", batch_stats, abstract_state.batch_stats)):
    for g, tree in variables.get(collection, {}).items():
      if g not in abstract:
        raise ValueError(f"{path}: parameter group {g!r} is not in this model "
                         f"(it has {sorted(abstract)})")
      want = jax.tree.map(lambda x: x.shape, abstract[g])
      got = jax.tree.map(lambda x: x.shape, tree)
      if want != got:
        raise ValueError(f"{path}: parameter group {g!r} does not fit this model's config "
                         f"(converted for another config?)")
      target[g] = jax.tree.map(lambda x, ref: jnp.asarray(x, ref.dtype), tree, abstract[g])
  logging.info("Initialised %s from the converted checkpoint %s.", sorted(groups), path)
  return state.replace(params=params, batch_stats=batch_stats)


def compute_loss(task, outputs, batch):
  """(loss, metrics). Valence/arousal: sum of (1 - CCC) over the batch's valid frames."""
  if task == "valence_arousal":
    logs = {}
    for k in ("valence", "arousal"):
      weight = metrics.valid_label_weight(batch[k], batch["valid"])
      logs[f"ccc_{k}"] = metrics.masked_ccc(outputs[k], batch[k], weight)
    loss = 2.0 - logs["ccc_valence"] - logs["ccc_arousal"]
  elif task == "pain":
    ce = optax.softmax_cross_entropy_with_integer_labels(outputs["logits"], batch["pain"])
    loss = (ce * batch["valid"]).sum() / jnp.maximum(batch["valid"].sum(), 1.0)
    correct = (outputs["logits"].argmax(-1) == batch["pain"]) * batch["valid"]
    logs = {"accuracy": correct.sum() / jnp.maximum(batch["valid"].sum(), 1.0)}
  else:
    raise ValueError(f"unknown task {task!r}; use 'valence_arousal' or 'pain'")
  return loss, {"loss": loss, **logs}


def label_keys(task):
  return ("valence", "arousal", "valid") if task == "valence_arousal" else ("pain", "valid")


def _format_seconds(s):
  return f"{int(s // 60)}m{int(s % 60):02d}s"


def _example_batch(source):
  """A one-window batch, for shapes at initialisation."""
  return jax.tree.map(lambda x: jnp.asarray(x)[None], source[0])


def make_init_fn(model, tx, example):
  def init_state(rng):
    init_rng, dropout_rng, state_rng = jax.random.split(rng, 3)
    variables = model.init({"params": init_rng, "dropout": dropout_rng}, example, train=False)
    params = variables["params"]
    return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                      batch_stats=variables.get("batch_stats", {}), opt_state=tx.init(params),
                      rng=state_rng)
  return init_state


def make_train_step(model, tx, task):
  """(state, batch) -> (state, logs): one optimizer step on one global batch."""
  def train_step(state, batch):
    step_rng = jax.random.fold_in(state.rng, state.step)

    def loss_fn(params):
      outputs, updates = model.apply({"params": params, "batch_stats": state.batch_stats}, batch,
                                     train=True, rngs={"dropout": step_rng},
                                     mutable=["batch_stats"])
      loss, logs = compute_loss(task, outputs, batch)
      return loss, (logs, updates.get("batch_stats", {}))

    grads, (logs, batch_stats) = jax.grad(loss_fn, has_aux=True)(state.params)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    logs["grad_norm"] = optax.tree.norm(grads)
    return state.replace(step=state.step + 1, params=optax.apply_updates(state.params, updates),
                         batch_stats=batch_stats, opt_state=opt_state), logs
  return train_step


def _setup_model(config, mesh):
  """Model, data, shardings and jitted prediction shared by training and evaluation."""
  model = model_lib.build_model(config.model)
  dataset = pipeline.open_dataset(config.data)
  if config.task == "pain":
    levels = sorted({int(p) for s in dataset.splits.values() for p in s.table.pain[s.recordings]})
    needed = len(config.input.pain_classes) if config.input.pain_classes else levels[-1] + 1
    if config.model.head.num_classes != needed:
      raise ValueError(f"config.model.head.num_classes={config.model.head.num_classes} but the "
                       f"labels need {needed} (pain_classes={list(config.input.pain_classes)}, "
                       f"levels in the data: {levels})")
  batch_shard, repl = sharding.batch_sharding(mesh), sharding.replicated(mesh)
  make_global = lambda b: sharding.global_batch(b, batch_shard)

  @jax.jit
  def predict(params, batch_stats, batch):
    out = model.apply({"params": params, "batch_stats": batch_stats}, batch, train=False)
    return out, {k: batch[k] for k in label_keys(config.task)}

  return model, dataset, batch_shard, repl, make_global, predict


def train_and_evaluate(config, workdir):
  """Trains `config` in `workdir`, resuming from its newest readable checkpoint.

  Returns the final evaluation scores on `config.eval.split`.
  """
  os.makedirs(workdir, exist_ok=True)
  num_steps = config.train.num_steps
  global_batch_size = config.train.batch_size

  # ---------------------------------------------------------------- Mesh
  mesh = sharding.make_mesh(config.mesh)
  if global_batch_size % jax.device_count():
    raise ValueError(f"config.train.batch_size={global_batch_size} is not divisible by the "
                     f"{jax.device_count()} devices")
  logging.info("Mesh %s over %d devices in %d processes.", dict(mesh.shape), jax.device_count(),
               jax.process_count())

  # ---------------------------------------------------------------- Model and input
  model, dataset, batch_shard, repl, make_global, predict = _setup_model(config, mesh)
  train_source = pipeline.window_source(dataset, "train", config.input, config.model.modalities,
                                        train=True)
  eval_source = pipeline.window_source(dataset, config.eval.split, config.input,
                                       config.model.modalities, train=False)
  logging.info("Train: %s. Eval (%s): %s.", train_source, config.eval.split, eval_source)
  train_iter = pipeline.train_iterator(
      train_source, global_batch_size // jax.process_count(), seed=config.seed,
      process_index=jax.process_index(), process_count=jax.process_count(),
      read_threads=config.train.read_threads)

  # ---------------------------------------------------------------- Optimizer
  tx = make_optimizer(config.optimizer, num_steps, config.model.get("freeze_backbones", False))
  init_state = make_init_fn(model, tx, _example_batch(train_source))
  rng = jax.random.PRNGKey(config.seed)
  abstract_state = jax.eval_shape(init_state, rng)
  state_shardings = jax.tree.map(lambda _: repl, abstract_state)
  logging.info("Parameters: %s", f"{sum(x.size for x in jax.tree.leaves(abstract_state.params)):,}")

  # ---------------------------------------------------------------- Step
  train_step = jax.jit(make_train_step(model, tx, config.task),
                       in_shardings=(state_shardings, batch_shard),
                       out_shardings=(state_shardings, repl), donate_argnums=0)

  # ---------------------------------------------------------------- Checkpoint
  mngr = checkpointing.manager(os.path.join(os.path.abspath(workdir), "checkpoints"),
                               keep=config.train.keep_checkpoints)
  start_step, state = checkpointing.restore_latest(mngr, abstract_state, train_iter)
  if state is None:
    start_step = 0
    state = jax.jit(init_state, out_shardings=state_shardings)(rng)
    if config.get("init_from"):
      state = jax.device_put(init_from_converted(state, config.init_from, abstract_state),
                             state_shardings)
    logging.info("No checkpoint in %s: starting from step 0.", workdir)
  else:
    state = jax.device_put(state, state_shardings)
    logging.info("Resumed from the checkpoint at step %d.", start_step)

  # ---------------------------------------------------------------- Eval
  writer = metric_writers.MetricWriter(workdir)

  def run_eval(step):
    t0 = time.time()
    scores = evaluation.evaluate(
        lambda b: predict(state.params, state.batch_stats, b), eval_source, config.task,
        config.eval.batch_size, make_global, config.train.read_threads)
    path = evaluation.write_json(workdir, config.eval.split, step, scores)
    writer.write(step, {f"{config.eval.split}/{k}": v for k, v in scores.items()})
    logging.info("Eval at step %d on %s (%.1fs): %s -> %s", step, config.eval.split,
                 time.time() - t0, {k: round(v, 4) for k, v in scores.items()}, path)
    return scores

  # ---------------------------------------------------------------- Loop
  scores = None
  t_last, step_last = time.time(), start_step
  for step in range(start_step + 1, num_steps + 1):
    batch = make_global(next(train_iter))
    state, logs = train_step(state, batch)
    if step % config.train.log_every == 0 or step == num_steps:
      logs = jax.device_get(logs)
      if not all(math.isfinite(v) for v in logs.values()):
        raise FloatingPointError(f"non-finite training metrics at step {step}: {logs}; the last "
                                 f"good checkpoint is in {mngr.directory}")
      now = time.time()
      rate = (step - step_last) / (now - t_last)
      writer.write(step, {f"train/{k}": v for k, v in logs.items()} | {"train/steps_per_s": rate})
      logging.info("step %d/%d | loss %.4f | %.2f steps/s | ETA %s", step, num_steps,
                   logs["loss"], rate, _format_seconds((num_steps - step) / rate))
      t_last, step_last = now, step
    if step % config.train.checkpoint_every == 0 or step == num_steps:
      checkpointing.save(mngr, step, state, train_iter)
    if step % config.train.eval_every == 0 or step == num_steps:
      scores = run_eval(step)
      t_last = time.time()  # evaluation time is not training speed
  mngr.wait_until_finished()
  if scores is None:  # resumed a finished run: report its final state again
    scores = run_eval(int(jax.device_get(state.step)))
  writer.close()
  mngr.close()
  return scores


def evaluate_workdir(config, workdir, split):
  """Scores the newest readable checkpoint of `workdir` on `split`; writes JSON."""
  mesh = sharding.make_mesh(config.mesh)
  model, dataset, _, repl, make_global, predict = _setup_model(config, mesh)
  source = pipeline.window_source(dataset, split, config.input, config.model.modalities,
                                  train=False)
  tx = make_optimizer(config.optimizer, config.train.num_steps,
                      config.model.get("freeze_backbones", False))
  abstract_state = jax.eval_shape(make_init_fn(model, tx, _example_batch(source)),
                                  jax.random.PRNGKey(config.seed))
  mngr = checkpointing.manager(os.path.join(os.path.abspath(workdir), "checkpoints"), keep=None)
  step, state = checkpointing.restore_latest(mngr, abstract_state, None)
  if state is None:
    raise FileNotFoundError(f"no readable checkpoint in {workdir}/checkpoints: train first with "
                            f"--mode=train and the same --config and --workdir")
  state = jax.device_put(state, repl)
  scores = evaluation.evaluate(lambda b: predict(state.params, state.batch_stats, b), source,
                               config.task, config.eval.batch_size, make_global,
                               config.train.read_threads)
  path = evaluation.write_json(workdir, split, step, scores)
  logging.info("Eval of step %d on %s: %s -> %s", step, split, scores, path)
  mngr.close()
  return scores
