"""A config's programs lowered for a GPU or TPU from any host, nothing compiled: the train
step, the evaluation step, the feature extraction and the exported inference function,
and what each lowered module holds (its census).

  python -m jmt_jax.benchmarks.lowering --config=configs/affwild2.py:jmt --platforms=cuda,tpu
  python -m jmt_jax.benchmarks.lowering --config=configs/biovid.py:jmt --setting=finetune

The `auto` choices are made for the target platform (models.model.build_model), so the
module is what that accelerator would compile. The census counts, per program: host
callbacks, convolutions by rank and operand dtype, those that are input-dilated
(transposed), kernel-dilated or grouped, and float32 matmuls and convolutions outside the
inputs' float32 front ends; with `--fsdp=N` on a host of N devices (real or
`--xla_force_host_platform_device_count=N`), the train state's shardings as the module
states them.
"""

import collections
import dataclasses
import re

import jax
from absl import flags
from ml_collections import config_flags

from jmt_jax import experiment
from jmt_jax.benchmarks import step_timing
from jmt_jax.features import embed
from jmt_jax.inference import export
from jmt_jax.models import model as model_lib
from jmt_jax.models import variables as variables_lib
from jmt_jax.runtime import cli
from jmt_jax.runtime import library_logs
from jmt_jax.runtime import sharding
from jmt_jax.training import train
from jmt_jax.training import train_step

FLAGS = flags.FLAGS

PROGRAMS = ("train_step", "eval_step", "extract", "export")
SETTINGS = ("frozen", "finetune")


def configured(config, setting, compute_dtype=None):
  """`config` with its backbones frozen or fine-tuned, in `compute_dtype` (default: its own)."""
  if setting not in SETTINGS:
    raise ValueError(f"setting {setting!r}: use one of {list(SETTINGS)}")
  config = config.copy_and_resolve_references()
  config.model.freeze_backbones = setting == "frozen"
  if compute_dtype:
    config.compute_dtype = compute_dtype
  return config


def _abstract(tree):
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), tree)


def lower(config, program, platform, batch_size=None):
  """The `jax.stages.Lowered` (for `export`: the `jax.export.Exported`) of `program` of
  `config` for `platform`. The train step is sharded over `sharding.Mesh(config)` (this
  host's devices) by `config.sharding`'s rules."""
  if program == "export":
    return export.export_model(config, (platform,))
  model = model_lib.build_model(config, platform)
  batch_size = batch_size or jax.device_count()
  lowering = {"lowering_platforms": (platform,)}
  if program == "train_step":
    mesh = sharding.Mesh(config)
    frozen = config.model.get("freeze_backbones", False)
    tx = train.make_optimizer(config.optimizer, config.train.num_steps, frozen)
    state = jax.eval_shape(train_step.make_init_fn(model, tx, config), jax.random.PRNGKey(0))
    shardings = sharding.state_shardings(state, mesh.mesh, config.sharding)
    step = jax.jit(train_step.make_train_step(model, tx, config.task),
                   in_shardings=(shardings, mesh.batch_sharding),
                   out_shardings=(shardings, mesh.replicated), donate_argnums=0)
    batch = _abstract(step_timing.synthetic_batch(config, batch_size))
    return step.trace(state, batch).lower(**lowering)
  variables = variables_lib.abstract(model, config)
  if program == "eval_step":
    batch = step_timing.synthetic_batch(config, batch_size)
    batch["recording"] = batch["frame"] = batch["valid"].astype("int32")[:, None].repeat(
        config.input.num_clips, 1)
    predict = experiment.make_predict(model, config.task)
    return predict.trace(variables, _abstract(batch)).lower(**lowering)
  if program == "extract":
    cast = jax.eval_shape(lambda v: variables_lib.cast(model, v["params"], v["batch_stats"]),
                          variables)
    return embed.embed_fn(model).trace(cast, embed.batch_spec(config)).lower(**lowering)
  raise ValueError(f"program {program!r}: use one of {list(PROGRAMS)}")


