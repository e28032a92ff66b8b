"""The train state and the jit-able optimizer step.

Losses are written as functions of sums over a batch's examples (each task's
`loss_sums`, jmt_jax.tasks), so that
a batch split into micro-batches for gradient accumulation gets exactly the gradient
of the whole batch's loss, even for CCC, which is not a mean over examples:

  pass 1 (forward only) adds up every micro-batch's sums S;
  pass 2 takes, per micro-batch, the gradient of <dL/dS, sums(micro-batch)>,
  which adds up to dL/dS . dS/dparams = dL/dparams.

The price is one extra forward pass per micro-batch. BatchNorm in training mode (when
backbones are fine-tuned) still sees micro-batch statistics, as in any accumulation.
"""

from typing import Any

import flax
import jax
import jax.numpy as jnp
import optax

from jmt_jax import tasks
from jmt_jax.models import model as model_lib
from jmt_jax.models import variables as variables_lib


@flax.struct.dataclass
class TrainState:
  step: jax.Array
  params: Any
  batch_stats: Any
  opt_state: Any
  rng: jax.Array  # raw uint32 key data, so that checkpoints hold plain arrays


def make_init_fn(model, tx, config):
  """rng -> the TrainState of a random start (`variables.init`) with a fresh optimizer state."""
  def init_state(rng):
    start, state_rng = variables_lib.init(model, config, rng)
    return TrainState(step=jnp.zeros((), jnp.int32), params=start["params"],
                      batch_stats=start["batch_stats"], opt_state=tx.init(start["params"]),
                      rng=state_rng)
  return init_state


def _microbatches(batch, n):
  """(n, B/n, ...) micro-batches; micro-batch j holds rows j, j+n, ..., so that each one
  is spread over every device the batch is sharded over."""
  def split(x):
    if x.shape[0] % n:
      raise ValueError(f"batch of {x.shape[0]} does not split into {n} micro-batches")
    return jnp.swapaxes(x.reshape((x.shape[0] // n, n) + x.shape[1:]), 0, 1)
  return jax.tree.map(split, batch)


def make_train_step(model, tx, task, accum_steps=1, from_embeddings=False):
  """(state, batch) -> (state, logs): one optimizer step on one global batch.

  Parameters stay float32; for a model built with compute_dtype='bfloat16' the forward
  and backward passes run on bfloat16 copies (BatchNorm statistics stay float32). A step whose loss or
  gradient (or updated parameters) is not finite leaves the state as it was and reports logs['finite'] = False.
  With frozen backbones (model.config.freeze_backbones) only the other groups are
  differentiated, updated and checked: the backbones' parameters pass through untouched,
  rather than as zero gradients, zero updates and copies of 40M parameters a step.
  `task` is a config's task name (jmt_jax.tasks); with `from_embeddings` batches hold a
  feature cache's backbone embeddings, which only frozen backbones can train on.
  """
  task = tasks.get(task)
  frozen = model.config.get("freeze_backbones", False)
  if from_embeddings and not frozen:
    raise ValueError("training on cached backbone embeddings needs "
                     "config.model.freeze_backbones")

  def split(params):
    """(trained groups, fixed groups) of `params`."""
    fixed = {k: v for k, v in params.items() if frozen and model_lib.is_backbone(k)}
    return {k: v for k, v in params.items() if k not in fixed}, fixed

  def forward(trained, fixed, batch_stats, batch, rng):
    outputs, updates = variables_lib.apply(
        model, variables_lib.cast(model, {**trained, **fixed}, batch_stats), batch,
        from_embeddings, train=True, rngs={"dropout": rng}, mutable=["batch_stats"])
    return task.loss_sums(outputs, batch), updates.get("batch_stats", {})

  def whole_batch_grads(trained, fixed, batch_stats, batch, rng):
    def loss_fn(trained):
      sums, new_stats = forward(trained, fixed, batch_stats, batch, rng)
      return task.loss_from_sums(sums)[0], (sums, new_stats)
    grads, (sums, new_stats) = jax.grad(loss_fn, has_aux=True)(trained)
    return grads, sums, new_stats

  def accumulated_grads(trained, fixed, batch_stats, batch, rng):
    micro = _microbatches(batch, accum_steps)
    rngs = jax.vmap(lambda j: jax.random.fold_in(rng, j))(jnp.arange(accum_steps))

    def add_sums(total, xs):
      sums, _ = forward(trained, fixed, batch_stats, *xs)
      return jax.tree.map(jnp.add, total, sums), None

    zero_sums = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), jax.eval_shape(
        lambda: forward(trained, fixed, batch_stats, jax.tree.map(lambda x: x[0], micro),
                        rng)[0]))
    sums, _ = jax.lax.scan(add_sums, zero_sums, (micro, rngs))
    d_loss = jax.grad(lambda s: task.loss_from_sums(s)[0])(sums)

    def add_grads(carry, xs):
      grads, stats = carry

      def linearised_loss(trained):
        part, new_stats = forward(trained, fixed, stats, *xs)
        return sum(jnp.vdot(d_loss[k], part[k]) for k in part), new_stats

      g, stats = jax.grad(linearised_loss, has_aux=True)(trained)
      return (jax.tree.map(jnp.add, grads, g), stats), None

    zeros = jax.tree.map(jnp.zeros_like, trained)
    (grads, new_stats), _ = jax.lax.scan(add_grads, (zeros, batch_stats), (micro, rngs))
    return grads, sums, new_stats

  def train_step(state, batch):
    step_rng = jax.random.fold_in(state.rng, state.step)
    compute = whole_batch_grads if accum_steps == 1 else accumulated_grads
    trained, fixed = split(state.params)
    grads, sums, batch_stats = compute(trained, fixed, state.batch_stats, batch, step_rng)
    loss, logs = task.loss_from_sums(sums)
    # The optimizer's frozen groups (optax.set_to_zero) read no gradient.
    all_grads = {**grads, **jax.tree.map(jnp.zeros_like, fixed)}
    updates, opt_state = tx.update(all_grads, state.opt_state, state.params)
    logs["grad_norm"] = optax.tree.norm(grads)
    new_trained = optax.apply_updates(trained, {k: updates[k] for k in trained})
    finite = jax.tree.reduce(lambda ok, x: ok & jnp.isfinite(x).all(), new_trained,
                             jnp.isfinite(loss) & jnp.isfinite(logs["grad_norm"]))
    new = (new_trained, batch_stats, opt_state)
    old = (trained, state.batch_stats, state.opt_state)
    trained, batch_stats, opt_state = jax.tree.map(lambda n, o: jnp.where(finite, n, o), new, old)
    logs["finite"] = finite
    return state.replace(step=state.step + 1, params={**trained, **fixed},
                         batch_stats=batch_stats, opt_state=opt_state), logs
  return train_step
