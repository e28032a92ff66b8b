"""Device mesh and array placement. Which axis shards what is config data
(`config.mesh`, `config.sharding`), never model code.

The batch is split over every mesh axis. Each train-state array takes the first rule of
`config.sharding.rules` whose pattern `re.search`es its path (e.g.
`opt_state/.../mu/video_backbone/layer4_1/conv2/kernel`):
  "replicate": a full copy on every device;
  "fsdp": fully sharded: its largest dimension divisible by the `fsdp` mesh axis is split
    over that axis (arrays under `min_size` elements, or with no such dimension, are
    replicated). XLA gathers the parameters where a layer needs them.
"""

import re

import jax
import numpy as np
from absl import logging
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P


def make_mesh(mesh_config):
  """A mesh from {axis_name: size}; one size may be -1 for 'all remaining devices'."""
  names = tuple(mesh_config.keys())
  sizes = list(mesh_config.values())
  if sizes.count(-1) > 1:
    raise ValueError(f"config.mesh={dict(mesh_config)}: at most one axis may be -1")
  known = int(np.prod([s for s in sizes if s != -1]))
  if jax.device_count() % known:
    raise ValueError(f"config.mesh={dict(mesh_config)} does not divide {jax.device_count()} devices")
  sizes = [jax.device_count() // known if s == -1 else s for s in sizes]
  return jax.make_mesh(tuple(sizes), names, axis_types=(jax.sharding.AxisType.Auto,) * len(names))


def _fsdp_spec(shape, axis, axis_size, min_size):
  if axis_size == 1 or int(np.prod(shape, dtype=np.int64)) < min_size:
    return P()
  dims = sorted((d for d in range(len(shape)) if shape[d] % axis_size == 0),
                key=lambda d: -shape[d])
  if not dims:
    return P()
  spec = [None] * len(shape)
  spec[dims[0]] = axis
  return P(*spec)


def state_shardings(abstract_state, mesh, sharding_config):
  """A NamedSharding per leaf of `abstract_state`, by the rules of `sharding_config`."""
  rules = [(re.compile(pattern), how) for pattern, how in sharding_config.rules]
  axis = sharding_config.fsdp_axis
  axis_size = mesh.shape.get(axis, 1)
  counts = {}

  def place(path, leaf):
    name = jax.tree_util.keystr(path, simple=True, separator="/")
    how = next((h for pattern, h in rules if pattern.search(name)), "replicate")
    if how == "replicate":
      spec = P()
    elif how == "fsdp":
      spec = _fsdp_spec(leaf.shape, axis, axis_size, sharding_config.min_size)
    else:
      raise ValueError(f"config.sharding.rules: unknown placement {how!r} for {name}; use "
                       f"'replicate' or 'fsdp'")
    counts[spec != P()] = counts.get(spec != P(), 0) + 1
    return NamedSharding(mesh, spec)

  shardings = jax.tree_util.tree_map_with_path(place, abstract_state)
  total, per_device = state_bytes(abstract_state, shardings)
  logging.info("Train state: %d arrays sharded over %r, %d replicated; %.1f MiB per device "
               "of %.1f MiB.", counts.get(True, 0), axis, counts.get(False, 0),
               per_device / 2**20, total / 2**20)
  return shardings


def state_bytes(abstract_state, shardings):
  """(bytes of the whole state, bytes one device holds) under `shardings`."""
  leaves = jax.tree.leaves(abstract_state)
  total = sum(int(np.prod(x.shape, dtype=np.int64)) * x.dtype.itemsize for x in leaves)
  per_device = sum(int(np.prod(s.shard_shape(x.shape), dtype=np.int64)) * x.dtype.itemsize
                   for x, s in zip(leaves, jax.tree.leaves(shardings)))
  return total, per_device


def batch_sharding(mesh):
  """Leading (batch) axis split over every mesh axis: pure data parallelism."""
  return NamedSharding(mesh, P(mesh.axis_names))


def replicated(mesh):
  return NamedSharding(mesh, P())


def global_batch(local_batch, sharding):
  """A global jax.Array from this process's part of the batch."""
  return jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, x), local_batch)


class Mesh:
  """The device mesh of `config.mesh` and how batches are laid out on it."""

  def __init__(self, config):
    self.mesh = make_mesh(config.mesh)
    self.batch_sharding = batch_sharding(self.mesh)
    self.replicated = replicated(self.mesh)

  def make_global(self, local_batch):
    return global_batch(local_batch, self.batch_sharding)


def with_shardings(abstract, shardings):
  """`abstract` (ShapeDtypeStructs) with each leaf's sharding set."""
  return jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
                      abstract, shardings)
