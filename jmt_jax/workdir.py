"""A training workdir, the one place that knows its files:

  config.json                the config it was trained with (`write_config`, `read_config`);
  inputs.json                the recordings of each split it used and the data's checksums;
  environment.json           the library versions and devices it was trained with;
  train.lock                 held by the process training in it (`training_lock`);
  checkpoints/               Orbax: the train state with the data iterator's position;
  checkpoints_set_aside/     unreadable steps moved out of the way when training resumed;
  metrics.jsonl              one JSON object per log or eval step (`read_metrics`);
  eval/<split>_step<N>.json  the scores of an evaluation, and beside it
  eval/<split>_step<N>_recordings.npz  its per-recording statistics;
  robustness/<split>_step<N>.{csv,md,json}, submission/, plots/, tensorboard/.

A workdir belongs to one config: every command given a config checks it against
config.json first (`check_config`) and is refused, before writing anything, where they
differ in what the run computes. Training writes it; evaluation, submissions, robustness,
sweeps, cross-validation, prediction and export read it through here. Checkpoints are
restored newest-first: a step that does not fit the config is an error, a step that
cannot be read (a crash mid-save) is passed over for an older one.
"""

import contextlib
import datetime
import fcntl
import json
import os
import shutil
import socket

import grain
import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
from absl import logging
from jax.experimental import multihost_utils

from jmt_jax import config_common
from jmt_jax.models import variables as variables_lib
from jmt_jax.runtime import environment
from jmt_jax.runtime import sharding

CONFIG = "config.json"
INPUTS = "inputs.json"
ENVIRONMENT = "environment.json"
METRICS = "metrics.jsonl"
LOCK = "train.lock"
SET_ASIDE = "checkpoints_set_aside"

# Fields that say how a command runs, not what it computes: they may differ from the
# workdir's config. Commands that only evaluate may also score differently (`eval`).
EXECUTION_FIELDS = ("compilation_cache_dir", "mesh", "sharding", "train.read_threads",
                    "train.read_workers")
EVALUATION_FIELDS = ("eval",)
# What every config holds besides the base config's fields (config_common.base_config).
SECTIONS = ("data", "data.signals", "input", "input.modalities", "model",
            "model.backbones", "model.fusion", "model.head")


# ------------------------------------------------------------------ config
def write_config(config, workdir):
  """workdir/config.json: what prediction and export rebuild the model from, so a
  trained workdir is usable without its config file."""
  os.makedirs(workdir, exist_ok=True)
  path = os.path.join(workdir, CONFIG)
  with open(path + ".tmp", "w", encoding="utf-8") as f:
    f.write(config.to_json_best_effort(indent=2, sort_keys=True))
  os.replace(path + ".tmp", path)


def read_config(workdir):
  """The config `workdir` was trained with (see `write_config`), its fields checked."""
  path = os.path.join(workdir, CONFIG)
  if not os.path.exists(path):
    raise FileNotFoundError(f"no {CONFIG} in {workdir}: is it a training workdir? "
                            f"(runs trained before config.json was written need --config)")
  with open(path, encoding="utf-8") as f:
    try:
      raw = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
      raise ValueError(f"{path}: not valid JSON ({e})") from None
  if not isinstance(raw, dict):
    raise ValueError(f"{path}: not a config (a JSON object)")
  if isinstance(raw.get("data"), dict) and "name" in raw["data"] and "signals" not in raw["data"]:
    raise ValueError(f"{path} was written by an older jmt_jax (no data.signals): pass the "
                     f"config it was trained with as --config")
  problem = _schema_problem(raw, json.loads(config_common.base_config().to_json()))
  if problem:
    raise ValueError(f"{path}: {problem}; restore the file, or pass the config it was "
                     f"trained with as --config")
  return ml_collections.ConfigDict(raw)


def _type_name(value):
  return {bool: "a boolean", int: "a number", float: "a number", str: "a string",
          list: "a list", dict: "a section", type(None): "null"}[type(value)]


