"""The parts of an experiment that need more than one layer below: its input (`Data`),
the jitted prediction over batches of windows (`make_predict`), and a trained workdir
ready to be scored (`Evaluation`).

Training builds its parts in the open (`training.train.train_and_evaluate`): mesh,
input, model, optimizer and state, step, checkpoint, eval. Evaluating a workdir builds
the mesh, the data, the model and its trained variables (no optimizer state);
prediction, export and feature extraction build only the model and its variables.
"""

from jmt_jax import tasks
from jmt_jax import workdir as workdir_lib
from jmt_jax.data import checksums
from jmt_jax.data import pipeline
from jmt_jax.features import cache
from jmt_jax.models import model as model_lib
from jmt_jax.models import variables as variables_lib
from jmt_jax.runtime import compiler
from jmt_jax.runtime import sharding


class Data:
  """The dataset of `config.data`, its labels checked against the task, and (when the
  config names one) the feature cache its windows are read from."""

  def __init__(self, config):
    self.config = config
    self.dataset = pipeline.open_dataset(config.data)
    tasks.get(config.task).check_labels(self.dataset, config)
    self.cache = cache.FeatureCache(config) if config.get("feature_cache") else None
    if self.cache is None and any(model_lib.chunked_member(config.model.backbones[m])
                                  for m in config.model.modalities):
      raise ValueError(model_lib.CHUNKED_NEEDS_CACHE)

  @property
  def from_embeddings(self):
    """Whether the windows hold backbone embeddings (`model.fuse`'s input), not inputs."""
    return self.cache is not None

  def source(self, split, train):
    """The windows of `split`, read from the feature cache when there is one."""
    src = self.inputs(split, train)
    return src if self.cache is None else self.cache.source(split, src)

  def record(self, splits):
    """What a run trained on this data keeps of it (`workdir.write_inputs`): the
    recordings of each of `splits` (a cross-validation fold's partition) and the stored
    files' checksums."""
    names = {s: [self.dataset.splits[s].table.names[int(i)]
                 for i in self.dataset.splits[s].recordings] for s in splits}
    return {"recordings": names, "checksums": checksums.directory(self.dataset.directory)}

  def inputs(self, split, train):
    """The windows of `split` with the inputs themselves, never a cache's embeddings."""
    return pipeline.window_source(self.dataset, split, self.config.input,
                                  self.config.model.modalities, train)


def make_predict(model, task_name, from_embeddings=False):
  """Jitted (variables, batch) -> (outputs, labels): the whole model on a batch of
  windows (or `fuse` on their embeddings), and the batch's label keys with each clip's
  `recording` and `frame`."""
  keys = (*tasks.get(task_name).label_keys, "recording", "frame")

  def predict(variables, batch):
    cast = variables_lib.cast(model, variables["params"], variables["batch_stats"])
    return (variables_lib.apply(model, cast, batch, from_embeddings),
            {k: batch[k] for k in keys})

  return compiler.jit(predict, fusion_only=from_embeddings)


class Evaluation:
  """The newest checkpoint of `workdir` with what scoring it needs: mesh, data, model
  and its trained variables (no optimizer state)."""

  def __init__(self, config, workdir):
    self.mesh = sharding.Mesh(config)
    self.data = Data(config)
    self.model = model_lib.build_model(config)
    self.step, self.variables = workdir_lib.restore_variables(config, workdir, self.model,
                                                              self.mesh)
    if self.data.cache is not None:
      self.data.cache.check_backbones(self.variables["params"], self.variables["batch_stats"])
    predict = make_predict(self.model, config.task, self.data.from_embeddings)
    self.predict = lambda batch: predict(self.variables, batch)

  def source(self, split):
    return self.data.source(split, train=False)
