"""What a run's numbers depend on besides its config and data: the library versions, the
Python, the platform and the devices. Runs record it (workdir environment.json), so two
installs that give different scores can be told apart."""

import importlib.metadata
import platform

import jax

# The packages whose versions change a run's arithmetic or its data's bytes (OpenCV's
# libjpeg encodes the built-in data's frames).
PACKAGES = ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "grain", "numpy",
            "opencv-python-headless", "tensorflow-datasets", "av", "ml-collections")


def _version(name):
  try:
    return importlib.metadata.version(name)
  except importlib.metadata.PackageNotFoundError:
    return None


def describe():
  """{packages: {name: version}, python, machine, devices}."""
  return {"packages": {p: _version(p) for p in PACKAGES},
          "python": platform.python_version(), "machine": platform.machine(),
          "system": platform.system(),
          "devices": sorted({f"{d.platform}:{d.device_kind}" for d in jax.devices()}),
          "device_count": jax.device_count()}


def changes(before, now):
  """Lines naming what differs between two `describe()` records (packages and devices)."""
  out = [f"{p} {before['packages'].get(p)} -> {v}" for p, v in now["packages"].items()
         if before.get("packages", {}).get(p) != v]
  if before.get("devices") != now["devices"]:
    out.append(f"devices {before.get('devices')} -> {now['devices']}")
  return out
