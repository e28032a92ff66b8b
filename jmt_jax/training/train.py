"""Training (`train_and_evaluate`: mesh, input, model, optimizer and state, step,
checkpoint, eval, loop, each built under its banner), and evaluation of a trained
workdir (`experiment.Evaluation`: no optimizer)."""

import json
import os
import time

import jax
import ml_collections
import optax
from absl import logging

from jmt_jax import tasks
from jmt_jax.data import pipeline
from jmt_jax.evaluation import scoring
from jmt_jax.models import model as model_lib
from jmt_jax.training import checkpointing
from jmt_jax.training import experiment
from jmt_jax.training import metric_writers
from jmt_jax.training import preemption
from jmt_jax.training import sharding
from jmt_jax.training import train_step as step_lib


CONFIG_FILE = "config.json"


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
  """The train state a run starts from: `experiment.starting_variables` and a fresh
  optimizer state, laid out by `state_shardings` (None: on the default device)."""
  init_state = step_lib.make_init_fn(model, tx, experiment.example_inputs(config))
  placed = {} if state_shardings is None else {"out_shardings": state_shardings}
  state = jax.jit(init_state, **placed)(jax.random.PRNGKey(config.seed))
  if config.get("init_from"):
    variables = experiment.init_from_converted(
        {"params": state.params, "batch_stats": state.batch_stats}, config.init_from)
    state = jax.device_put(state.replace(**variables), state_shardings)
  return state


def train_and_evaluate(config, workdir):
  """Trains `config` in `workdir`, resuming from its newest readable checkpoint.

  Returns the final evaluation scores on `config.eval.split`. Raises
  `preemption.Preempted` after saving a checkpoint when SIGTERM arrives, and
  FloatingPointError at a non-finite loss (that step's state is never saved).
  """
  os.makedirs(workdir, exist_ok=True)
  if jax.process_index() == 0:
    write_config(config, workdir)
  num_steps = config.train.num_steps
  global_batch_size = config.train.batch_size

  # ---------------------------------------------------------------- Mesh
  mesh = experiment.Mesh(config)
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
  train_iter = pipeline.train_iterator(
      train_source, global_batch_size // jax.process_count(), seed=config.seed,
      process_index=jax.process_index(), process_count=jax.process_count(),
      read_threads=config.train.read_threads, workers=read_workers(config))

  # ---------------------------------------------------------------- Model
  model = experiment.build_model(config)

  # ---------------------------------------------------------------- Optimizer and state
  tx = make_optimizer(config.optimizer, num_steps, config.model.get("freeze_backbones", False))
  abstract = jax.eval_shape(step_lib.make_init_fn(model, tx, experiment.example_inputs(config)),
                            jax.random.PRNGKey(config.seed))
  state_shardings = sharding.state_shardings(abstract, mesh.mesh, config.sharding)
  logging.info("Parameters: %s", f"{sum(x.size for x in jax.tree.leaves(abstract.params)):,}")

  # ---------------------------------------------------------------- Step
  train_step = jax.jit(
      step_lib.make_train_step(model, tx, config.task, config.train.grad_accum_steps,
                               data.from_embeddings),
      in_shardings=(state_shardings, mesh.batch_sharding),
      out_shardings=(state_shardings, mesh.replicated), donate_argnums=0)

  # ---------------------------------------------------------------- Checkpoint
  mngr = checkpointing.manager(os.path.join(os.path.abspath(workdir), "checkpoints"),
                               keep=config.train.keep_checkpoints)
  start_step, state = checkpointing.restore_latest(
      mngr, experiment.with_shardings(abstract, state_shardings), train_iter)
  if state is None:
    start_step, state = 0, initial_state(model, tx, config, state_shardings)
    logging.info("No checkpoint in %s: starting from step 0.", workdir)
  else:
    logging.info("Resumed from the checkpoint at step %d.", start_step)
  if data.cache is not None:
    data.cache.check_backbones(state.params, state.batch_stats)

  # ---------------------------------------------------------------- Eval
  predict = experiment.make_predict(model, config.task, data.from_embeddings)

  def evaluate(state, step):
    variables = {"params": state.params, "batch_stats": state.batch_stats}
    return scoring.evaluate_and_record(lambda b: predict(variables, b), eval_source, config,
                                       workdir, config.eval.split, step, mesh.make_global,
                                       writer)

  # ---------------------------------------------------------------- Loop
  writer = metric_writers.MetricWriter(workdir)
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
        checkpointing.save(mngr, step, state, train_iter)
        saved = step
      if stop.requested():
        check_finite()
        if saved != step:
          checkpointing.save(mngr, step, state, train_iter, force=True)
        mngr.wait_until_finished()
        raise preemption.Preempted(f"stopped by SIGTERM at step {step}, after saving a "
                                   f"checkpoint in {mngr.directory}; run the same command "
                                   f"to resume")
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


def write_config(config, workdir):
  """workdir/config.json: what `jmt_jax.inference.predict` and `jmt_jax.inference.export`
  rebuild the model from, so a trained workdir is usable without its config file."""
  path = os.path.join(workdir, CONFIG_FILE)
  with open(path + ".tmp", "w", encoding="utf-8") as f:
    f.write(config.to_json_best_effort(indent=2, sort_keys=True))
  os.replace(path + ".tmp", path)


def read_config(workdir):
  """The config `workdir` was trained with (see `write_config`)."""
  path = os.path.join(workdir, CONFIG_FILE)
  if not os.path.exists(path):
    raise FileNotFoundError(f"no {CONFIG_FILE} in {workdir}: is it a training workdir? "
                            f"(runs trained before config.json was written need --config)")
  with open(path, encoding="utf-8") as f:
    try:
      return ml_collections.ConfigDict(json.load(f))
    except json.JSONDecodeError as e:
      raise ValueError(f"{path}: not valid JSON ({e})") from None


def evaluate_workdir(config, workdir, split):
  """Scores the newest readable checkpoint of `workdir` on `split`; writes JSON."""
  run = experiment.Evaluation(config, workdir)
  return scoring.evaluate_and_record(run.predict, run.source(split), config, workdir, split,
                                     run.step, run.mesh.make_global)


def write_submission(config, workdir, split, out_path, sample_file="", per_video_dir=""):
  """The submission file(s) of `split` in the task's format (ABAW's CSV, and optionally
  per-video .txt files, for valence/arousal), predicted by the newest checkpoint of
  `workdir`. Returns the number of rows written."""
  task = tasks.get(config.task)
  if not hasattr(task, "write_submission"):
    raise ValueError(f"{task.name} models have no submission file: ABAW's format is for "
                     f"valence/arousal (Aff-Wild2) models")
  run = experiment.Evaluation(config, workdir)
  source = run.source(split)
  preds, labels = scoring.predict_split(run.predict, source, config.eval.batch_size,
                                        run.mesh.make_global, config.train.read_threads)
  if jax.process_index() != 0:
    return 0
  rows, recordings = task.write_submission(preds, labels, source.table, config, out_path,
                                           sample_file, per_video_dir)
  logging.info("Wrote %d rows for %d recordings of %s (step %d) to %s.", rows, recordings,
               split, run.step, out_path)
  return rows
