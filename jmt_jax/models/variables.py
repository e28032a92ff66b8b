"""A model's variables ({params, batch_stats}): made at random, their shapes alone, cast
for computing, and the model applied to a batch of inputs or of stored embeddings.

Parameters stay float32 wherever they are kept (train state, checkpoints, exports); a
model computing in bfloat16 gets bfloat16 copies (`cast`), BatchNorm statistics stay
float32.
"""

import jax
import jax.numpy as jnp

from jmt_jax.models import model as model_lib


def example_inputs(config):
  """A one-window batch of zeros with the model's input shapes."""
  return jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), model_lib.input_spec(config))


def init(model, config, rng):
  """({params, batch_stats}, the rng left for a train state) of a random start at `rng`."""
  init_rng, dropout_rng, state_rng = jax.random.split(rng, 3)
  variables = model.init({"params": init_rng, "dropout": dropout_rng}, example_inputs(config),
                         train=False)
  return {"params": variables["params"], "batch_stats": variables.get("batch_stats", {})}, state_rng


def abstract(model, config):
  """Shapes and dtypes of the model's {params, batch_stats}, computing nothing."""
  return jax.eval_shape(lambda rng: init(model, config, rng)[0], jax.random.PRNGKey(0))


def cast_floats(tree, dtype):
  return jax.tree.map(lambda x: x.astype(dtype) if jnp.issubdtype(x.dtype, jnp.floating) else x,
                      tree)


def cast(model, params, batch_stats):
  """The variables `model.apply` takes: parameters in the model's compute dtype."""
  return {"params": cast_floats(params, model.dtype), "batch_stats": batch_stats}


def apply(model, variables, batch, from_embeddings, **kwargs):
  """The model on `batch`: `fuse` on its stored backbone `embeddings` (a feature cache's
  windows) or the whole model on its inputs."""
  if from_embeddings:
    return model.apply(variables, batch["embeddings"], method=model.fuse, **kwargs)
  return model.apply(variables, batch, **kwargs)
