"""Per-recording work files: the resumable, parallel first stage of preparation.

Each recording is decoded once into `<out_dir>/work/<name>.npz` (its frames as the
encoded image files, labels and signals) and `<name>.json` (its table entry and
counts, or why it was skipped). Both are written to a temporary name and renamed, so
a killed run leaves either a finished recording or nothing. The shards are then written
from the work files (`builder`), which also lets them be rewritten (another segment
length) without decoding again.

A work file is keyed by what made it: its inputs (each input file's path, size and
modification time; for a folder, those of every file in it) and its settings (every
other task field, such as the audio rate, the frame size or the BioVid class, and the
layout's processing version). A later run reuses it only if both are unchanged, redoes
it otherwise, and always retries a recording that was skipped; its summary line says
what it redoes and why. A file rewritten with the same size and modification time is
not noticed.
"""

import collections
import concurrent.futures
import hashlib
import json
import logging as std_logging
import multiprocessing
import os

import cv2
import numpy as np
import tqdm
from absl import logging

from jmt_jax.data import records
from jmt_jax.errors import BadInput


def _paths(work_dir, name):
  return os.path.join(work_dir, name + ".npz"), os.path.join(work_dir, name + ".json")


def _atomic_write(path, write):
  tmp = f"{path}.tmp{os.getpid()}"
  with open(tmp, "wb") as f:
    write(f)
  os.replace(tmp, path)


