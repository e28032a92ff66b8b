"""Content checksums of a dataset's files, what a run records of the data it was trained
on (so a rerun after the data was prepared again is told, not silently mixed).

A file is hashed once: its SHA-256 is cached in ~/.cache/jmt_jax/checksums.json under its
path, size, modification time and inode, and hashed again when any of them changes.
"""

import hashlib
import json
import os

CACHE = os.path.join(os.path.expanduser("~"), ".cache", "jmt_jax", "checksums.json")


def _key(path):
  st = os.stat(path)
  return f"{os.path.abspath(path)}|{st.st_size}|{st.st_mtime_ns}|{st.st_ino}"


def _sha256(path):
  h = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 22), b""):
      h.update(block)
  return h.hexdigest()


def directory(path, cache=CACHE):
  """{relative path: SHA-256} of every file under `path`."""
  try:
    with open(cache, encoding="utf-8") as f:
      known = json.load(f)
  except (OSError, ValueError):
    known = {}
  out, changed = {}, False
  for root, dirs, files in os.walk(path):
    dirs.sort()
    for name in sorted(files):
      full = os.path.join(root, name)
      key = _key(full)
      if key not in known:
        known[key] = _sha256(full)
        changed = True
      out[os.path.relpath(full, path)] = known[key]
  if changed:  # forget files that are gone (temporary directories, deleted datasets)
    known = {k: v for k, v in known.items() if os.path.exists(k.split("|")[0])}
    os.makedirs(os.path.dirname(cache), exist_ok=True)
    tmp = f"{cache}.{os.getpid()}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
      json.dump(known, f)
    os.replace(tmp, cache)
  return out