def _schema_problem(raw, base):
  """What is wrong with a config read from JSON, or None: a missing section, or a field of
  the base config missing or of another type."""
  for section in SECTIONS:
    node = raw
    for part in section.split("."):
      node = node.get(part) if isinstance(node, dict) else None
    if not isinstance(node, dict):
      return f"the section {section!r} is missing" if node is None else (
          f"{section!r} is {_type_name(node)}, not a section")

  def walk(got, want, prefix):
    for key, default in want.items():
      name = prefix + key
      if key not in got:
        return f"the field {name!r} is missing"
      value = got[key]
      if isinstance(default, dict):
        if not isinstance(value, dict):
          return f"{name!r} is {_type_name(value)}, not a section"
        problem = walk(value, default, name + ".")
        if problem:
          return problem
      elif default is not None and _type_name(value) != _type_name(default):
        return f"{name!r} is {_type_name(value)} ({value!r}), not {_type_name(default)}"
    return None

  return walk(raw, base, "")


def config_differences(config, workdir, evaluating=False):
  """[(dotted field, value in workdir/config.json, value in `config`)] where they differ
  in what the run computes ([] for a workdir without config.json). `evaluating`: the
  command only evaluates, so `eval` settings may differ too."""
  if not os.path.exists(os.path.join(workdir, CONFIG)):
    return []
  free = EXECUTION_FIELDS + (EVALUATION_FIELDS if evaluating else ())
  saved = read_config(workdir).to_dict()
  return [d for d in _differences(saved, json.loads(config.to_json_best_effort()))
          if not any(d[0] == f or d[0].startswith(f + ".") for f in free)]


def _differences(a, b, prefix=""):
  for k in sorted(set(a) | set(b)):
    x, y = a.get(k), b.get(k)
    if isinstance(x, dict) and isinstance(y, dict):
      yield from _differences(x, y, f"{prefix}{k}.")
    elif x != y:
      yield f"{prefix}{k}", x, y


def check_config(config, workdir, evaluating=False):
  """Refuses `config` for `workdir` (ValueError, one line naming the fields) when the
  workdir holds checkpoints trained with another config. A workdir whose config.json
  has no checkpoint beside it (a run that stopped before its first save) trained
  nothing, and takes the new config."""
  differ = config_differences(config, workdir, evaluating)
  if not differ or not has_checkpoints(workdir):
    return
  shown = "; ".join(f"{name} is {old!r} there, {new!r} here" for name, old, new in differ[:4])
  more = f" (and {len(differ) - 4} more)" if len(differ) > 4 else ""
  raise ValueError(f"{workdir} belongs to another run: {shown}{more}. Use the config it was "
                   f"trained with ({os.path.join(workdir, CONFIG)}), or another --workdir to "
                   f"start a new run (delete {workdir} to start this one over)")


# ------------------------------------------------------------------ the data
def write_inputs(workdir, inputs):
  """workdir/inputs.json: what the run was trained on (`experiment.Data.record`)."""
  path = os.path.join(workdir, INPUTS)
  with open(path + ".tmp", "w", encoding="utf-8") as f:
    json.dump(inputs, f, indent=1, sort_keys=True)
  os.replace(path + ".tmp", path)


def check_inputs(workdir, inputs):
  """Refuses (ValueError, one line) to go on with a run of `workdir` on other data than
  it was trained on: other recordings in a split, or stored files that changed."""
  path = os.path.join(workdir, INPUTS)
  if not os.path.exists(path) or not has_checkpoints(workdir):
    return
  with open(path, encoding="utf-8") as f:
    try:
      saved = json.load(f)
    except ValueError as e:
      raise ValueError(f"{path}: not valid JSON ({e})") from None
  advice = (f"Use another --workdir to train on this data (delete {workdir} to retrain it), "
            f"or the data it was trained on")
  for split, names in saved.get("recordings", {}).items():
    now = inputs["recordings"].get(split)
    if now is not None and now != names:
      changed = sorted(set(names) ^ set(now))
      raise ValueError(f"{workdir} was trained on other recordings: its {split} split held "
                       f"{len(names)}, this one {len(now)}"
                       + (f" ({changed[0]} is in only one of them)" if changed else
                          " (in another order)") + f". {advice}")
  old, now = saved.get("checksums", {}), inputs["checksums"]
  differ = sorted(k for k in set(old) | set(now) if old.get(k) != now.get(k))
  if differ:
    raise ValueError(f"the data {workdir} was trained on has changed since ({differ[0]} "
                     f"{'differs' if differ[0] in old and differ[0] in now else 'is new or gone'}"
                     f"{f', and {len(differ) - 1} more files' if len(differ) > 1 else ''}: "
                     f"prepared again?). {advice}")


