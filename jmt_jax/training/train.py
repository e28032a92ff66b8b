"""Training: `train_and_evaluate` builds the mesh, the input, the model, the optimizer and
state, the step, the checkpoint and the eval, each under its banner, then runs the loop."""

import time

import jax
import optax
from absl import logging

from jmt_jax import experiment
from jmt_jax import workdir as workdir_lib
from jmt_jax.data import pipeline
from jmt_jax.evaluation import scoring
from jmt_jax.models import model as model_lib
from jmt_jax.runtime import compiler
from jmt_jax.runtime import preemption
from jmt_jax.runtime import sharding
from jmt_jax.training import metric_writers
from jmt_jax.training import train_step as step_lib
from jmt_jax.weights import init_from


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


def read_workers(config):
  """Grain worker processes of the training input (config.train.read_workers; -1: the
  default for this host's cores and backend)."""
  workers = config.train.get("read_workers", -1)
  return pipeline.default_workers() if workers < 0 else workers


def _format_seconds(s):
  return f"{int(s // 60)}m{int(s % 60):02d}s"


def initial_state(model, tx, config, state_shardings):
  """The train state a run starts from: the variables of `init_from.starting_variables`
  and a fresh optimizer state, made in place by `state_shardings` (None: on the default
  device)."""
  placed = {} if state_shardings is None else {"out_shardings": state_shardings}
  state = jax.jit(step_lib.make_init_fn(model, tx, config), **placed)(
      jax.random.PRNGKey(config.seed))
  if config.get("init_from"):
    variables = init_from.replace_groups(
        {"params": state.params, "batch_stats": state.batch_stats}, config.init_from)
    state = jax.device_put(state.replace(**variables), state_shardings)
  return state


def train_and_evaluate(config, workdir):
  """Trains `config` in `workdir`, resuming from its newest readable checkpoint.

  Returns the final evaluation scores on `config.eval.split`. Refuses (ValueError) a
  workdir trained with another config or in use by another training process. Raises
  `preemption.Preempted` after saving a checkpoint when SIGTERM or Ctrl-C arrives, and
  FloatingPointError at a non-finite loss (that step's state is never saved).
  """
  workdir_lib.check_config(config, workdir)
  workdir_lib.check_keep(config.train.keep_checkpoints)
  with workdir_lib.training_lock(workdir):
    return _train_and_evaluate(config, workdir)


