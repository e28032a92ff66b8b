"""Per-recording work files: the resumable, parallel first stage of preparation.

Each recording is decoded once into `<out_dir>/work/<name>.npz` (its frames as the
encoded image files, labels and signals) and `<name>.json` (its table entry and
counts, or why it was skipped). Both are written to a temporary name and renamed, so
a killed run leaves either a finished recording or nothing, and the next run only
does what is missing. The shards are then written from the work files (`builder`),
which also lets them be rewritten (another segment length) without decoding again.
"""

import concurrent.futures
import json
import logging as std_logging
import multiprocessing
import os

import cv2
import numpy as np
import tqdm
from absl import logging

from jmt_jax.data import records
from jmt_jax.prepare.errors import BadInput


def _paths(work_dir, name):
  return os.path.join(work_dir, name + ".npz"), os.path.join(work_dir, name + ".json")


def _atomic_write(path, write):
  tmp = f"{path}.tmp{os.getpid()}"
  with open(tmp, "wb") as f:
    write(f)
  os.replace(tmp, path)


def status(work_dir, name):
  """The recorded outcome of recording `name`, or None if it has not been prepared."""
  path = _paths(work_dir, name)[1]
  if not os.path.exists(path):
    return None
  with open(path) as f:
    return json.load(f)


def store(work_dir, task, process):
  """Runs `process(task)` and records its outcome; returns that outcome (a dict)."""
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
  _atomic_write(meta, lambda f: f.write(json.dumps(outcome).encode()))
  return outcome


def _store_in_worker(work_dir, task, process):
  std_logging.getLogger().setLevel(std_logging.WARNING)
  return store(work_dir, task, process)


def run(tasks, process, work_dir, workers):
  """Prepares every task not yet done, `workers` at a time, with a progress bar.

  Returns the outcomes of all tasks, in task order.
  """
  os.makedirs(work_dir, exist_ok=True)
  names = [t["name"] for t in tasks]
  if len(set(names)) != len(names):
    dup = sorted({n for n in names if names.count(n) > 1})
    raise BadInput(f"recording names occur twice: {dup[:5]}")
  outcomes = {n: status(work_dir, n) for n in names}
  todo = [t for t in tasks if outcomes[t["name"]] is None]
  print(f"{len(tasks) - len(todo)} of {len(tasks)} recordings already done in {work_dir}; "
        f"{len(todo)} to prepare with {workers} worker(s).", flush=True)
  bar = tqdm.tqdm(total=len(todo), unit="video", dynamic_ncols=True)
  if workers <= 1:
    for t in todo:
      outcomes[t["name"]] = _report(store(work_dir, t, process), bar)
  else:
    ctx = multiprocessing.get_context("spawn")  # no fork of a process holding locks and threads
    with concurrent.futures.ProcessPoolExecutor(workers, mp_context=ctx) as pool:
      futures = [pool.submit(_store_in_worker, work_dir, t, process) for t in todo]
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
  return records.Recording(jpegs=jpegs, face_found=arrays["face_found"],
                           valence=arrays["valence"], arousal=arrays["arousal"],
                           audio=arrays["audio"], biosignal=arrays["biosignal"],
                           pain=int(arrays["pain"]))
