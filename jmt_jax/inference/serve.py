"""A local web page for a trained workdir: live from the camera and microphone, or on a
recorded file.

  python -m jmt_jax.inference.serve --workdir=workdirs/demo
  python -m jmt_jax.inference.serve --workdir=workdirs/affwild2 --clip_stride=4 --port=8080

Open the address it prints (http://127.0.0.1:8000 by default) in a browser.
- Live: the page sends the camera's pictures (JPEG) and the microphone's samples over a
  WebSocket; `live.LivePredictor` answers each frame with its prediction and face box;
  the page draws the box and plots valence and arousal (or pain) over the last minute,
  marking frames without a face or with silence.
- A recorded file: uploaded (at most --max_upload_mb) into a temporary folder that is
  removed once it is predicted on, by the offline predictor for every person
  (`faces="all"`); the page shows the progress, then the plot and a CSV per person.
The server listens on 127.0.0.1 only unless --host says otherwise: it is meant for the
person in front of the machine. The client's file name is shown, never used as a path.
"""

import asyncio
import concurrent.futures
import importlib.resources
import json
import math
import os
import secrets
import shutil
import struct
import tempfile
import threading

import cv2
import numpy as np
from absl import app
from absl import flags
from absl import logging
from aiohttp import web
from ml_collections import config_flags

from jmt_jax.errors import BadInput
from jmt_jax.inference import live
from jmt_jax.inference import outputs
from jmt_jax.inference import predictor as predictor_lib
from jmt_jax.media import decode
from jmt_jax.runtime import cli

FLAGS = flags.FLAGS
FRAME, AUDIO = 1, 2  # first byte of a binary message: a JPEG picture, int16 samples
_HEADER = struct.Struct("<Bd")  # kind, time in seconds from the stream's start
PAGE_FILES = {"/": ("index.html", "text/html"), "/app.js": ("app.js", "text/javascript"),
              "/capture.js": ("capture.js", "text/javascript")}
MAX_NAME = 255


class Jobs:
  """Recorded files being predicted on, by id: one at a time, on a worker thread."""

  def __init__(self):
    self.by_id = {}
    self.pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="upload")

  def start(self, model, folder, path, name):
    job = {"state": "queued", "stage": "", "done": 0, "total": None, "name": name}
    job_id = secrets.token_hex(8)
    self.by_id[job_id] = job

    def progress(stage, done, total):
      job.update(state="running", stage=stage, done=done, total=total)

    def work():
      try:
        outcome = {"state": "done",
                   "people": model.predict_people(path, progress=progress, faces="all")}
      except cli.USER_ERRORS as e:
        outcome = {"state": "failed", "error": str(e).replace(path, name)}
      except Exception as e:  # pylint: disable=broad-except
        logging.exception("predicting on %s", name)
        outcome = {"state": "failed", "error": f"{name}: prediction failed ({type(e).__name__}"
                                               f": {e}); the server's log has the details"}
      finally:
        shutil.rmtree(folder, ignore_errors=True)
      job.update(outcome)  # only once the upload is gone

    self.pool.submit(work)
    return job_id


def _name_error(name):
  """Why an uploaded file's name is refused, or None."""
  if not name or len(name) > MAX_NAME:
    return "a file name of 1 to 255 characters"
  if "/" in name or "\\" in name or "\0" in name or name.startswith(".") or ".." in name:
    return "a plain file name, without folders"
  return None


def _error(status, message):
  return web.json_response({"error": message}, status=status)


def _finite(x):
  return None if x is None or not math.isfinite(x) else round(float(x), 7)


def _update_json(u):
  return {"frame": u.frame, "time_s": u.time_s, "computed": u.computed,
          "values": {k: float(v) for k, v in u.values.items()}, "found": u.found,
          "box": u.box, "audio_db": _finite(u.audio_db)}


