"""big_vision-style config arguments: `--config=configs/x.py:variant,tiny,key=value`."""

import importlib.util
import os

import ml_collections

# The repository root, where `configs/` lives next to the package (editable installs).
_REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def parse_arg(arg, **defaults):
  """Parses `arg` against `defaults`, returning a ConfigDict of the same keys.

  A bare word sets a boolean key to True, or else the first key (the variant).
  Values are converted to the default's type; unknown keys are an error.
  """
  out = dict(defaults)
  first = next(iter(defaults))
  for token in filter(None, (t.strip() for t in (arg or "").split(","))):
    key, sep, value = token.partition("=")
    if not sep:
      key, value = (token, True) if isinstance(defaults.get(token), bool) else (first, token)
    if key not in defaults:
      raise ValueError(f"unknown config argument {key!r}; known: {sorted(defaults)}")
    kind = type(defaults[key])
    if kind is bool and isinstance(value, str):
      if value.lower() not in ("true", "false", "1", "0"):
        raise ValueError(f"config argument {key}={value!r} is not a boolean")
      value = value.lower() in ("true", "1")
    out[key] = kind(value)
  return ml_collections.ConfigDict(out)


def given(arg):
  """The names `arg` sets explicitly (`key=value`, or a bare word: a boolean or the
  variant), which a variant such as `tiny` must leave as given."""
  return {t.partition("=")[0].strip() for t in (arg or "").split(",") if t.strip()}


def find(spec):
  """`spec` ("configs/demo.py:tiny") with its file found: a relative path is looked up
  from the working directory, then from the repository root (so notebooks and commands
  run from anywhere find `configs/`)."""
  path, sep, arg = spec.partition(":")
  if not os.path.isabs(path) and not os.path.exists(path):
    path = os.path.join(_REPO_ROOT, path)
  if not os.path.exists(path):
    raise FileNotFoundError(f"no config file {spec.partition(':')[0]} here or in {_REPO_ROOT}")
  return path + sep + arg


def override(config, values):
  """Sets each dotted field of `values` ({"train.num_steps": 600}: what `--config.FIELD=VALUE`
  flags give, `config_flags.get_override_values`) in `config`; every field must exist."""
  for key, value in values.items():
    *parents, leaf = key.split(".")
    node = config
    for p in parents:
      node = node.get(p) if isinstance(node, ml_collections.ConfigDict) else None
    if not isinstance(node, ml_collections.ConfigDict) or leaf not in node:
      raise ValueError(f"the config has no field {key!r}")
    node[leaf] = value


def module(path):
  """The config file at `path` as a module (found as `find` finds it)."""
  module_spec = importlib.util.spec_from_file_location("jmt_jax_config", find(path))
  out = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(out)
  return out


def load(spec):
  """The config of `spec` ("configs/demo.py:tiny"), as `--config=` loads it (`find`)."""
  path, _, arg = spec.partition(":")
  return module(path).get_config(arg or None)
