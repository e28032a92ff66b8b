"""PyTorch state dicts -> jmt_jax initial weights (the library behind
`python -m jmt_jax.weights.convert`), and reading the converted checkpoints back."""

import collections
import dataclasses
import json
import os
import re

import numpy as np
import orbax.checkpoint as ocp

from jmt_jax import config_common as cc
from jmt_jax.models import model as model_lib
from jmt_jax.models import speech
from jmt_jax.models import variables as variables_lib
from jmt_jax.weights import state_dicts
from jmt_jax.weights import torch_layout

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


def names(keys):
  keys = sorted(keys)
  more = f" (and {len(keys) - _SHOWN} more)" if len(keys) > _SHOWN else ""
  return ", ".join(keys[:_SHOWN]) + more


@dataclasses.dataclass(frozen=True)
class _Location:
  """Where one part of a parameter group sits in a file: its PyTorch keys under `prefix`
  ('', 'resnet.', 'vision_r2d1.r2plus1d.'...: wrappers of the authors' code nest
  torchvision models), or, for a module they save apart (`module`, with `alone`), as the
  file's own top-level keys under `prefix`."""
  prefix: str
  module: str = ""
  alone: bool = False

  def key(self, torch_key):
    return self.prefix + (torch_key[len(self.module) + 1:] if self.alone else torch_key)

  def holds(self, key):
    if self.alone:
      return key.startswith(self.prefix) and "." not in key[len(self.prefix):]
    return key.startswith(self.prefix + (f"{self.module}." if self.module else ""))

  def torch_key(self, key):
    rest = key[len(self.prefix):]
    return f"{self.module}.{rest}" if self.alone else rest


def _apart(entry):
  """The module saved apart (torch_layout.SAVED_APART) that `entry` belongs to, or ''."""
  first = entry.torch_key.split(".")[0]
  return first if first in torch_layout.SAVED_APART else ""


def _part(entry):
  """The part of a parameter group located on its own in a file: a module saved apart,
  or one backbone of a pair (each its own model, e.g. a ResNet and a WavLM)."""
  if len(entry.path) > 2 and entry.path[0].endswith("_backbone") and entry.path[1] in (
      model_lib.PAIR):
    return entry.path[1]
  return _apart(entry)


def _locate(tensors, entries):
  """The _Location under which the file holds most of `entries` (one part) in their
  expected shapes; a module saved apart that the file does not hold is looked for at
  the top level, where the authors' all_backbones.pt keeps it."""
  module = _apart(entries[0])
  prefixes = {""}
  for k in tensors:
    parts = k.split(".")
    prefixes.update(".".join(parts[:n]) + "." for n in range(1, min(len(parts), 4)))
  candidates = [_Location(p, module, alone) for p in sorted(prefixes)
                for alone in ((False, True) if module else (False,))]

  def score(loc):
    present = [e for e in entries if loc.key(e.torch_key) in tensors]
    fit = sum(_fits(tensors[loc.key(e.torch_key)], e.torch_shape) for e in present)
    return (fit, 0 if module else len(present))
  best = max(candidates, key=score)
  return best if score(best) > (0, 0) else _Location("", module)


def _fits(value, want_shape):
  return tuple(value.shape) == want_shape or _adapt_input_channels(value, want_shape) is not None


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


# The weights file in a `transformers` checkpoint folder, in order of preference.
TRANSFORMERS_WEIGHTS = ("model.safetensors", "pytorch_model.bin")


def weights_file(path):
  """`path`, or the weights file of the transformers checkpoint folder `path`."""
  if not os.path.isdir(path):
    return path
  for name in TRANSFORMERS_WEIGHTS:
    if os.path.isfile(os.path.join(path, name)):
      return os.path.join(path, name)
  raise ConversionError(f"{path}: a folder without {' or '.join(TRANSFORMERS_WEIGHTS)} (a "
                        f"sharded checkpoint? merge it, or give the file)")