def make_app(model, fps=25.0, clip_stride=1, max_upload_mb=200, max_audio_wait_s=1.0,
             on_input=None):
  """The aiohttp application around `model` (a `predictor.Predictor`). `on_input(kind,
  time_s, data)`, if given, sees each decoded live input (a frame's RGB, a piece's
  samples) as the predictor gets it."""
  limit = int(max_upload_mb * 2**20)
  jobs = Jobs()
  # One thread runs every live stream's model calls, in the order they came.
  worker = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="live")
  info = {"task": model.config.task, "inputs": sorted(model.modalities), "fps": fps,
          "voice": model.reads("audio"), "audio_rate": int(model.rates["audio_rate"]),
          "clip_stride": clip_stride, "max_upload_mb": max_upload_mb, "step": int(model.step)}
  warmed = threading.Event()

  def warm_up():
    live.LivePredictor(model, fps, clip_stride, max_audio_wait_s=max_audio_wait_s).warm_up()
    warmed.set()

  async def page(request):
    name, kind = PAGE_FILES[request.path]
    text = importlib.resources.files("jmt_jax.inference").joinpath("web", name).read_text(
        encoding="utf-8")
    return web.Response(text=text, content_type=kind)

  async def about(request):
    del request
    return web.json_response(info)

  async def stream(request):
    ws = web.WebSocketResponse(max_msg_size=16 * 2**20)
    await ws.prepare(request)
    loop = asyncio.get_running_loop()
    predictor = None

    async def send(updates):
      if updates:
        await ws.send_json({"type": "updates", "items": [_update_json(u) for u in updates]})

    async for msg in ws:
      try:
        if msg.type == web.WSMsgType.TEXT:
          hears = bool(json.loads(msg.data).get("audio"))
          if hears and not info["voice"]:
            await ws.send_json({"type": "error", "message": (
                f"this model has no voice input (its inputs: {', '.join(info['inputs'])}): "
                "the microphone is not used")})
          await loop.run_in_executor(worker, warmed.wait)
          predictor = live.LivePredictor(model, fps, clip_stride, audio=hears and info["voice"],
                                         max_audio_wait_s=max_audio_wait_s)
          await ws.send_json({"type": "ready", **info})
        elif msg.type == web.WSMsgType.BINARY and predictor is not None:
          kind, time_s = _HEADER.unpack_from(msg.data)
          body = msg.data[_HEADER.size:]
          if kind == FRAME:
            rgb = cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR)
            if rgb is None:
              raise BadInput("a camera picture could not be decoded as a JPEG")
            rgb = cv2.cvtColor(rgb, cv2.COLOR_BGR2RGB)
            data, call = rgb, predictor.add_frame
          elif kind == AUDIO:
            data, call = np.frombuffer(body, "<i2"), predictor.add_audio
          else:
            raise BadInput(f"unknown message kind {kind}")
          if on_input is not None:
            on_input(kind, time_s, data)
          await send(await loop.run_in_executor(worker, call, data, time_s))
          if kind == FRAME:
            await ws.send_json({"type": "ack", "time_s": time_s})
      except (BadInput, ValueError) as e:
        await ws.send_json({"type": "error", "message": str(e)})
      except ConnectionResetError:  # the page went away while answers were on their way
        break
    return ws

  async def upload(request):
    if not request.content_type.startswith("multipart/"):
      return _error(400, "send the video as a multipart form upload")
    reader = await request.multipart()
    field = await reader.next()
    if field is None or not field.filename:
      return _error(400, "no file in the upload")
    name = field.filename
    why = _name_error(name)
    if why:
      return _error(400, f"{name!r}: give {why}")
    folder = tempfile.mkdtemp(prefix="jmt_jax_upload_")
    path = os.path.join(folder, "upload")
    job_id = None
    try:
      size = 0
      with open(path, "wb") as f:
        while chunk := await field.read_chunk(2**20):
          size += len(chunk)
          if size > limit:
            return _error(413, f"{name}: larger than the server's limit of {max_upload_mb} MB "
                               "(--max_upload_mb)")
          f.write(chunk)
      try:
        with decode.Video(path):
          pass
      except (BadInput, OSError, ValueError) as e:
        reason = str(e).replace(path + ": ", "").replace(path, name)
        return _error(400, f"{name}: not a video this server can read ({reason})")
      job_id = jobs.start(model, folder, path, name)  # which removes the folder when done
      return web.json_response({"job": job_id})
    finally:
      if job_id is None:
        shutil.rmtree(folder, ignore_errors=True)

  def job_of(request):
    job = jobs.by_id.get(request.match_info["job"])
    if job is None:
      raise web.HTTPNotFound(text=json.dumps({"error": "no such job"}),
                             content_type="application/json")
    return job

  async def job_state(request):
    job = job_of(request)
    out = {k: job.get(k) for k in ("state", "stage", "done", "total", "name", "error")}
    if job["state"] == "done":
      out["people"] = [{"person": p.person, "fps": p.fps, "time_s": p.time_s.tolist(),
                        "values": {k: v.tolist() for k, v in p.values.items()},
                        "found": {k: v.tolist() for k, v in p.found.items()}}
                       for p in job["people"]]
    return web.json_response(out)

  async def job_csv(request):
    job = job_of(request)
    people = {str(p.person): p for p in job.get("people", [])}
    person = people.get(request.match_info["person"])
    if person is None:
      raise web.HTTPNotFound(text="no such person")
    stem = os.path.splitext(job["name"])[0]
    suffix = f"_person{person.person}" if person.person else ""
    return web.Response(text=outputs.csv_text(person), content_type="text/csv", headers={
        "Content-Disposition": f'attachment; filename="{stem}{suffix}.csv"'})

  application = web.Application(client_max_size=limit + 2**20)
  application.add_routes([web.get(p, page) for p in PAGE_FILES] + [
      web.get("/info", about), web.get("/live", stream), web.post("/upload", upload),
      web.get("/jobs/{job}", job_state), web.get("/jobs/{job}/csv/{person}", job_csv)])

  async def start_warm_up(application):
    del application
    threading.Thread(target=warm_up, daemon=True).start()

  application.on_startup.append(start_warm_up)
  return application


