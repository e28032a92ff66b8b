"""PyTorch state dicts -> jmt_jax initial weights (the library behind
`python -m jmt_jax.convert`), and reading the converted checkpoints back."""

import collections
import json
import os
import re

import jax
import numpy as np
import orbax.checkpoint as ocp

from jmt_jax import state_dicts
from jmt_jax import torch_layout
from jmt_jax.data import pipeline
from jmt_jax.models import model as model_lib

MANIFEST = "conversion.json"
_SHOWN = 8  # names listed per kind of problem


# How a file of each video backbone's public layout shows itself, and the config that
# fits it (checked when a file does not fit the configured backbone).
_VIDEO_LAYOUTS = (
    ("i3d_tcn", re.compile(r"(^|\.)(Conv3d_1a_7x7|Mixed_\d[a-z])\."),
     "configs/affwild2.py:video_backbone=i3d"),
    ("r2plus1d", re.compile(r"(^|\.)stem\.3\.weight$"),
     "configs/affwild2.py:video_backbone=r2plus1d"),
)


class ConversionError(ValueError):
  """A state dict that does not fit the model; the message names the file and the keys."""


def abstract_variables(config):
  """Shapes of the model's {'params', 'batch_stats'} for `config`, without computing."""
  model = model_lib.build_model(config.model, "float32", *pipeline.model_inputs(config))
  rngs = {"params": jax.random.key(0), "dropout": jax.random.key(1)}
  variables = jax.eval_shape(lambda b: model.init(rngs, b, train=False),
                             pipeline.input_spec(config))
  return {k: v for k, v in variables.items() if k in ("params", "batch_stats")}


def names(keys):
  keys = sorted(keys)
  more = f" (and {len(keys) - _SHOWN} more)" if len(keys) > _SHOWN else ""
  return ", ".join(keys[:_SHOWN]) + more


def _best_prefix(keys, wanted):
  """The key prefix ('', 'resnet.', 'vision_r2d1.r2plus1d.'...) under which most of the
  wanted names appear: wrappers of the authors' code nest torchvision models."""
  candidates = {""}
  for k in keys:
    parts = k.split(".")
    candidates.update(".".join(parts[:n]) + "." for n in range(1, min(len(parts), 4)))
  return max(sorted(candidates), key=lambda p: sum(k[len(p):] in wanted for k in keys
                                                  if k.startswith(p)))


def _adapt_input_channels(value, want_shape):
  """The authors' two stem adaptations, or None: ImageNet's RGB conv1 for a 1-channel
  log-mel stem takes the mean over its input channels (their AudioModel); a 4-channel
  (RGB + mask, TSAV) video stem keeps the RGB channels (their main.py)."""
  got = tuple(value.shape)
  if len(got) < 4 or got[:1] + got[2:] != want_shape[:1] + want_shape[2:]:
    return None
  if (got[1], want_shape[1]) == (3, 1):
    return value.mean(axis=1, keepdims=True), "mean of the 3 input channels"
  if (got[1], want_shape[1]) == (4, 3):
    return value[:, :3], "first 3 of 4 input channels"
  return None


def _read_source(path, entries, others):
  """{(collection, path): jax array} for `entries` from the state dict at `path`, and a
  report. Each parameter group is looked for under its own key prefix, so one file may
  hold several groups nested apart (the authors' wrappers save both backbones in one
  model). `others` ({group: its PyTorch keys}) are the model's groups not converted from
  this file: their keys are left for them, neither unknown nor unused (the authors'
  `Two_transformers` file holds the fusion and the head). Raises ConversionError listing
  every missing, mis-shaped and unknown key."""
  tensors = state_dicts.load(path)
  by_group = collections.defaultdict(list)
  for e in entries:
    by_group[e.path[0]].append(e)
  prefixes = {g: _best_prefix(tensors, {e.torch_key for e in es}) for g, es in by_group.items()}
  used, missing, bad_shape, adapted, out = set(), [], [], [], {}
  for group, group_entries in by_group.items():
    prefix = prefixes[group]
    for e in group_entries:
      key = prefix + e.torch_key
      if key not in tensors:
        missing.append(key)
        continue
      used.add(key)
      value = tensors[key]
      if tuple(value.shape) != e.torch_shape:
        fix = _adapt_input_channels(value, e.torch_shape)
        if fix is None:
          bad_shape.append(f"{key} {tuple(value.shape)} (expected {e.torch_shape})")
          continue
        value = fix[0]
        adapted.append(f"{key}: {fix[1]}")
      if e.packed_index is not None:
        value = np.split(value, 3, axis=0)[e.packed_index]
      out[(e.collection, e.path)] = np.asarray(e.to_jax(value), np.float32)
  inside = lambda k: any(k.startswith(p) for p in prefixes.values())
  strip = lambda k: k[max((len(p) for p in prefixes.values() if k.startswith(p)), default=0):]
  leftover = sorted(k for k in tensors if k not in used and inside(k))
  owner = {k: g for g, keys in others.items() for k in keys}
  left_for = collections.defaultdict(list)
  for k in leftover:
    if strip(k) in owner:
      left_for[owner[strip(k)]].append(k)
  leftover = [k for k in leftover if strip(k) not in owner]
  ignored = [k for k in leftover if torch_layout.is_ignored(strip(k))]
  unknown = [k for k in leftover if not torch_layout.is_ignored(strip(k))]
  problems = []
  missing, bad_shape = sorted(set(missing)), sorted(set(bad_shape))  # in_proj: 3 entries
  if missing:
    problems.append(f"{len(missing)} missing keys: {names(missing)}")
  if bad_shape:
    problems.append(f"{len(bad_shape)} keys with the wrong shape: {names(bad_shape)}")
  if unknown:
    problems.append(f"{len(unknown)} unknown keys: {names(unknown)}")
  if problems:
    if missing and left_for:
      groups = "+".join(sorted(left_for))
      problems.append(f"it holds the model's {groups} (--weights={groups}=FILE)")
    raise ConversionError(f"{path}: " + "; ".join(problems) + " (nothing was converted)")
  shown = sorted(set(prefixes.values()))
  report = dict(file=os.path.abspath(path), prefix=shown[0] if len(shown) == 1 else shown,
                loaded=len(used), adapted=adapted, ignored=ignored,
                left_for={g: len(keys) for g, keys in sorted(left_for.items())},
                outside_prefix=sorted(k for k in tensors if not inside(k)))
  return out, report