def ruled_shardings(config):
  """{argument name in a lowered train step: mesh axes per dimension} of the train state
  as `config.sharding`'s rules place it on `sharding.Mesh(config)`."""
  model = model_lib.build_model(config)
  tx = train.make_optimizer(config.optimizer, config.train.num_steps,
                            config.model.get("freeze_backbones", False))
  state = jax.eval_shape(train_step.make_init_fn(model, tx, config), jax.random.PRNGKey(0))
  placed = sharding.state_shardings(state, sharding.Mesh(config).mesh, config.sharding)
  axes = lambda entry: [] if entry is None else [entry] if isinstance(entry, str) else list(entry)
  return {f"state{jax.tree_util.keystr(path)}": [axes(e) for e in tuple(s.spec) + (None,) * (
      leaf.ndim - len(s.spec))] for (path, leaf), s in zip(
          jax.tree_util.tree_leaves_with_path(state), jax.tree.leaves(placed))}


def module_text(lowered):
  """The StableHLO of a `lower` result, with locations (names of arguments and scopes)."""
  if hasattr(lowered, "mlir_module"):  # an Exported
    return lowered.mlir_module()
  return lowered.as_text(debug_info=True)


@dataclasses.dataclass
class Op:
  kind: str  # 'convolution' or 'dot_general'
  rank: int  # spatial dimensions of a convolution (0 for a matmul)
  dtypes: tuple  # the operands'
  lhs_dilation: tuple = ()
  rhs_dilation: tuple = ()
  feature_groups: int = 1
  batch_groups: int = 1
  frontend: bool = False  # inside models.model.FRONTEND_SCOPE

  @property
  def transposed(self):
    return any(d > 1 for d in self.lhs_dilation)

  @property
  def dilated(self):
    return any(d > 1 for d in self.rhs_dilation)

  @property
  def grouped(self):
    return self.feature_groups > 1 or self.batch_groups > 1


@dataclasses.dataclass
class Census:
  ops: list
  callbacks: list  # custom_call targets that call back to the host
  # argument name -> mesh axes per dimension ([] for a replicated one), from Shardy's
  # `sdy.sharding` attributes (JAX's lowering since 0.7)
  shardings: dict

  def float32(self):
    """Matmuls and convolutions with a float32 operand, outside the front ends."""
    return [op for op in self.ops if "f32" in op.dtypes and not op.frontend]

  def counts(self):
    return collections.Counter(
        (op.kind, op.rank, "x".join(sorted(set(op.dtypes))), op.transposed, op.dilated,
         op.grouped) for op in self.ops)


_CALLBACK = re.compile(r"callback|python|host_compute|SendToHost|RecvFromHost", re.I)


def _tensor_dtype(t):
  return t.rsplit("x", 1)[-1] if "x" in t else t


def _ints(text):
  return tuple(int(v) for v in re.findall(r"-?\d+", text))


