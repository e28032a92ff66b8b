"""The paper configs' programs lowered for GPUs and TPUs from this CPU (nothing compiled
for a device): no host callbacks, bfloat16 matmuls and convolutions outside the float32
front ends, no transposed, kernel-dilated or grouped 3-D convolution, and the train
state sharded as the FSDP rules ask on 8 devices."""

import json
import subprocess
import sys

import jax
import numpy as np
import pytest

from conftest import ROOT
from conftest import load_config
from conftest import subprocess_env
from jmt_jax.benchmarks import lowering
from jmt_jax.models import resnet

PAPER = ("affwild2", "biovid")
ACCELERATORS = ("cuda", "tpu")


def _census(name, setting, program, platform, compute_dtype=None):
  config = lowering.configured(load_config(name, "jmt"), setting, compute_dtype)
  return lowering.census(lowering.module_text(lowering.lower(config, program, platform)))


def _slow_convolutions(found):
  return [op for op in found.ops if op.kind == "convolution" and op.rank == 3
          and (op.transposed or op.dilated or op.grouped)]


def _check_accelerator_module(found):
  assert not found.callbacks
  assert not found.float32(), [op for op in found.float32()][:3]
  convs = [op for op in found.ops if op.kind == "convolution"]
  assert any(op.rank == 3 for op in convs)  # conv3d=auto: XLA's whole 3-D convolutions
  assert all(op.dtypes == ("bf16", "bf16") for op in convs)  # compute_dtype=auto: bfloat16
  assert not _slow_convolutions(found)
  # what stays float32 is the front ends' (log-mels, pixel normalisation) alone
  assert all(op.frontend for op in found.ops if "f32" in op.dtypes)


@pytest.mark.parametrize("platform", ACCELERATORS)
@pytest.mark.parametrize("setting", ("frozen", "finetune"))
@pytest.mark.parametrize("name", PAPER)
def test_train_step_lowers_for_accelerators(name, setting, platform):
  _check_accelerator_module(_census(name, setting, "train_step", platform))


@pytest.mark.parametrize("platform", ACCELERATORS)
@pytest.mark.parametrize("program", ("eval_step", "extract", "export"))
@pytest.mark.parametrize("name", PAPER)
def test_inference_programs_lower_for_accelerators(name, program, platform):
  _check_accelerator_module(_census(name, "frozen", program, platform))


@pytest.mark.parametrize("setting", ("frozen", "finetune"))
def test_a_vit_face_encoder_lowers_for_a_gpu_in_bfloat16_rematerialised(setting):
  """ViT-B/16 on faces with a temporal transformer, its activations recomputed in the
  backward pass when fine-tuned: every matmul and convolution bfloat16 but the front
  ends', and the patch embedding's convolution 2-D."""
  config = lowering.configured(load_config(
      "affwild2", "jmt,video_backbone=vit,vit_temporal=transformer"), setting)
  config.model.backbones.video.remat = "nothing_saveable"
  text = lowering.module_text(lowering.lower(config, "train_step", "cuda"))
  found = lowering.census(text)
  assert not found.callbacks
  assert not found.float32(), found.float32()[:3]
  assert all(op.frontend for op in found.ops if "f32" in op.dtypes)
  assert {op.rank for op in found.ops if op.kind == "convolution"} >= {2}
  assert ("optimization_barrier" in text) == (setting == "finetune")  # remat's mark


def test_float32_where_the_config_asks_and_cpu_choices_on_a_cpu():
  """On a CPU: 2-D convolutions per temporal tap, and the frozen video backbone looping
  over chunks of clips (`clips_per_call`), which an accelerator's program does not."""
  config = lowering.configured(load_config("affwild2", "jmt"), "frozen", "float32")
  texts = {p: lowering.module_text(lowering.lower(config, "eval_step", p))
           for p in ("cuda", "cpu")}
  found = lowering.census(texts["cuda"])
  assert found.float32() and all(op.dtypes == ("f32", "f32") for op in found.ops
                                 if op.kind == "convolution")
  on_cpu = lowering.census(texts["cpu"])
  assert not [op for op in on_cpu.ops if op.kind == "convolution" and op.rank == 3]
  assert "stablehlo.while" in texts["cpu"] and "stablehlo.while" not in texts["cuda"]


