"""The variables a run starts from: random at the config's seed, then, with
`config.init_from`, the parameter groups of a converted checkpoint (written by
`python -m jmt_jax.weights.convert`) in place of the random ones."""

import jax
import jax.numpy as jnp
from absl import logging

from jmt_jax.models import variables as variables_lib
from jmt_jax.weights import torch_import


def replace_groups(variables, path):
  """`variables` with the parameter groups of the converted checkpoint at `path` in
  place of theirs; every replaced leaf must match in shape."""
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
  """{params, batch_stats} of a run's start on one device: those of the train state
  `training.train` starts from (which lays them out on the mesh itself)."""
  variables, _ = jax.jit(lambda rng: variables_lib.init(model, config, rng))(
      jax.random.PRNGKey(config.seed))
  if config.get("init_from"):
    variables = replace_groups(variables, config.init_from)
  return variables
