"""The parts a run is built from, each built only by those who need it.

Training builds all of them in the open (`train.train_and_evaluate`); evaluating a
workdir builds the mesh, the data, the model and its trained variables; prediction,
export and feature extraction build the model and its variables (parameters and
BatchNorm statistics, never the optimizer state).
"""

import os

import jax
import jax.numpy as jnp
from absl import logging

from jmt_jax import tasks
from jmt_jax.data import features
from jmt_jax.data import pipeline
from jmt_jax.models import model as model_lib
from jmt_jax.training import checkpointing
from jmt_jax.training import sharding
from jmt_jax.training import train_step as step_lib
from jmt_jax.weights import torch_import


def build_model(config):
  return model_lib.build_model(config.model, config.compute_dtype,
                               *pipeline.model_inputs(config))


def example_inputs(config):
  """A one-window batch of zeros with the model's input shapes, for initialisation."""
  return jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), pipeline.input_spec(config))


def with_shardings(abstract, shardings):
  return jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
                      abstract, shardings)


class Mesh:
  """The device mesh of `config.mesh` and how batches are laid out on it."""

  def __init__(self, config):
    self.mesh = sharding.make_mesh(config.mesh)
    self.batch_sharding = sharding.batch_sharding(self.mesh)
    self.replicated = sharding.replicated(self.mesh)

  def make_global(self, local_batch):
    return sharding.global_batch(local_batch, self.batch_sharding)


class Data:
  """The dataset of `config.data`, its labels checked against the task, and (when the
  config names one and `with_cache`) the feature cache its windows are read from."""

  def __init__(self, config, with_cache=True):
    self.config = config
    self.dataset = pipeline.open_dataset(config.data)
    tasks.get(config.task).check_labels(self.dataset, config)
    self.cache = (features.open_cache(config) if with_cache and config.get("feature_cache")
                  else None)

  @property
  def from_embeddings(self):
    """Whether the windows hold backbone embeddings (`model.fuse`'s input), not inputs."""
    return self.cache is not None

  def source(self, split, train):
    src = pipeline.window_source(self.dataset, split, self.config.input,
                                 self.config.model.modalities, train)
    return src if self.cache is None else self.cache.source(split, src)


def init_from_converted(variables, path):
  """`variables` with the parameter groups of the converted checkpoint at `path` in
  place of the random ones; every replaced leaf must match in shape."""
  converted, groups = torch_import.load(path)
  out = {c: dict(variables[c]) for c in ("params", "batch_stats")}
  for collection, target in out.items():
    for g, tree in converted.get(collection, {}).items():
      if g not in variables[collection]:
        raise ValueError(f"{path}: parameter group {g!r} is not in this model "
                         f"(it has {sorted(variables[collection])})")
      ref = variables[collection][g]
      if jax.tree.map(lambda x: x.shape, ref) != jax.tree.map(lambda x: x.shape, tree):
        raise ValueError(f"{path}: parameter group {g!r} does not fit this model's config "
                         f"(converted for another config?)")
      target[g] = jax.tree.map(lambda x, r: jnp.asarray(x, r.dtype), tree, ref)
  logging.info("Initialised %s from the converted checkpoint %s.", sorted(groups), path)
  return out


def starting_variables(model, config):
  """The variables a run starts from: random at `config.seed`, then `config.init_from`
  (those of the train state `train.initial_state` builds)."""
  init = lambda rng: step_lib.init_variables(model, example_inputs(config), rng)
  variables, _ = jax.jit(init)(jax.random.PRNGKey(config.seed))
  if config.get("init_from"):
    variables = init_from_converted(variables, config.init_from)
  return variables


def make_predict(model, task_name, from_embeddings=False):
  """Jitted (variables, batch) -> (outputs, labels): the whole model on a batch of
  windows (or `fuse` on their embeddings), and the batch's label keys with each clip's
  `recording` and `frame`."""
  keys = (*tasks.get(task_name).label_keys, "recording", "frame")

  @jax.jit
  def predict(variables, batch):
    variables = step_lib.inference_variables(model, variables["params"],
                                             variables["batch_stats"])
    return step_lib.apply_model(model, variables, batch, from_embeddings), {
        k: batch[k] for k in keys}

  return predict


def abstract_variables(model, config):
  """Shapes and dtypes of the model's {params, batch_stats}."""
  init = lambda rng: step_lib.init_variables(model, example_inputs(config), rng)[0]
  return jax.eval_shape(init, jax.random.PRNGKey(0))


def restore_variables(config, workdir, model, mesh=None):
  """(step, {params, batch_stats}) of the newest readable checkpoint of `workdir`, laid
  out as training lays them out on `mesh` (one device when None); the optimizer state is
  not read."""
  abstract = abstract_variables(model, config)
  if mesh is None:
    device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    shardings = jax.tree.map(lambda _: device, abstract)
  else:
    shardings = sharding.state_shardings(abstract, mesh.mesh, config.sharding)
  mngr = checkpointing.manager(os.path.join(os.path.abspath(workdir), "checkpoints"), keep=None)
  step, variables = checkpointing.restore_latest(mngr, with_shardings(abstract, shardings),
                                                 None, partial=True)
  mngr.close()
  if variables is None:
    raise FileNotFoundError(f"no readable checkpoint in {workdir}/checkpoints: train first with "
                            f"--mode=train and the same --config and --workdir")
  return step, variables


class Evaluation:
  """The newest checkpoint of `workdir` with what scoring it needs: mesh, data, model
  and its trained variables (no optimizer state)."""

  def __init__(self, config, workdir):
    self.mesh = Mesh(config)
    self.data = Data(config)
    self.model = build_model(config)
    self.step, self.variables = restore_variables(config, workdir, self.model, self.mesh)
    if self.data.cache is not None:
      self.data.cache.check_backbones(self.variables["params"], self.variables["batch_stats"])
    predict = make_predict(self.model, config.task, self.data.from_embeddings)
    self.predict = lambda batch: predict(self.variables, batch)

  def source(self, split):
    return self.data.source(split, train=False)