def check_architecture(path, model_cfg, groups):
  """A transformers checkpoint (`path`, a folder or a file in one) whose config.json
  describes another speech or ViT encoder than the configured one is refused, naming
  the fields: a post-LN and a pre-LN encoder, or two activations, have the same
  parameters, so shapes alone would not tell them apart."""
  folder = path if os.path.isdir(path) else os.path.dirname(path)
  config_json = os.path.join(folder, "config.json")
  encoders = [(g, c) for g in groups if g.endswith("_backbone")
              for c in model_lib.members(model_cfg.backbones[g[:-len("_backbone")]])
              if c.kind in speech.KINDS or c.kind == "vit"]
  if not encoders or not os.path.isfile(config_json):
    return
  with open(config_json, encoding="utf-8") as f:
    model_type = json.load(f).get("model_type")
  for group, cfg in encoders:
    if cfg.kind == "vit" and model_type in cc.VIT_MODEL_TYPES[cfg.family]:
      given, option = cc.vit_architecture(config_json, cfg.family), "vit_config"
      break
    if cfg.kind == model_type:
      given, option = cc.speech_architecture(config_json, model_type), "speech_config"
      break
  else:
    kinds = sorted(c.family if c.kind == "vit" else c.kind for _, c in encoders)
    raise ConversionError(f"{config_json}: a {model_type} checkpoint; the config's encoder "
                          f"is {'/'.join(kinds)}")
  differ = [f"{k} {v!r} there, {cfg[k]!r} here" for k, v in sorted(given.items())
            if k != "normalize_waveform" and _differs(v, cfg[k])]
  if differ:
    raise ConversionError(f"{config_json}: another {model_type} than {group}'s: "
                          f"{'; '.join(differ[:4])} (convert with the config argument "
                          f"{option}={config_json})")


def _differs(a, b):
  if isinstance(a, (tuple, list)):
    return tuple(a) != tuple(b)
  return a != b


def _load_files(paths):
  """One state dict from the files `paths` (the authors save some modules apart)."""
  tensors, source = {}, {}
  for path in paths:
    for k, v in state_dicts.load(path).items():
      if k in tensors:
        raise ConversionError(f"{source[k]} and {path} both hold {k}")
      tensors[k], source[k] = v, path
  return tensors


