"""Training and evaluation of a jmt_jax model: one linear function per mode."""

import json
import os
import time

import jax
import jax.numpy as jnp
import ml_collections
import optax
from absl import logging

from jmt_jax import tasks
from jmt_jax.data import features
from jmt_jax.data import pipeline
from jmt_jax.evaluation import abaw
from jmt_jax.evaluation import plots
from jmt_jax.evaluation import scoring
from jmt_jax.models import model as model_lib
from jmt_jax.training import checkpointing
from jmt_jax.training import metric_writers
from jmt_jax.training import preemption
from jmt_jax.training import sharding
from jmt_jax.training import train_step as step_lib
from jmt_jax.weights import torch_import


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


def init_from_converted(state, path, abstract_state):
  """`state` with the parameter groups of the converted checkpoint at `path` replacing
  the random ones; every replaced leaf must match in shape."""
  variables, groups = torch_import.load(path)
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


def read_workers(config):
  """Grain worker processes of the training input (config.train.read_workers; -1: the
  default for this host's cores and backend)."""
  workers = config.train.get("read_workers", -1)
  return pipeline.default_workers() if workers < 0 else workers


def _format_seconds(s):
  return f"{int(s // 60)}m{int(s % 60):02d}s"


def example_inputs(config):
  """A one-window batch of zeros with the model's input shapes, for initialisation."""
  return jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), pipeline.input_spec(config))


def _with_shardings(abstract, shardings):
  return jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
                      abstract, shardings)


class Setup:
  """What training and evaluation share: mesh, model, data, train-state layout, prediction."""

  def __init__(self, config, workdir, with_cache=True, with_data=True):
    self.workdir = workdir
    self.mesh = sharding.make_mesh(config.mesh)
    self.model = model_lib.build_model(config.model, config.compute_dtype,
                                       *pipeline.model_inputs(config))
    # Prediction on a user's recording needs neither the dataset nor its cache.
    self.dataset = pipeline.open_dataset(config.data) if with_data else None
    self.config = config
    if config.task == "pain" and with_data:
      self._check_classes()
    self.cache = (features.open_cache(config) if with_cache and config.get("feature_cache")
                  else None)
    self.batch_shard = sharding.batch_sharding(self.mesh)
    self.replicated = sharding.replicated(self.mesh)
    self.tx = make_optimizer(config.optimizer, config.train.num_steps,
                             config.model.get("freeze_backbones", False))
    self.init_state = step_lib.make_init_fn(self.model, self.tx, example_inputs(config))
    abstract = jax.eval_shape(self.init_state, jax.random.PRNGKey(config.seed))
    self.state_shardings = sharding.state_shardings(abstract, self.mesh, config.sharding)
    self.abstract_state = _with_shardings(abstract, self.state_shardings)
    model, keys = self.model, (*tasks.get(config.task).label_keys, "recording", "frame")

    @jax.jit
    def predict(params, batch_stats, batch):
      out = model.apply(step_lib.inference_variables(model, params, batch_stats), batch,
                        train=False)
      return out, {k: batch[k] for k in keys}

    self.predict = predict

  def _check_classes(self):
    config = self.config
    levels = sorted({int(p) for s in self.dataset.splits.values()
                     for p in s.table.pain[s.recordings]})
    needed = len(config.input.pain_classes) if config.input.pain_classes else levels[-1] + 1
    if config.model.head.num_classes != needed:
      raise ValueError(f"config.model.head.num_classes={config.model.head.num_classes} but the "
                       f"labels need {needed} (pain_classes={list(config.input.pain_classes)}, "
                       f"levels in the data: {levels})")

  def source(self, split, train):
    """Windows of `split`, read from the feature cache when the config names one."""
    src = pipeline.window_source(self.dataset, split, self.config.input,
                                 self.config.model.modalities, train)
    return src if self.cache is None else self.cache.source(split, src)

  def make_global(self, local_batch):
    return sharding.global_batch(local_batch, self.batch_shard)

  def evaluate(self, state, split, source, step, writer=None):
    t0 = time.time()
    scores, details = scoring.evaluate(
        lambda b: self.predict(state.params, state.batch_stats, b), source, self.config,
        self.make_global)
    path = scoring.write_json(self.workdir, split, step, scores)
    scoring.write_recording_stats(self.workdir, split, step, self.config.task, details)
    if writer is not None:
      writer.write(step, {f"{split}/{k}": v for k, v in scores.items()})
    if jax.process_index() == 0:
      self._plot(split, details)
    logging.info("Eval at step %d on %s (%.1fs): %s -> %s", step, split, time.time() - t0,
                 {k: round(v, 4) for k, v in scores.items()}, path)
    return scores


  def _plot(self, split, details):
    """workdir/plots/: training curves so far, and this evaluation's trajectories (valence/
    arousal) or confusion matrix (pain); each file shows the latest evaluation."""
    out = os.path.join(self.workdir, "plots")
    plots.save(plots.training_curves(plots.read_metrics(self.workdir)),
               os.path.join(out, "curves.png"))
    if "predictions" in details:
      fig = plots.trajectories(details["predictions"], details["targets"])
      plots.save(fig, os.path.join(out, f"{split}_trajectories.png"))
    else:
      fig = plots.confusion_matrix(details["logits"], details["labels"],
                                   class_names(self.config))
      plots.save(fig, os.path.join(out, f"{split}_confusion.png"))


