"""The six cross-attended outputs depend on exactly the sources they attend to."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jmt_jax.models import fusion

# Each output attends from its query source (first letter) to its key/value source (last).
DEPENDS_ON = {name: {name[0], name[2]} for name in fusion.CROSS_OUTPUTS}


def outputs(params, module, sources):
  return module.apply(params, sources["v"], sources["a"], sources["j"])


@pytest.mark.parametrize("changed", ["v", "a", "j"])
def test_changing_one_source_changes_only_outputs_that_attend_to_it(changed):
  keys = jax.random.split(jax.random.key(0), 4)
  sources = {s: jax.random.normal(k, (2, 5, 8)) for s, k in zip("vaj", keys)}
  module = fusion.KeyBasedCrossAttention(num_heads=2)
  params = module.init(keys[3], sources["v"], sources["a"], sources["j"])
  before = outputs(params, module, sources)
  perturbed = dict(sources, **{changed: sources[changed] + jax.random.normal(keys[3], (2, 5, 8))})
  after = outputs(params, module, perturbed)
  assert set(before) == set(fusion.CROSS_OUTPUTS)
  for name in fusion.CROSS_OUTPUTS:
    moved = float(jnp.abs(after[name] - before[name]).max())
    if changed in DEPENDS_ON[name]:
      assert moved > 1e-3, f"{name} should depend on {changed}"
    else:
      assert moved == 0.0, f"{name} must not depend on {changed}"


def test_query_source_modules_are_shared_across_key_sources():
  module = fusion.KeyBasedCrossAttention(num_heads=1)
  x = jnp.ones((1, 3, 4))
  params = module.init(jax.random.key(0), x, x, x)["params"]
  assert set(params) == {"v_attn", "a_attn", "j_attn"}


def test_joint_branch_makes_every_output_depend_on_both_modalities():
  """Through J = Linear([V; A]), even a_v and v_a see both inputs, and the fused
  output of JMT changes when either modality changes."""
  k = jax.random.split(jax.random.key(1), 3)
  v, a = jax.random.normal(k[0], (2, 4, 8)), jax.random.normal(k[1], (2, 4, 8))
  jmt = fusion.JointMultimodalTransformer(num_layers=1, num_heads=2, ffn_dim=16)
  params = jmt.init(k[2], v, a)
  base = jmt.apply(params, v, a)
  assert float(jnp.abs(jmt.apply(params, v + 1.0, a) - base).max()) > 1e-4
  assert float(jnp.abs(jmt.apply(params, v, a * 2.0 + 1.0) - base).max()) > 1e-4
  # L2 normalisation: rescaling an input changes nothing.
  np.testing.assert_allclose(jmt.apply(params, 3.0 * v, a), base, atol=1e-5)


def test_l2_normalize_matches_torch_and_has_finite_gradient_at_zero():
  x = jnp.array([[3.0, 4.0], [0.0, 0.0], [1e-14, 0.0]])
  np.testing.assert_allclose(fusion.l2_normalize(x), [[0.6, 0.8], [0.0, 0.0], [1e-2, 0.0]],
                             rtol=1e-6)
  grad = jax.grad(lambda v: fusion.l2_normalize(v).sum())(jnp.zeros((1, 4)))
  assert bool(jnp.all(jnp.isfinite(grad)))