def _another_backbone(path, model_cfg, groups):
  """A hint naming the config that fits a file holding another video backbone than the
  configured one, or ''."""
  keys = list(state_dicts.load(path))
  for group in groups:
    if not group.endswith("_backbone"):
      continue
    kind = model_cfg.backbones[group[:-len("_backbone")]].kind
    for other, pattern, config in _VIDEO_LAYOUTS:
      if other != kind and any(pattern.search(k) for k in keys):
        return (f". It holds an {other} backbone, not the configured {kind}: convert it "
                f"with --config={config}")
  return ""


def _nest(flat):
  tree = {}
  for (collection, path), value in flat.items():
    node = tree.setdefault(collection, {})
    for p in path[:-1]:
      node = node.setdefault(p, {})
    node[path[-1]] = value
  return tree


def convert(config, sources):
  """(variables, manifest) for `sources`: [(groups, file)], groups a tuple of top-level
  parameter groups. Every group of the model may appear at most once."""
  variables = abstract_variables(config)
  groups_of_model = set(variables["params"])
  seen = collections.Counter(g for groups, _ in sources for g in groups)
  for g, n in seen.items():
    if g not in groups_of_model:
      raise ConversionError(f"parameter group {g!r} is not in this model; it has "
                            f"{sorted(groups_of_model)}")
    if n > 1:
      raise ConversionError(f"parameter group {g!r} is given by {n} --weights files")
  keys_of = {}
  for g in groups_of_model:
    try:
      keys_of[g] = {e.torch_key for e in torch_layout.expected_keys(config.model, variables, {g})}
    except torch_layout.LayoutError:
      keys_of[g] = set()  # a group with no public layout leaves no keys to recognise
  flat, reports = {}, []
  for groups, path in sources:
    try:
      entries = torch_layout.expected_keys(config.model, variables, set(groups))
    except torch_layout.LayoutError as e:
      raise ConversionError(f"{path}: {e}") from e
    try:
      values, report = _read_source(path, entries,
                                    {g: k for g, k in keys_of.items() if g not in groups})
    except ConversionError as e:
      raise ConversionError(f"{e}{_another_backbone(path, config.model, groups)}") from None
    flat.update(values)
    reports.append(dict(groups=list(groups), **report))
  manifest = dict(groups=sorted(seen), sources=reports, model=config.model.to_dict())
  return _nest(flat), manifest


def save(variables, manifest, out_dir):
  out_dir = os.path.abspath(out_dir)
  os.makedirs(out_dir, exist_ok=True)
  ckpt = ocp.StandardCheckpointer()
  ckpt.save(os.path.join(out_dir, "variables"), variables, force=True)
  ckpt.wait_until_finished()
  with open(os.path.join(out_dir, MANIFEST), "w") as f:
    json.dump(manifest, f, indent=1, default=list)


def load(out_dir):
  """(variables, groups) of a converted checkpoint directory written by `save`."""
  manifest_path = os.path.join(out_dir, MANIFEST)
  if not os.path.isfile(manifest_path):
    raise FileNotFoundError(f"{out_dir} is not a converted checkpoint (no {MANIFEST}); "
                            f"write one with python -m jmt_jax.convert")
  with open(manifest_path) as f:
    groups = json.load(f)["groups"]
  variables = ocp.StandardCheckpointer().restore(os.path.join(os.path.abspath(out_dir),
                                                              "variables"))
  return variables, groups