def record_environment(workdir):
  """Writes workdir/environment.json (`runtime.environment.describe`) when the run starts;
  a run resumed under other library versions or devices keeps the first record and says
  what changed (its later steps may differ in the last digits from an unbroken run's)."""
  path = os.path.join(workdir, ENVIRONMENT)
  now = environment.describe()
  if os.path.exists(path):
    with open(path, encoding="utf-8") as f:
      try:
        changed = environment.changes(json.load(f), now)
      except (ValueError, KeyError, AttributeError):
        changed = ["(the record is unreadable)"]
    if changed:
      logging.warning("%s was started under another environment: %s.", workdir,
                      "; ".join(changed))
    return
  with open(path + ".tmp", "w", encoding="utf-8") as f:
    json.dump(now, f, indent=1, sort_keys=True)
  os.replace(path + ".tmp", path)


# ------------------------------------------------------------------ the training lock
@contextlib.contextmanager
def training_lock(workdir):
  """Holds workdir/train.lock while training (process 0): a second process training in
  the workdir is refused. The lock is the kernel's (flock) on the open file, so it goes
  with the process, however it ends (kill -9 too); the file only names the holder."""
  if jax.process_index() != 0:
    yield
    return
  os.makedirs(workdir, exist_ok=True)
  path = os.path.join(workdir, LOCK)
  f = open(path, "a+", encoding="utf-8")  # pylint: disable=consider-using-with
  try:
    try:
      fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      f.seek(0)
      holder = f.read().strip() or "a process"
      raise ValueError(f"{workdir} is in use: {holder} is training in it. Wait for it to "
                       f"finish (or stop it: the same command resumes), or use another "
                       f"--workdir") from None
    f.seek(0)
    f.truncate()
    f.write(f"process {os.getpid()} on {socket.gethostname()} (since "
            f"{datetime.datetime.now().isoformat(timespec='seconds')})\n")
    f.flush()
    yield
  finally:
    f.close()


# ------------------------------------------------------------------ checkpoints
def checkpoints(workdir, keep=None):
  """The Orbax manager of workdir/checkpoints, keeping the newest `keep` (at least 1;
  None, for commands that only read: all)."""
  if keep is not None:
    check_keep(keep)
  return ocp.CheckpointManager(
      os.path.join(os.path.abspath(workdir), "checkpoints"),
      options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=keep is not None))


def check_keep(keep):
  if int(keep) < 1:
    raise ValueError(f"config.train.keep_checkpoints={keep}: must be at least 1 (the "
                     f"newest checkpoint is what resuming, evaluation and prediction read)")


def has_checkpoints(workdir):
  """Whether workdir/checkpoints holds a finished step."""
  path = os.path.join(workdir, "checkpoints")
  return os.path.isdir(path) and any(
      n.isdigit() and os.path.exists(os.path.join(path, n, "_CHECKPOINT_METADATA"))
      for n in os.listdir(path))


def save(mngr, step, state, data_iterator, force=False):
  args = {"state": ocp.args.StandardSave(state)}
  if data_iterator is not None:
    args["data"] = grain.checkpoint.CheckpointSave(data_iterator)
  return mngr.save(step, args=ocp.args.Composite(**args), force=force)


def _path_name(key):
  for attr in ("key", "name", "idx"):
    if hasattr(key, attr):
      return str(getattr(key, attr))
  return str(key)


def _leaf_shapes(tree):
  return {"/".join(_path_name(k) for k in path): tuple(getattr(x, "shape", ()))
          for path, x in jax.tree_util.tree_leaves_with_path(tree)}


def _misfit(have, want, partial):
  """How a checkpoint's arrays (`have`: {path: shape}) differ from the ones the config's
  model has (`want`), or None where they fit."""
  missing = [k for k in want if k not in have]
  if missing:
    return f"it has no {missing[0]} ({len(missing)} arrays missing)"
  extra = [] if partial else [k for k in have if k not in want]
  if extra:
    return f"it has {extra[0]}, which this config's model lacks ({len(extra)} such arrays)"
  for k, shape in want.items():
    if have[k] != shape:
      return f"{k} is {have[k]} there, {shape} in this config's model"
  return None


