"""Reading PyTorch state dicts into numpy: `.safetensors` always, `.pth`/`.pt` through
`torch.load(..., weights_only=True)` when PyTorch is installed."""

import os
import re

# Checkpoint dicts that wrap the state dict (the authors' I3D file keeps it under "net").
_WRAPPER_KEYS = ("state_dict", "model", "net", "model_state_dict")


# torch's parametrized weight norm names g and v so; its older form (and jmt_jax's
# layout) `weight_g` and `weight_v`.
_WEIGHT_NORM = re.compile(r"\.parametrizations\.weight\.original([01])$")


class StateDictError(ValueError):
  """A weights file that cannot be read as a state dict; the message names the file."""


def load(path):
  """{key: float32/int numpy array} from a PyTorch state dict file, 'module.' stripped."""
  if not os.path.isfile(path):
    raise StateDictError(f"{path}: no such file")
  ext = os.path.splitext(path)[1].lower()
  if ext == ".safetensors":
    tensors = _load_safetensors(path)
  elif ext in (".pth", ".pt", ".bin", ".t7", ".ckpt"):
    tensors = _load_torch(path)
  else:
    raise StateDictError(f"{path}: unknown weights format {ext!r}; use .safetensors, .pth or .pt")
  if tensors and all(k.startswith("module.") for k in tensors):  # saved from DataParallel
    tensors = {k[len("module."):]: v for k, v in tensors.items()}
  return {_WEIGHT_NORM.sub(lambda m: {"0": ".weight_g", "1": ".weight_v"}[m.group(1)], k): v
          for k, v in tensors.items()}


def _load_safetensors(path):
  from safetensors import SafetensorError  # pylint: disable=import-outside-toplevel
  from safetensors.numpy import load_file  # pylint: disable=import-outside-toplevel
  try:
    return dict(load_file(path))
  except (SafetensorError, OSError, ValueError, TypeError) as e:
    raise StateDictError(f"{path}: not a readable safetensors file ({e})") from e


def _load_torch(path):
  try:
    import torch  # pylint: disable=import-outside-toplevel
  except ImportError as e:
    raise StateDictError(f"{path}: reading .pth/.pt files needs PyTorch (pip install torch, the "
                         f"CPU build is enough), or save the state dict as .safetensors") from e
  try:
    obj = torch.load(path, map_location="cpu", weights_only=True)
  except Exception as e:  # pylint: disable=broad-except
    first = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
    raise StateDictError(f"{path}: not a readable PyTorch state dict ({first})") from e
  while isinstance(obj, dict) and len(obj) == 1 and next(iter(obj)) in _WRAPPER_KEYS:
    obj = next(iter(obj.values()))
  if isinstance(obj, dict):
    for key in _WRAPPER_KEYS:
      if isinstance(obj.get(key), dict):
        obj = obj[key]
        break
  if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
    raise StateDictError(f"{path}: holds a {type(obj).__name__}, not a state dict of tensors")
  out = {}
  for k, v in obj.items():
    v = v.detach().cpu()
    out[k] = v.float().numpy() if v.is_floating_point() else v.numpy()
  return out
