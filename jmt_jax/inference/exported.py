"""Run a model exported by `python -m jmt_jax.inference.export`, with JAX and numpy alone.

  from jmt_jax.inference import exported            # or copy this file and `import exported`
  model = exported.load("exported/demo")
  outputs = model({"video": clips, "audio": waves})   # shapes: model.signature["inputs"]

This module imports nothing else of jmt_jax (tests check it), so it runs where the
training code is not installed.
"""

import contextlib
import json
import os

import jax
import numpy as np
from jax import export as jax_export

MODEL = "model.jaxexport"
VARIABLES = "variables.npz"
SIGNATURE = "signature.json"
CONFIG = "config.json"


def flatten(tree, prefix=""):
  """{"a/b/c": array} of a nested dict of arrays."""
  out = {}
  for k, v in tree.items():
    if isinstance(v, dict):
      out.update(flatten(v, f"{prefix}{k}/"))
    else:
      out[f"{prefix}{k}"] = np.asarray(v)
  return out


def unflatten(flat):
  out = {}
  for key, value in flat.items():
    *path, leaf = key.split("/")
    node = out
    for p in path:
      node = node.setdefault(p, {})
    node[leaf] = value
  return out


@contextlib.contextmanager
def _damaged(path):
  """A file of the export that cannot be read, named in one line (ValueError)."""
  try:
    yield
  except Exception as e:  # pylint: disable=broad-except  # each reader fails in its own way
    raise ValueError(f"{path}: damaged or not written by jmt_jax.inference.export "
                     f"({type(e).__name__}); export the workdir again") from None


class ExportedModel:
  """The exported inference function with its weights: call it on a batch of windows."""

  def __init__(self, directory):
    paths = {name: os.path.join(directory, name) for name in (MODEL, VARIABLES, SIGNATURE, CONFIG)}
    missing = [p for p in paths.values() if not os.path.exists(p)]
    if missing:
      raise FileNotFoundError(f"{directory}: not a jmt_jax export (missing {missing})")
    with _damaged(paths[MODEL]), open(paths[MODEL], "rb") as f:
      self.exported = jax_export.deserialize(bytearray(f.read()))
    with _damaged(paths[VARIABLES]), np.load(paths[VARIABLES]) as z:
      self.variables = unflatten({k: z[k] for k in z.files})
    with _damaged(paths[SIGNATURE]), open(paths[SIGNATURE], encoding="utf-8") as f:
      self.signature = json.load(f)
    with _damaged(paths[CONFIG]), open(paths[CONFIG], encoding="utf-8") as f:
      self.config = json.load(f)

  def __call__(self, batch):
    """{output: numpy array} for `batch` {input: (B, ...) array} as the signature says."""
    inputs = self.signature["inputs"]
    if set(batch) != set(inputs):
      raise ValueError(f"inputs {sorted(batch)} given; the model takes {sorted(inputs)}")
    arrays = {}
    for name, spec in inputs.items():
      x = np.asarray(batch[name])
      if list(x.shape[1:]) != spec["shape"][1:] or x.dtype != np.dtype(spec["dtype"]):
        raise ValueError(f"input {name!r}: {x.dtype}{list(x.shape)}, expected "
                         f"{spec['dtype']}[B, {', '.join(map(str, spec['shape'][1:]))}]")
      arrays[name] = x
    return jax.tree.map(np.asarray, self.exported.call(self.variables, arrays))


def load(directory):
  return ExportedModel(directory)