def census(text):
  """What a module (`module_text`) holds: its convolutions and matmuls, host callbacks and
  argument shardings."""
  locations = dict(re.findall(r"^(#loc\d+) = (.*)$", text, re.M))

  def names(ref, depth=0):
    body = locations.get(ref, "")
    if depth > 50:
      return body
    return body + "".join(names(r, depth + 1) for r in re.findall(r"#loc\d+", body))

  frontend = f"/{model_lib.FRONTEND_SCOPE}/"
  ops, callbacks = [], []
  for line in text.splitlines():
    if "stablehlo.custom_call" in line:
      target = re.search(r"custom_call @([\w.]+)|call_target_name = \"([^\"]+)\"", line)
      if target and _CALLBACK.search(target.group(1) or target.group(2)):
        callbacks.append(target.group(1) or target.group(2))
    kind = next((k for k in ("convolution", "dot_general") if f"stablehlo.{k}" in line), None)
    if kind is None:
      continue
    operands = re.search(r":\s*\((tensor<[^>]*>),\s*(tensor<[^>]*>)\)\s*->", line)
    dtypes = tuple(_tensor_dtype(t[7:-1]) for t in operands.groups()) if operands else ()
    loc = re.search(r"loc\((#loc\d+)\)\s*$", line)
    in_frontend = frontend in (line + (names(loc.group(1)) if loc else ""))
    if kind == "dot_general":
      ops.append(Op(kind, 0, dtypes, frontend=in_frontend))
      continue
    window = re.search(r"window = \{(.*?)\}", line)
    window = window.group(1) if window else ""
    lhs = re.search(r"lhs_dilate = \[([^\]]*)\]", window)
    rhs = re.search(r"rhs_dilate = \[([^\]]*)\]", window)
    spatial = re.search(r"dim_numbers = \[[^\]]*\]x\[[^\]]*\]->\[([^\]]*)\]", line)
    rank = len(re.findall(r"\d", spatial.group(1))) if spatial else 0
    groups = re.search(r"feature_group_count = (\d+)", line)
    batch_groups = re.search(r"batch_group_count = (\d+)", line)
    ops.append(Op(kind, rank, dtypes, _ints(lhs.group(1)) if lhs else (),
                  _ints(rhs.group(1)) if rhs else (), int(groups.group(1)) if groups else 1,
                  int(batch_groups.group(1)) if batch_groups else 1, in_frontend))
  shardings = {}
  main = re.search(r"func\.func public @main\((.*?)\)\s*(->|\{)", text, re.S)
  for arg in re.split(r"%arg\d+: ", main.group(1) if main else "")[1:]:
    name = re.search(r'loc\("([^"]+)"\)', arg)
    sdy = re.search(r"sdy\.sharding<@\w+, \[(.*?)\]>", arg)
    if name and sdy:
      shardings[name.group(1)] = [re.findall(r'"(\w+)"', d)
                                  for d in re.findall(r"\{([^}]*)\}", sdy.group(1))]
  return Census(ops, callbacks, shardings)


def main(argv):
  del argv
  library_logs.quiet()
  config = FLAGS.config
  if FLAGS.fsdp:
    config.mesh.fsdp = FLAGS.fsdp
    config.mesh.data = jax.device_count() // FLAGS.fsdp
  for platform in FLAGS.platforms:
    for setting in FLAGS.settings:
      c = configured(config, setting, FLAGS.compute_dtype)
      for program in FLAGS.programs:
        if program != "train_step" and setting == "finetune":
          continue  # the other programs do not train: one setting says it
        found = census(module_text(lower(c, program, platform)))
        f32 = found.float32()
        print(f"{platform:5s} {setting:8s} {program:10s} host callbacks {len(found.callbacks)}; "
              f"float32 matmuls/convs outside the front ends {len(f32)}")
        if program == "train_step":
          ruled = ruled_shardings(c)
          sharded = sum(any(dims) for dims in ruled.values())
          differ = [n for n, dims in ruled.items() if found.shardings.get(n) != dims]
          print(f"    train state: {sharded} of {len(ruled)} arrays sharded by the rules; "
                f"{len(differ)} lowered otherwise{': ' + ', '.join(differ[:3]) if differ else ''}")
        for (kind, rank, dtypes, transposed, dilated, grouped), n in sorted(
            found.counts().items()):
          flagged = [w for w, on in (("transposed", transposed), ("dilated", dilated),
                                     ("grouped", grouped)) if on]
          what = f"{rank}-D convolution" if kind == "convolution" else "matmul"
          print(f"    {n:4d} {what:16s} {dtypes:10s} {' '.join(flagged)}")


def _define_flags():
  config_flags.DEFINE_config_file("config", None, "Config file[:variant].")
  flags.DEFINE_list("platforms", ["cuda", "tpu"], "Platforms to lower for.")
  flags.DEFINE_list("settings", list(SETTINGS), "frozen and/or finetune.")
  flags.DEFINE_list("programs", list(PROGRAMS), "Programs to lower.")
  flags.DEFINE_string("compute_dtype", None, "Overrides the config's compute_dtype.")
  flags.DEFINE_integer("fsdp", 0, "Shard the train state N ways (this host needs N devices).")
  flags.mark_flags_as_required(["config"])


if __name__ == "__main__":
  cli.app_run(main, _define_flags)
