"""Device mesh and array placement. Which axis shards what is config data
(`config.mesh`), never model code."""

import jax
import numpy as np
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


def batch_sharding(mesh):
  """Leading (batch) axis split over every mesh axis: pure data parallelism."""
  return NamedSharding(mesh, P(mesh.axis_names))


def replicated(mesh):
  return NamedSharding(mesh, P())


def global_batch(local_batch, sharding):
  """A global jax.Array from this process's part of the batch."""
  return jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, x), local_batch)