class Server:
  """`make_app`'s application served on `host:port` from a thread of its own (port 0: any
  free one); `url` once started."""

  def __init__(self, application, host="127.0.0.1", port=0):
    self.application, self.host, self.port = application, host, port
    self.url = None
    self._loop = asyncio.new_event_loop()
    self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

  def start(self):
    self._thread.start()
    asyncio.run_coroutine_threadsafe(self._start(), self._loop).result()
    return self

  async def _start(self):
    self._runner = web.AppRunner(self.application)
    await self._runner.setup()
    site = web.TCPSite(self._runner, self.host, self.port)
    await site.start()
    port = self._runner.addresses[0][1]
    self.url = f"http://{self.host}:{port}"

  def stop(self):
    asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result()
    self._loop.call_soon_threadsafe(self._loop.stop)
    self._thread.join()


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")

  def work():
    model = predictor_lib.Predictor(FLAGS.workdir, predictor_lib.command_line_config(
        FLAGS.workdir, FLAGS.config))
    application = make_app(model, FLAGS.fps, FLAGS.clip_stride, FLAGS.max_upload_mb,
                           FLAGS.max_audio_wait_s)
    logging.info("jmt_jax: step %d of %s", model.step, FLAGS.workdir)
    print(f"Open http://{FLAGS.host}:{FLAGS.port} (Ctrl-C stops)", flush=True)
    web.run_app(application, host=FLAGS.host, port=FLAGS.port, print=None)

  cli.run(None, work)


def _define_flags():
  flags.DEFINE_string("workdir", None, "A training workdir (checkpoints/ and config.json).")
  config_flags.DEFINE_config_file(
    "config", None, "Config file for workdirs without config.json, e.g. "
    "configs/demo.py:tiny.", lock_config=True)
  flags.DEFINE_string("host", "127.0.0.1", "Address to listen on (127.0.0.1: this machine "
                      "only).")
  flags.DEFINE_integer("port", 8000, "Port to listen on.")
  flags.DEFINE_float("fps", 25.0, "The live stream's frame rate: a prediction per frame.")
  flags.DEFINE_integer("clip_stride", 1, "Live: embed and predict every k-th frame only, "
                       "the frames between carrying the last prediction (slow hardware).")
  flags.DEFINE_float("max_upload_mb", 200, "Largest recorded file accepted, in MB.")
  flags.DEFINE_float("max_audio_wait_s", 1.0, "Live: how long a frame waits for its "
                     "audio before the missing audio is taken as silence.")
  flags.mark_flags_as_required(["workdir"])


if __name__ == "__main__":
  cli.app_run(main, _define_flags)