def class_names(config):
  """Names of a pain model's output classes: the pain levels they stand for."""
  levels = config.input.pain_classes or range(config.model.head.num_classes)
  return [f"level {int(p)}" for p in levels]


def initial_state(setup):
  """The train state a run starts from: random, then `config.init_from` if set."""
  config = setup.config
  state = jax.jit(setup.init_state, out_shardings=setup.state_shardings)(
      jax.random.PRNGKey(config.seed))
  if config.get("init_from"):
    state = jax.device_put(init_from_converted(state, config.init_from, setup.abstract_state),
                           setup.state_shardings)
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
  setup = Setup(config, workdir)
  if global_batch_size % (jax.device_count() * config.train.grad_accum_steps):
    raise ValueError(f"config.train.batch_size={global_batch_size} must split into "
                     f"config.train.grad_accum_steps={config.train.grad_accum_steps} "
                     f"micro-batches divisible by the {jax.device_count()} devices")
  logging.info("Mesh %s over %d devices in %d processes.", dict(setup.mesh.shape),
               jax.device_count(), jax.process_count())

  # ---------------------------------------------------------------- Input
  train_source = setup.source("train", train=True)
  eval_source = setup.source(config.eval.split, train=False)
  logging.info("Train: %s. Eval (%s): %s.", train_source, config.eval.split, eval_source)
  train_iter = pipeline.train_iterator(
      train_source, global_batch_size // jax.process_count(), seed=config.seed,
      process_index=jax.process_index(), process_count=jax.process_count(),
      read_threads=config.train.read_threads, workers=read_workers(config))

  # ---------------------------------------------------------------- Model and optimizer
  logging.info("Parameters: %s", f"{sum(x.size for x in jax.tree.leaves(setup.abstract_state.params)):,}")
  train_step = jax.jit(
      step_lib.make_train_step(setup.model, setup.tx, config.task,
                               config.train.grad_accum_steps),
      in_shardings=(setup.state_shardings, setup.batch_shard),
      out_shardings=(setup.state_shardings, setup.replicated), donate_argnums=0)

  # ---------------------------------------------------------------- Checkpoint
  mngr = checkpointing.manager(os.path.join(os.path.abspath(workdir), "checkpoints"),
                               keep=config.train.keep_checkpoints)
  start_step, state = checkpointing.restore_latest(mngr, setup.abstract_state, train_iter)
  if state is None:
    start_step, state = 0, initial_state(setup)
    logging.info("No checkpoint in %s: starting from step 0.", workdir)
  else:
    logging.info("Resumed from the checkpoint at step %d.", start_step)
  if setup.cache is not None:
    setup.cache.check_backbones(state)

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
      batch = setup.make_global(next(train_iter))
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
        scores = setup.evaluate(state, config.eval.split, eval_source, step, writer)
        t_last = time.time()  # evaluation time is not training speed
    mngr.wait_until_finished()
    if scores is None:  # resumed a finished run: report its final state again
      scores = setup.evaluate(state, config.eval.split, eval_source,
                              int(jax.device_get(state.step)), writer)
  finally:
    stop.close()
    writer.close()
    mngr.close()
  return scores


def write_config(config, workdir):
  """workdir/config.json: what `jmt_jax.inference.predict` and `jmt_jax.inference.export` rebuild the model
  from, so a trained workdir is usable without its config file."""
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


def restore_for_eval(config, workdir, with_data=True):
  """(setup, step, state) of the newest readable checkpoint of `workdir`."""
  setup = Setup(config, workdir, with_cache=with_data, with_data=with_data)
  mngr = checkpointing.manager(os.path.join(os.path.abspath(workdir), "checkpoints"), keep=None)
  step, state = checkpointing.restore_latest(mngr, setup.abstract_state, None)
  mngr.close()
  if state is None:
    raise FileNotFoundError(f"no readable checkpoint in {workdir}/checkpoints: train first with "
                            f"--mode=train and the same --config and --workdir")
  if setup.cache is not None:
    setup.cache.check_backbones(state)
  return setup, step, state


def evaluate_workdir(config, workdir, split):
  """Scores the newest readable checkpoint of `workdir` on `split`; writes JSON."""
  setup, step, state = restore_for_eval(config, workdir)
  return setup.evaluate(state, split, setup.source(split, train=False), step)


def write_submission(config, workdir, split, out_path, sample_file="", per_video_dir=""):
  """The ABAW submission CSV (and optionally per-video .txt files) of `split`, predicted
  by the newest checkpoint of `workdir` and post-processed as `config.eval.smoothing`
  says. Returns the number of CSV rows."""
  if config.task != "valence_arousal":
    raise ValueError("submission files are for valence/arousal (Aff-Wild2) models")
  setup, step, state = restore_for_eval(config, workdir)
  source = setup.source(split, train=False)
  preds, labels = scoring.predict_split(
      lambda b: setup.predict(state.params, state.batch_stats, b),
      source, config.eval.batch_size, setup.make_global, config.train.read_threads)
  predictions, _ = abaw.per_video(source.table, preds, labels)
  predictions = abaw.postprocess(predictions, dict(config.eval.smoothing))
  if jax.process_index() != 0:
    return 0
  frame_list = abaw.read_sample_file(sample_file) if sample_file else None
  rows = abaw.write_submission(out_path, predictions, frame_list)
  if per_video_dir:
    abaw.write_per_video_txt(per_video_dir, predictions)
  logging.info("Wrote %d rows for %d videos of %s (step %d) to %s.", rows, len(predictions),
               split, step, out_path)
  return rows