def _saved_shapes(step_dir):
  """{array path: shape} of a checkpoint step's state, from its Orbax metadata; raises
  where it cannot be read."""
  with ocp.StandardCheckpointer() as checkpointer:
    saved = _leaf_shapes(checkpointer.metadata(os.path.join(step_dir, "state")).item_metadata)
  if not saved:
    raise ValueError("its state lists no arrays")
  return saved


def restore_latest(mngr, abstract_state, data_iterator, partial=False, set_aside=False):
  """(step, state) from the newest readable checkpoint, or (None, None) if there is none.

  `data_iterator`, when given, is moved to the position saved with that state. With
  `partial`, `abstract_state` names a part of the saved state ({"params": ...,
  "batch_stats": ...} for inference) and only that part is read. A checkpoint whose
  arrays do not fit `abstract_state` is an error (ValueError); one that cannot be read
  is passed over for an older one, and with `set_aside` (training, which will save
  those steps again) moved to checkpoints_set_aside/.
  """
  want = _leaf_shapes(abstract_state)
  if partial:
    args = {"state": ocp.args.PyTreeRestore(
        abstract_state, ocp.checkpoint_utils.construct_restore_args(abstract_state),
        partial_restore=True)}
  else:
    args = {"state": ocp.args.StandardRestore(abstract_state)}
  if data_iterator is not None:
    args["data"] = grain.checkpoint.CheckpointRestore(data_iterator)
  unreadable, found = [], (None, None)
  for step in sorted(mngr.all_steps(), reverse=True):
    where = os.path.join(str(mngr.directory), str(step))
    try:
      misfit = _misfit(_saved_shapes(where), want, partial)
      if not misfit:
        found = step, mngr.restore(step, args=ocp.args.Composite(**args))["state"]
        break
    except Exception as e:  # pylint: disable=broad-except
      logging.warning("The checkpoint %s is unreadable (%s: %s); trying an older one.", where,
                      type(e).__name__, str(e).splitlines()[0][:200] if str(e) else "")
      unreadable.append(where)
      continue
    raise ValueError(f"the checkpoint {where} does not fit this config: {misfit}. Was the "
                     f"workdir trained with another config?")
  if set_aside and unreadable:
    _set_aside(mngr, unreadable)
  return found


def _set_aside(mngr, step_dirs):
  """Moves unreadable step directories to checkpoints_set_aside/ (kept for a look, out of
  the way of the run's own saves of those steps)."""
  if jax.process_index() == 0:
    aside = os.path.join(os.path.dirname(str(mngr.directory)), SET_ASIDE)
    os.makedirs(aside, exist_ok=True)
    for where in step_dirs:
      target = os.path.join(aside, os.path.basename(where))
      suffix = 1
      while os.path.exists(target):
        target = os.path.join(aside, f"{os.path.basename(where)}.{suffix}")
        suffix += 1
      shutil.move(where, target)
      logging.warning("Set the unreadable checkpoint %s aside in %s; this run saves that step "
                      "again when it gets there.", where, target)
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices("jmt_jax_checkpoints_set_aside")
  mngr.reload()


def restore_variables(config, workdir, model, mesh=None):
  """(step, {params, batch_stats}) of the newest readable checkpoint of `workdir`, laid
  out as training lays them out on `mesh` (a `sharding.Mesh`; one device when None);
  the optimizer state is not read. `config` must be the workdir's (`check_config`)."""
  check_config(config, workdir, evaluating=True)
  abstract = variables_lib.abstract(model, config)
  if mesh is None:
    device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    shardings = jax.tree.map(lambda _: device, abstract)
  else:
    shardings = sharding.state_shardings(abstract, mesh.mesh, config.sharding)
  if not has_checkpoints(workdir):
    raise FileNotFoundError(f"no readable checkpoint in {os.path.join(workdir, 'checkpoints')}: "
                            f"train first with --mode=train and the same --config and --workdir")
  mngr = checkpoints(workdir)
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


def write_scores(workdir, split, step, scores, settings):
  """eval/<split>_step<N>.json (process 0 only), with the `settings` it was scored with
  (config.eval: an evaluating command may score with other smoothing than training did);
  returns its path."""
  path = result_stem(workdir, "eval", split, step) + ".json"
  if jax.process_index() == 0:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
      json.dump({"split": split, "step": int(step), **scores, "settings": settings}, f, indent=2)
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
