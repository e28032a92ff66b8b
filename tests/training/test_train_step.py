"""The optimizer step: exact gradient accumulation, bfloat16 compute with float32
parameters, and the guard that keeps a non-finite step from touching the state."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jmt_jax import experiment
from jmt_jax.models import model as model_lib
from jmt_jax.models import variables as variables_lib
from jmt_jax.training import train
from jmt_jax.training import train_step


def _setup(tiny_config, name, from_embeddings=False, **overrides):
  """(config, (model, tx), state, a batch of 8 windows). With `from_embeddings` the batch
  holds random backbone embeddings in place of the inputs, as a feature cache's windows
  do: the step then compiles the fusion and head alone, which is all the loss and
  gradient logic under test needs."""
  config = tiny_config(name, "tiny")
  config.model.freeze_backbones = True  # BatchNorm in inference mode: micro-batches are exact
  config.model.head.dropout = 0.0
  config.train.batch_size = 8
  for k, v in overrides.items():
    config[k] = v
  model = model_lib.build_model(config)
  tx = train.make_optimizer(config.optimizer, config.train.num_steps, True)
  src = experiment.Data(config).source("train", train=False)
  batch = jax.tree.map(lambda *x: np.stack(x), *[src[i] for i in range(8)])
  if not from_embeddings:
    return config, (model, tx, False), train.initial_state(model, tx, config, None), batch
  rng = np.random.default_rng(0)
  batch = {k: v for k, v in batch.items() if k not in config.model.modalities}
  batch["embeddings"] = {m: rng.normal(size=(8, config.input.num_clips, b.embed_dim))
                         .astype(np.float32) for m, b in config.model.backbones.items()}
  return config, (model, tx, True), _embedding_state(model, tx, config, batch), batch


def _embedding_state(model, tx, config, batch):
  """A train state for steps on embeddings: the fusion and head at random, the backbones
  (which such a step passes through untouched) zeros of their shapes, so that only the
  fusion is compiled to make it."""
  key = jax.random.PRNGKey(config.seed)
  one = jax.tree.map(lambda x: x[:1], batch["embeddings"])
  fused = jax.jit(lambda k: model.init({"params": k, "dropout": k}, one, method=model.fuse))(key)
  shapes = variables_lib.abstract(model, config)
  zeros = lambda tree: jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), tree)
  params = {g: fused["params"][g] if g in fused["params"] else zeros(p)
            for g, p in shapes["params"].items()}
  return train_step.TrainState(step=jnp.zeros((), jnp.int32), params=params,
                               batch_stats=zeros(shapes["batch_stats"]),
                               opt_state=tx.init(params), rng=key)


def _grads(setup, config, state, batch, accum_steps):
  model, _, from_embeddings = setup
  sgd = optax.sgd(1.0)  # the update is -grad: the step's gradient is old - new params
  step = jax.jit(train_step.make_train_step(model, sgd, config.task, accum_steps,
                                            from_embeddings))
  state = state.replace(opt_state=sgd.init(state.params))
  new, logs = step(state, batch)
  return jax.tree.map(lambda a, b: np.asarray(a - b), state.params, new.params), logs


@pytest.mark.parametrize("name", ["demo", "biovid"])
def test_accumulated_gradient_equals_whole_batch_gradient(tiny_config, name):
  config, setup, state, batch = _setup(tiny_config, name, from_embeddings=True)
  whole, logs1 = _grads(setup, config, state, batch, 1)
  acc, logs = _grads(setup, config, state, batch, 4)
  np.testing.assert_allclose(float(logs["loss"]), float(logs1["loss"]), rtol=1e-5)
  for a, b in zip(jax.tree.leaves(acc), jax.tree.leaves(whole)):
    np.testing.assert_allclose(a, b, rtol=2e-4, atol=1e-5 * max(1.0, np.abs(b).max()))
  # The trained groups really moved, and the frozen backbones did not.
  norms = {g: float(optax.tree.norm(v)) for g, v in whole.items()}
  assert all((norms[g] == 0) == g.endswith("_backbone") for g in norms), norms


@pytest.mark.slow
def test_bfloat16_compute_keeps_float32_parameters(tiny_config):
  config, setup, state, batch = _setup(tiny_config, "biovid")
  _, setup16, _, _ = _setup(tiny_config, "biovid", compute_dtype="bfloat16")
  step32 = train_step.make_train_step(*setup[:2], config.task)
  step16 = train_step.make_train_step(setup16[0], setup[1], config.task)
  jaxpr = str(jax.make_jaxpr(step16)(state, batch))
  assert "conv_general_dilated" in jaxpr and "bf16[" in jaxpr
  convs = [l for l in jaxpr.splitlines() if "= conv_general_dilated" in l]
  assert convs and all(":bf16[" in l for l in convs), convs[:2]
  s32, l32 = jax.jit(step32)(state, batch)
  s16, l16 = jax.jit(step16)(state, batch)
  assert {x.dtype for x in jax.tree.leaves(s16.params)} == {jnp.dtype(jnp.float32)}
  assert float(l16["loss"]) == pytest.approx(float(l32["loss"]), abs=0.05)
  assert bool(l16["finite"])


def test_non_finite_step_leaves_the_state_alone(tiny_config):
  config, (model, tx, _), state, batch = _setup(tiny_config, "demo", from_embeddings=True)
  step = jax.jit(train_step.make_train_step(model, tx, config.task, from_embeddings=True))
  bad = dict(batch, valence=np.full_like(batch["valence"], np.nan))
  new, logs = step(state, bad)
  assert not bool(logs["finite"])
  for a, b in zip(jax.tree.leaves(new.params), jax.tree.leaves(state.params)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))

