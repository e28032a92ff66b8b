"""A training workdir, the one place that knows its files:

  config.json                the config it was trained with (`write_config`, `read_config`);
  checkpoints/               Orbax: the train state with the data iterator's position;
  metrics.jsonl              one JSON object per log or eval step (`read_metrics`);
  eval/<split>_step<N>.json  the scores of an evaluation, and beside it
  eval/<split>_step<N>_recordings.npz  its per-recording statistics;
  robustness/<split>_step<N>.{csv,md,json}, submission/, plots/, tensorboard/.

Training writes it; evaluation, submissions, robustness, sweeps, cross-validation,
prediction and export read it through here. Checkpoints are restored newest-first,
falling back to older steps when a step cannot be read (a crash mid-save leaves a step
directory that Orbax still lists).
"""

import json
import os

import grain
import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
from absl import logging

from jmt_jax.models import variables as variables_lib
from jmt_jax.runtime import sharding

CONFIG = "config.json"
METRICS = "metrics.jsonl"


def write_config(config, workdir):
  """workdir/config.json: what prediction and export rebuild the model from, so a
  trained workdir is usable without its config file."""
  os.makedirs(workdir, exist_ok=True)
  path = os.path.join(workdir, CONFIG)
  with open(path + ".tmp", "w", encoding="utf-8") as f:
    f.write(config.to_json_best_effort(indent=2, sort_keys=True))
  os.replace(path + ".tmp", path)


def read_config(workdir):
  """The config `workdir` was trained with (see `write_config`)."""
  path = os.path.join(workdir, CONFIG)
  if not os.path.exists(path):
    raise FileNotFoundError(f"no {CONFIG} in {workdir}: is it a training workdir? "
                            f"(runs trained before config.json was written need --config)")
  with open(path, encoding="utf-8") as f:
    try:
      config = ml_collections.ConfigDict(json.load(f))
    except json.JSONDecodeError as e:
      raise ValueError(f"{path}: not valid JSON ({e})") from None
  if "signals" not in config.data:
    raise ValueError(f"{path} was written by an older jmt_jax (no data.signals): pass the "
                     f"config it was trained with as --config")
  return config


def config_differences(config, workdir):
  """Dotted names of the fields where `config` differs from the one `workdir` was
  trained with ([] for a workdir without one)."""
  if not os.path.exists(os.path.join(workdir, CONFIG)):
    return []
  return list(_differences(read_config(workdir).to_dict(),
                           json.loads(config.to_json_best_effort())))


def _differences(a, b, prefix=""):
  for k in sorted(set(a) | set(b)):
    x, y = a.get(k), b.get(k)
    if isinstance(x, dict) and isinstance(y, dict):
      yield from _differences(x, y, f"{prefix}{k}.")
    elif x != y:
      yield f"{prefix}{k}"


# ------------------------------------------------------------------ checkpoints
def checkpoints(workdir, keep):
  """The Orbax manager of workdir/checkpoints, keeping the newest `keep` (None: all)."""
  return ocp.CheckpointManager(
      os.path.join(os.path.abspath(workdir), "checkpoints"),
      options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True))


def save(mngr, step, state, data_iterator, force=False):
  args = {"state": ocp.args.StandardSave(state)}
  if data_iterator is not None:
    args["data"] = grain.checkpoint.CheckpointSave(data_iterator)
  return mngr.save(step, args=ocp.args.Composite(**args), force=force)


def restore_latest(mngr, abstract_state, data_iterator, partial=False):
  """(step, state) from the newest readable checkpoint, or (None, None) if there is none.

  `data_iterator`, when given, is moved to the position saved with that state. With
  `partial`, `abstract_state` names a part of the saved state ({"params": ...,
  "batch_stats": ...} for inference) and only that part is read.
  """
  for step in sorted(mngr.all_steps(), reverse=True):
    if partial:
      args = {"state": ocp.args.PyTreeRestore(
          abstract_state, ocp.checkpoint_utils.construct_restore_args(abstract_state),
          partial_restore=True)}
    else:
      args = {"state": ocp.args.StandardRestore(abstract_state)}
    if data_iterator is not None:
      args["data"] = grain.checkpoint.CheckpointRestore(data_iterator)
    try:
      restored = mngr.restore(step, args=ocp.args.Composite(**args))
    except Exception as e:  # pylint: disable=broad-except
      logging.warning("Checkpoint at step %d in %s is unreadable (%s: %s); trying an older one.",
                      step, mngr.directory, type(e).__name__, str(e).splitlines()[0][:200])
      continue
    return step, restored["state"]
  return None, None


def restore_variables(config, workdir, model, mesh=None):
  """(step, {params, batch_stats}) of the newest readable checkpoint of `workdir`, laid
  out as training lays them out on `mesh` (a `sharding.Mesh`; one device when None);
  the optimizer state is not read."""
  abstract = variables_lib.abstract(model, config)
  if mesh is None:
    device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    shardings = jax.tree.map(lambda _: device, abstract)
  else:
    shardings = sharding.state_shardings(abstract, mesh.mesh, config.sharding)
  mngr = checkpoints(workdir, keep=None)
  step, variables = restore_latest(mngr, sharding.with_shardings(abstract, shardings), None,
                                   partial=True)
  mngr.close()
  if variables is None:
    raise FileNotFoundError(f"no readable checkpoint in {workdir}/checkpoints: train first with "
                            f"--mode=train and the same --config and --workdir")
  return step, variables


# ------------------------------------------------------------------ results
def read_metrics(workdir):
  """{metric: (steps, values)} from workdir/metrics.jsonl (later rows of a step win: a
  resumed run rewrites the steps after its checkpoint)."""
  by_step = {}
  path = os.path.join(workdir, METRICS)
  if os.path.exists(path):
    with open(path, encoding="utf-8") as f:
      for line in f:
        if line.strip():
          row = json.loads(line)
          by_step.setdefault(row.pop("step"), {}).update(row)
  out = {}
  for step in sorted(by_step):
    for k, v in by_step[step].items():
      out.setdefault(k, ([], []))
      out[k][0].append(step)
      out[k][1].append(v)
  return out


def result_stem(workdir, kind, split, step):
  """workdir/<kind>/<split>_step<N>: where an evaluation (kind "eval") or a robustness
  table (kind "robustness") of `split` at checkpoint `step` is written."""
  return os.path.join(workdir, kind, f"{split}_step{int(step)}")


def write_scores(workdir, split, step, scores):
  """eval/<split>_step<N>.json (process 0 only); returns its path."""
  path = result_stem(workdir, "eval", split, step) + ".json"
  if jax.process_index() == 0:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
      json.dump({"split": split, "step": int(step), **scores}, f, indent=2)
  return path


def write_recording_stats(workdir, split, step, names, stats):
  """eval/<split>_step<N>_recordings.npz (process 0 only): an evaluation's per-recording
  statistics (its task's `recording_stats`), what a bootstrap resamples."""
  path = result_stem(workdir, "eval", split, step) + "_recordings.npz"
  if jax.process_index() == 0:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path + ".tmp", "wb") as f:
      np.savez(f, names=np.array(names), stats=stats, step=int(step))
    os.replace(path + ".tmp", path)
  return path


def read_recording_stats(workdir, split, step):
  """(names, stats) written by `write_recording_stats`."""
  path = result_stem(workdir, "eval", split, step) + "_recordings.npz"
  with np.load(path) as z:
    return [str(n) for n in z["names"]], z["stats"]
