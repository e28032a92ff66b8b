"""big_vision-style config arguments: `--config=configs/x.py:variant,tiny,key=value`."""

import ml_collections


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
