"""The XLA options programs are compiled with (jmt_jax.runtime.compiler)."""

import jax
import numpy as np

from jmt_jax.runtime import compiler


def test_cpu_programs_take_the_options_and_compute_the_same():
  assert compiler.options("cpu") == compiler.CPU_OPTIONS  # this jaxlib knows them
  assert compiler.options("tpu") == compiler.options("cuda") == {}
  assert compiler.options("cpu", fusion_only=True) == {}
  a = np.random.default_rng(0).standard_normal((64, 96)).astype(np.float32)
  f = lambda x: jax.nn.gelu(x @ x.T) @ x  # noqa: E731
  np.testing.assert_allclose(compiler.jit(f)(a), jax.jit(f)(a), rtol=1e-5, atol=1e-4)


def test_an_option_the_jaxlib_does_not_know_is_left_out(monkeypatch):
  monkeypatch.setattr(compiler, "CPU_OPTIONS", {"xla_cpu_no_such_option": ""})
  compiler._cpu_options.cache_clear()  # pylint: disable=protected-access
  try:
    assert compiler.options("cpu") == {}
    assert float(compiler.jit(lambda x: x * 2)(np.float32(3))) == 6.0
  finally:
    monkeypatch.undo()
    compiler._cpu_options.cache_clear()  # pylint: disable=protected-access