def _read_source(paths, entries, others, model_cfg):
  """{(collection, path): jax array} for `entries` from the state dict in the files
  `paths`, and a report. Each part of a parameter group is looked for on its own
  (_locate), so one file may hold several groups nested apart (the authors' wrappers
  save both backbones in one model) and a group may come from several files. `others`
  ({group: its PyTorch keys}) are the model's groups not converted from these files:
  their keys are left for them, neither unknown nor unused (the authors'
  `Two_transformers` file holds the fusion and the head). Raises ConversionError listing
  every missing, mis-shaped and unknown key, and every key that only another config
  would use."""
  tensors = _load_files(paths)
  by_part = collections.defaultdict(list)
  for e in entries:
    by_part[(e.path[0], _part(e))].append(e)
  locations = {part: _locate(tensors, es) for part, es in by_part.items()}
  used, missing, bad_shape, adapted, misfits, out = set(), [], [], [], [], {}
  not_finite = []
  for part, part_entries in by_part.items():
    loc = locations[part]
    for e in part_entries:
      key = loc.key(e.torch_key)
      if key not in tensors:
        missing.append(key)
        continue
      used.add(key)
      value = tensors[key]
      if tuple(value.shape) != e.torch_shape:
        fix = _adapt_input_channels(value, e.torch_shape)
        if fix is None:
          bad_shape.append(f"{key} {tuple(value.shape)} (expected {e.torch_shape})")
          hint = torch_layout.another_config(model_cfg, part[0], e.torch_key, value.shape)
          misfits += [hint] if hint else []
          continue
        value = fix[0]
        adapted.append(f"{key}: {fix[1]}")
      if e.packed_index is not None:
        value = np.split(value, 3, axis=0)[e.packed_index]
      out[(e.collection, e.path)] = np.asarray(e.to_jax(value), np.float32)
      if not np.isfinite(out[(e.collection, e.path)]).all():
        not_finite.append(key)  # a diverged training run's weights: nothing to start from

  def holder(k):  # the part whose location holds k most narrowly
    held = [(len(loc.prefix) + len(loc.module), part, loc) for part, loc in locations.items()
            if loc.holds(k)]
    return max(held, key=lambda h: h[0])[1:] if held else (None, None)

  owner = {k: g for g, keys in others.items() for k in keys}
  left_for, ignored, unknown, outside = collections.defaultdict(list), [], [], []
  for k in sorted(set(tensors) - used):
    part, loc = holder(k)
    if part is None:
      outside.append(k)
      hint = next(filter(None, (torch_layout.another_config(model_cfg, g, k, tensors[k].shape)
                                for g, _ in by_part)), None)
      misfits += [hint] if hint else []
      continue
    rel = loc.torch_key(k)
    if rel in owner:
      left_for[owner[rel]].append(k)
      continue
    shape_of = lambda key, loc=loc: getattr(tensors.get(loc.key(key)), "shape", None)
    if torch_layout.is_ignored(rel, shape_of):
      ignored.append(k)
      continue
    unknown.append(k)
    hint = torch_layout.another_config(model_cfg, part[0], rel, tensors[k].shape)
    misfits += [hint] if hint else []
  problems = []
  missing, bad_shape = sorted(set(missing)), sorted(set(bad_shape))  # in_proj: 3 entries
  if missing:
    problems.append(f"{len(missing)} missing keys: {names(missing)}")
    if any(k.endswith(f"{torch_layout.SAVED_APART[0]}.weight") for k in missing):
      problems.append(f"the authors save the flatten reduction's Linear apart, as "
                      f"{torch_layout.SAVED_APART[0]}.pt: give both files, "
                      f"--weights=video_backbone=vision_r2d1.pt,{torch_layout.SAVED_APART[0]}.pt")
  if bad_shape:
    problems.append(f"{len(bad_shape)} keys with the wrong shape: {names(bad_shape)}")
  if unknown:
    problems.append(f"{len(unknown)} unknown keys: {names(unknown)}")
  if not_finite:
    not_finite = sorted(set(not_finite))
    problems.append(f"{len(not_finite)} keys hold NaN or inf (weights of a diverged run?): "
                    f"{names(not_finite)}")
  problems += sorted(set(misfits))
  if problems:
    if missing and left_for:
      groups = "+".join(sorted(left_for))
      problems.append(f"it holds the model's {groups} (--weights={groups}=FILE)")
    raise ConversionError(f"{','.join(paths)}: " + "; ".join(problems)
                          + " (nothing was converted)"
                          + _another_backbone(tensors, model_cfg, {g for g, _ in by_part}))
  shown = sorted({loc.prefix for loc in locations.values()})
  report = dict(file=",".join(os.path.abspath(p) for p in paths),
                prefix=shown[0] if len(shown) == 1 else shown,
                loaded=len(used), adapted=adapted, ignored=ignored,
                left_for={g: len(keys) for g, keys in sorted(left_for.items())},
                outside_prefix=outside)
  return out, report


def _another_backbone(tensors, model_cfg, groups):
  """A hint naming the config that fits a file holding another video backbone than the
  configured one, or ''."""
  for group in sorted(groups):
    if not group.endswith("_backbone"):
      continue
    kind = model_cfg.backbones[group[:-len("_backbone")]].kind
    for other, pattern, config in _VIDEO_LAYOUTS:
      if other != kind and any(pattern.search(k) for k in tensors):
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
  """(variables, manifest) for `sources`: [(groups, files)], groups a tuple of top-level
  parameter groups, files a path or a tuple of paths read as one state dict. Every group
  of the model may appear at most once."""
  model = model_lib.build_model(config)
  variables = variables_lib.abstract(model, config)
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
      keys_of[g] = {e.torch_key for e in torch_layout.expected_keys(model.config, variables, {g})}
    except torch_layout.LayoutError:
      keys_of[g] = set()  # a group with no public layout leaves no keys to recognise
  flat, reports = {}, []
  for groups, paths in sources:
    paths = (paths,) if isinstance(paths, str) else tuple(paths)
    for p in paths:
      check_architecture(p, model.config, groups)
    paths = tuple(weights_file(p) for p in paths)
    try:
      entries = torch_layout.expected_keys(model.config, variables, set(groups))
    except torch_layout.LayoutError as e:
      raise ConversionError(f"{','.join(paths)}: {e}") from e
    values, report = _read_source(paths, entries,
                                  {g: k for g, k in keys_of.items() if g not in groups},
                                  model.config)
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
                            f"write one with python -m jmt_jax.weights.convert")
  with open(manifest_path) as f:
    groups = json.load(f)["groups"]
  variables = ocp.StandardCheckpointer().restore(os.path.join(os.path.abspath(out_dir),
                                                              "variables"))
  return variables, groups