def _train_and_evaluate(config, workdir):
  num_steps = config.train.num_steps
  global_batch_size = config.train.batch_size

  # ---------------------------------------------------------------- Mesh
  mesh = sharding.Mesh(config)
  if global_batch_size % (jax.device_count() * config.train.grad_accum_steps):
    raise ValueError(f"config.train.batch_size={global_batch_size} must split into "
                     f"config.train.grad_accum_steps={config.train.grad_accum_steps} "
                     f"micro-batches divisible by the {jax.device_count()} devices")
  logging.info("Mesh %s over %d devices in %d processes.", dict(mesh.mesh.shape),
               jax.device_count(), jax.process_count())

  # ---------------------------------------------------------------- Input
  data = experiment.Data(config)
  train_source = data.source("train", train=True)
  eval_source = data.source(config.eval.split, train=False)
  logging.info("Train: %s. Eval (%s): %s.", train_source, config.eval.split, eval_source)
  inputs = data.record(("train", config.eval.split))
  workdir_lib.check_inputs(workdir, inputs)
  train_iter = pipeline.train_iterator(
      train_source, global_batch_size // jax.process_count(), seed=config.seed,
      process_index=jax.process_index(), process_count=jax.process_count(),
      read_threads=config.train.read_threads, workers=read_workers(config))

  # ---------------------------------------------------------------- Model
  model = model_lib.build_model(config)

  # ---------------------------------------------------------------- Optimizer and state
  tx = make_optimizer(config.optimizer, num_steps, config.model.get("freeze_backbones", False))
  abstract = jax.eval_shape(step_lib.make_init_fn(model, tx, config),
                            jax.random.PRNGKey(config.seed))
  state_shardings = sharding.state_shardings(abstract, mesh.mesh, config.sharding)
  logging.info("Parameters: %s", f"{sum(x.size for x in jax.tree.leaves(abstract.params)):,}")

  # ---------------------------------------------------------------- Step
  train_step = compiler.jit(
      step_lib.make_train_step(model, tx, config.task, config.train.grad_accum_steps,
                               data.from_embeddings),
      fusion_only=data.from_embeddings, in_shardings=(state_shardings, mesh.batch_sharding),
      out_shardings=(state_shardings, mesh.replicated), donate_argnums=0)

  # ---------------------------------------------------------------- Checkpoint
  mngr = workdir_lib.checkpoints(workdir, keep=config.train.keep_checkpoints)
  start_step, state = workdir_lib.restore_latest(
      mngr, sharding.with_shardings(abstract, state_shardings), train_iter, set_aside=True)
  if state is None:
    start_step, state = 0, initial_state(model, tx, config, state_shardings)
    logging.info("No checkpoint in %s: starting from step 0.", workdir)
  else:
    logging.info("Resumed from the checkpoint at step %d.", start_step)
  if data.cache is not None:
    data.cache.check_backbones(state.params, state.batch_stats)
  if jax.process_index() == 0:  # the run is accepted: the workdir is its from here on
    workdir_lib.write_config(config, workdir)
    workdir_lib.write_inputs(workdir, inputs)
    workdir_lib.record_environment(workdir)

  # ---------------------------------------------------------------- Eval
  writer = metric_writers.MetricWriter(workdir)  # training's metrics and the evaluations'
  predict = experiment.make_predict(model, config.task, data.from_embeddings)

  def evaluate(state, step):
    variables = {"params": state.params, "batch_stats": state.batch_stats}
    return scoring.evaluate_and_record(lambda b: predict(variables, b), eval_source, config,
                                       workdir, config.eval.split, step, mesh.make_global,
                                       writer)

  # ---------------------------------------------------------------- Loop
  stop = preemption.StopRequests()
  scores, saved = None, start_step
  unchecked = None  # (step, logs) of the newest step whose loss is not yet known finite

  def check_finite():
    nonlocal unchecked
    if unchecked is not None and not bool(jax.device_get(unchecked[1]["finite"])):
      bad_step, logs = unchecked
      raise FloatingPointError(
          f"non-finite loss at step {bad_step} (loss {float(jax.device_get(logs['loss']))}); "
          f"stopped without saving it. The last good checkpoint (step {saved}) is in "
          f"{mngr.directory}: lower the learning rate or check the inputs, then rerun.")
    unchecked = None

  try:
    t_last, step_last = time.time(), start_step
    for step in range(start_step + 1, num_steps + 1):
      batch = mesh.make_global(next(train_iter))
      state, logs = train_step(state, batch)
      check_finite()  # the previous step's; this one keeps running meanwhile
      unchecked = (step, logs)
      if step % config.train.log_every == 0 or step == num_steps:
        check_finite()
        logs = jax.device_get(logs)
        now = time.time()
        rate = (step - step_last) / (now - t_last)
        writer.write(step, {f"train/{k}": v for k, v in logs.items() if k != "finite"}
                     | {"train/steps_per_s": rate})
        logging.info("step %d/%d | loss %.4f | %.2f steps/s | ETA %s", step, num_steps,
                     logs["loss"], rate, _format_seconds((num_steps - step) / rate))
        t_last, step_last = now, step
      if step % config.train.checkpoint_every == 0 or step == num_steps:
        check_finite()
        workdir_lib.save(mngr, step, state, train_iter)
        saved = step
      if stop.requested():
        check_finite()
        if saved != step:
          workdir_lib.save(mngr, step, state, train_iter, force=True)
        mngr.wait_until_finished()
        raise preemption.Preempted(f"stopped by {stop.requested_by} at step {step}, after "
                                   f"saving a checkpoint in {mngr.directory}; run the same "
                                   f"command to resume")
      if step % config.train.eval_every == 0 or step == num_steps:
        scores = evaluate(state, step)
        t_last = time.time()  # evaluation time is not training speed
    mngr.wait_until_finished()
    if scores is None:  # resumed a finished run: report its final state again
      scores = evaluate(state, int(jax.device_get(state.step)))
  finally:
    stop.close()
    writer.close()
    mngr.close()
  return scores