def _fingerprint(path):
  if not path or not os.path.exists(path):
    return None
  if not os.path.isdir(path):
    st = os.stat(path)
    return [st.st_size, st.st_mtime_ns]
  h = hashlib.sha1()
  for entry in sorted(os.scandir(path), key=lambda e: e.name):
    st = entry.stat()
    h.update(f"{entry.name}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
  return h.hexdigest()


def made_of(task, inputs, version):
  """{"inputs": {field: [path, fingerprint]}, "settings": {field: value}} of a task whose
  fields named in `inputs` are paths it reads."""
  return {"inputs": {k: [task[k], _fingerprint(task[k])] for k in inputs if k in task},
          "settings": dict({k: v for k, v in task.items() if k not in inputs},
                           processing_version=version)}


def _why_redo(outcome, made):
  """None if `outcome` can be reused for a task `made` so, else the reason."""
  if outcome is None:
    return "new"
  if outcome["status"] == "skipped":
    return "skipped before"
  old = outcome.get("made_of", {"inputs": {}, "settings": {}})
  changed = sorted(k for part in ("inputs", "settings")
                   for k in set(old[part]) | set(made[part])
                   if old[part].get(k) != made[part].get(k))
  return f"changed {', '.join(changed)}" if changed else None


def status(work_dir, name):
  """The recorded outcome of recording `name`, or None if it has not been prepared."""
  path = _paths(work_dir, name)[1]
  if not os.path.exists(path):
    return None
  with open(path) as f:
    return json.load(f)


def store(work_dir, task, process, made):
  """Runs `process(task)` and records its outcome with what it was `made` of; returns
  that outcome (a dict)."""
  npz, meta = _paths(work_dir, task["name"])
  try:
    arrays, blobs, entry, stats = process(task)
  except BadInput as e:
    outcome = dict(name=task["name"], split=task["split"], status="skipped", reason=str(e))
  except Exception as e:  # pylint: disable=broad-except
    # One unforeseen failure must not stop the other recordings; it is reported as a skip.
    logging.debug("%s failed", task["name"], exc_info=True)
    outcome = dict(name=task["name"], split=task["split"], status="skipped",
                   reason=f"{task['name']}: {type(e).__name__}: {str(e).splitlines()[0][:200]}")
  else:
    lengths = np.array([len(b) for b in blobs], np.int64)
    blob = np.frombuffer(b"".join(blobs), np.uint8)
    _atomic_write(npz, lambda f: np.savez(f, frame_bytes=blob, frame_lengths=lengths, **arrays))
    outcome = dict(name=task["name"], split=task["split"], status="ok", entry=entry, stats=stats)
  outcome["made_of"] = made
  _atomic_write(meta, lambda f: f.write(json.dumps(outcome).encode()))
  return outcome


def _store_in_worker(work_dir, task, process, made):
  std_logging.getLogger().setLevel(std_logging.WARNING)
  return store(work_dir, task, process, made)


def run(tasks, process, work_dir, workers, inputs=(), version=""):
  """Prepares every task whose work file is missing, stale or a skip (see the module
  docstring), `workers` at a time, with a progress bar. `inputs` names the task fields
  that are paths it reads; `version` is the processing's.

  Returns the outcomes of all tasks, in task order.
  """
  os.makedirs(work_dir, exist_ok=True)
  names = [t["name"] for t in tasks]
  if len(set(names)) != len(names):
    dup = sorted({n for n in names if names.count(n) > 1})
    raise BadInput(f"recording names occur twice: {dup[:5]}")
  outcomes = {n: status(work_dir, n) for n in names}
  made = {t["name"]: made_of(t, inputs, version) for t in tasks}
  why = {t["name"]: _why_redo(outcomes[t["name"]], made[t["name"]]) for t in tasks}
  todo = [t for t in tasks if why[t["name"]] is not None]
  reasons = collections.Counter(why[t["name"]] for t in todo)
  detail = "; ".join(f"{n} {r}" for r, n in sorted(reasons.items()))
  print(f"{len(tasks) - len(todo)} of {len(tasks)} recordings already done in {work_dir}; "
        f"{len(todo)} to prepare{f' ({detail})' if todo else ''} with {workers} worker(s).",
        flush=True)
  bar = tqdm.tqdm(total=len(todo), unit="video", dynamic_ncols=True)
  if workers <= 1:
    for t in todo:
      outcomes[t["name"]] = _report(store(work_dir, t, process, made[t["name"]]), bar)
  else:
    ctx = multiprocessing.get_context("spawn")  # no fork of a process holding locks and threads
    with concurrent.futures.ProcessPoolExecutor(workers, mp_context=ctx) as pool:
      futures = [pool.submit(_store_in_worker, work_dir, t, process, made[t["name"]])
                 for t in todo]
      for fut in concurrent.futures.as_completed(futures):
        outcome = _report(fut.result(), bar)
        outcomes[outcome["name"]] = outcome
  bar.close()
  return [outcomes[n] for n in names]


def _report(outcome, bar):
  if outcome["status"] == "skipped":
    bar.write(f"skipped: {outcome['reason']}")
  bar.update(1)
  return outcome


def load(work_dir, name, frame_size):
  """The `records.Recording` of a prepared recording. JPEG crops of `frame_size` keep
  their bytes (so they decode bit-exactly as the organisers' files do); other images
  (BioVid's lossless PNG crops, crops of another size) are resized and encoded once."""
  with np.load(_paths(work_dir, name)[0]) as z:
    arrays = {k: z[k] for k in z.files}
  lengths = arrays.pop("frame_lengths")
  blob = arrays.pop("frame_bytes")
  jpegs = []
  for end, length in zip(np.cumsum(lengths), lengths):
    data = blob[end - length:end]
    bgr = cv2.imdecode(data, cv2.IMREAD_COLOR) if length else None
    if bgr is None:
      jpegs.append(b"")
    elif data[:2].tobytes() == b"\xff\xd8" and bgr.shape[:2] == (frame_size, frame_size):
      jpegs.append(data.tobytes())
    else:
      if bgr.shape[:2] != (frame_size, frame_size):
        bgr = cv2.resize(bgr, (frame_size, frame_size), interpolation=cv2.INTER_AREA)
      jpegs.append(records.encode_frame(bgr[..., ::-1]))
  return records.Recording(jpegs=jpegs, pain=int(arrays["pain"]),
                           **{k: arrays[k] for k in records.ARRAYS})