def test_the_census_sees_the_slow_paths_a_strided_convolution_takes_by_default():
  x = jax.ShapeDtypeStruct((2, 8, 14, 14, 4), np.float32)
  w = jax.ShapeDtypeStruct((3, 3, 3, 4, 8), np.float32)
  pads = ((1, 1),) * 3

  def grads(conv):
    return jax.jit(jax.grad(lambda x, w: conv(x, w, (2, 2, 2), pads).sum(), argnums=(0, 1)))

  plain = lowering.census(grads(resnet._conv3d).trace(x, w).lower(
      lowering_platforms=("cuda",)).as_text(debug_info=True))
  slow = _slow_convolutions(plain)
  assert any(op.transposed for op in slow) and any(op.dilated for op in slow)
  ours = lowering.census(grads(resnet.native_conv3d).trace(x, w).lower(
      lowering_platforms=("cuda",)).as_text(debug_info=True))
  assert not _slow_convolutions(ours) and len(ours.ops) == 2


def test_the_stride_one_form_computes_the_strided_convolution_and_its_gradients():
  rng = np.random.default_rng(0)
  for shape, kernel, strides in [((2, 8, 14, 14, 3), (3, 1, 1), (2, 1, 1)),
                                 ((2, 8, 15, 13, 3), (1, 3, 3), (1, 2, 2)),
                                 ((2, 8, 14, 14, 3), (1, 1, 1), (2, 2, 2)),
                                 ((1, 7, 15, 13, 3), (3, 7, 7), (1, 2, 2)),
                                 ((1, 9, 11, 10, 3), (3, 3, 3), (2, 2, 2))]:
    x = rng.standard_normal(shape).astype(np.float32)
    w = rng.standard_normal(kernel + (3, 5)).astype(np.float32)
    pads = tuple((k // 2, k // 2) for k in kernel)
    want = resnet._conv3d(x, w, strides, pads)
    got = resnet.stride_one_form(x, w, strides, pads)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4)
    g = rng.standard_normal(want.shape).astype(np.float32)
    want_grads = jax.vjp(lambda x, w: resnet._conv3d(x, w, strides, pads), x, w)[1](g)
    got_grads = jax.vjp(lambda x, w: resnet.native_conv3d(x, w, strides, pads), x, w)[1](g)
    for a, b in zip(got_grads, want_grads):
      np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-4)


_SHARDED_LOWERING = """
import json
from jmt_jax import config_args
from jmt_jax.benchmarks import lowering
config = lowering.configured(config_args.load("configs/affwild2.py:jmt"), "finetune")
config.mesh.data, config.mesh.fsdp = 1, 8
found = lowering.census(lowering.module_text(lowering.lower(config, "train_step", "cuda")))
print(json.dumps({"ruled": lowering.ruled_shardings(config), "lowered": found.shardings}))
"""


def test_train_step_lowers_with_the_fsdp_shardings_on_eight_devices():
  run = subprocess.run([sys.executable, "-c", _SHARDED_LOWERING], cwd=ROOT, capture_output=True,
                       text=True, timeout=300,
                       env=subprocess_env(XLA_FLAGS="--xla_force_host_platform_device_count=8"))
  assert run.returncode == 0, run.stderr[-3000:]
  out = json.loads(run.stdout.strip().splitlines()[-1])
  ruled, lowered = out["ruled"], out["lowered"]
  assert {n: lowered.get(n) for n in ruled} == ruled
  sharded = [n for n, dims in ruled.items() if any(dims)]
  assert sharded and all("_backbone']" in n for n in sharded)
  assert any(n.startswith("state.params['video_backbone']") for n in sharded)
  assert any(n.startswith("state.opt_state") for n in sharded)
  batch = [dims for n, dims in lowered.items() if n.startswith("batch")]
  assert batch and all(dims[0] for dims in batch)  # every input split over the devices
