"""The local web app (`python -m jmt_jax.inference.serve`): its HTTP answers, and its page
in a real headless Chromium whose fake camera and microphone play a recorded clip."""

import asyncio
import io
import json
import os
import shutil
import socket
import struct
import subprocess
import time
import urllib.error
import urllib.request
import uuid

import numpy as np
import pytest

import raw_trees
import recordings
from conftest import ROOT
from conftest import module_command
from conftest import run
from conftest import subprocess_env
from jmt_jax.inference import live
from jmt_jax.inference import serve

pytestmark = pytest.mark.xdist_group("predict")

LIVE_FPS = 10  # the demo model's rate


@pytest.fixture(scope="module")
def server(va_model):
  inputs = []
  application = serve.make_app(va_model, fps=LIVE_FPS, max_upload_mb=1,
                               on_input=lambda *a: inputs.append(a))
  running = serve.Server(application).start()
  running.inputs = inputs
  yield running
  running.stop()


def _request(url, body=None, headers=None):
  """(status, body bytes) of a GET (or a POST of `body`)."""
  try:
    with urllib.request.urlopen(urllib.request.Request(url, body, headers or {})) as r:
      return r.status, r.read()
  except urllib.error.HTTPError as e:
    return e.code, e.read()


def _upload(url, name, data):
  """(status, JSON answer) of uploading `data` as a file called `name`."""
  boundary = uuid.uuid4().hex
  body = (f'--{boundary}\r\nContent-Disposition: form-data; name="video"; filename="{name}"\r\n'
          f"Content-Type: application/octet-stream\r\n\r\n").encode() + data + (
              f"\r\n--{boundary}--\r\n").encode()
  status, answer = _request(f"{url}/upload", body,
                            {"Content-Type": f"multipart/form-data; boundary={boundary}"})
  return status, json.loads(answer)


def _uploads_left():
  return [d for d in os.listdir(os.environ.get("TMPDIR", "/tmp"))
          if d.startswith("jmt_jax_upload_")]


def test_the_page_and_its_scripts_are_served_and_nothing_else(server):
  for path, marker in [("/", b"<title>jmt_jax"), ("/app.js", b"WebSocket"),
                       ("/capture.js", b"registerProcessor")]:
    status, body = _request(server.url + path)
    assert status == 200 and marker in body
  for path in ["/web/app.js", "/../setup.py", "/%2e%2e/setup.py", "/app.js/..%2f..%2fserve.py"]:
    assert _request(server.url + path)[0] == 404
  status, body = _request(server.url + "/info")
  assert json.loads(body)["inputs"] == ["audio", "video"] and json.loads(body)["voice"]


@pytest.mark.parametrize("name", ["../../etc/passwd", "..\\x.mp4", "/tmp/x.mp4", ".hidden.mp4",
                                  "a/b.mp4"])
def test_an_upload_named_with_a_path_is_refused(server, videos, name):
  before = _uploads_left()
  with open(videos["face.mp4"][0], "rb") as f:
    status, answer = _upload(server.url, name, f.read())
  assert status == 400 and "plain file name" in answer["error"]
  assert _uploads_left() == before


def test_an_oversized_upload_is_refused_and_removed(server):
  before = _uploads_left()
  status, answer = _upload(server.url, "big.mp4", b"\0" * (2 * 2**20))
  assert status == 413 and "larger than the server's limit of 1 MB" in answer["error"]
  assert _uploads_left() == before


def test_a_file_that_is_not_a_video_is_refused_by_its_name(server):
  before = _uploads_left()
  status, answer = _upload(server.url, "notes.mp4", b"these are notes, not a video\n" * 50)
  assert status == 400
  assert answer["error"].startswith("notes.mp4: not a video this server can read")
  assert "jmt_jax_upload_" not in answer["error"]  # the server's own path stays its own
  assert _uploads_left() == before


@pytest.mark.slow
def test_an_uploaded_video_is_predicted_for_every_person_and_removed(server, va_model, videos):
  path, _ = videos["face.mp4"]
  before = _uploads_left()
  with open(path, "rb") as f:
    status, answer = _upload(server.url, "my talk.mp4", f.read())
  assert status == 200
  for _ in range(600):
    state = json.loads(_request(f"{server.url}/jobs/{answer['job']}")[1])
    if state["state"] in ("done", "failed"):
      break
    time.sleep(0.1)
  assert state["state"] == "done", state
  people = va_model.predict_people(path, progress=False, faces="all")
  assert [p["person"] for p in state["people"]] == [p.person for p in people]
  for got, person in zip(state["people"], people):
    np.testing.assert_allclose(got["values"]["valence"], person.values["valence"], atol=1e-6)
    status, text = _request(f"{server.url}/jobs/{answer['job']}/csv/{person.person}")
    assert status == 200 and text.decode().startswith("frame,time_s,face_found,audio_found,")
    assert len(text.decode().splitlines()) == person.num_frames + 1
  assert _uploads_left() == before
  assert _request(f"{server.url}/jobs/0123/csv/1")[0] == 404


@pytest.mark.slow
def test_the_command_line_serves_the_workdirs_model(va_workdir):
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
  proc = subprocess.Popen(module_command("jmt_jax.inference.serve", f"--workdir={va_workdir}",
                                         f"--port={port}", "--max_upload_mb=3"),
                          cwd=ROOT, env=subprocess_env(), stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)
  try:
    line = ""
    while "Open http" not in line and proc.poll() is None:
      line = proc.stdout.readline()
    assert f"Open http://127.0.0.1:{port}" in line
    for _ in range(100):
      try:
        status, body = _request(f"http://127.0.0.1:{port}/info")
        break
      except urllib.error.URLError:
        time.sleep(0.2)
    assert status == 200 and json.loads(body)["max_upload_mb"] == 3
  finally:
    proc.terminate()
    proc.wait(timeout=30)


def test_the_command_line_needs_a_workdir():
  proc = run(module_command("jmt_jax.inference.serve"), timeout=120)
  assert proc.returncode != 0 and "--workdir" in proc.stderr


# ------------------------------------------------------------------ the page in Chromium
CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")


def _chromium(camera, microphone, allow=True):
  """Headless Chromium whose camera and microphone play `camera` (Y4M) and `microphone`
  (WAV); with `allow=False`, one that refuses a page the camera, as a person may."""
  from selenium import webdriver  # pylint: disable=import-outside-toplevel
  from selenium.webdriver.chrome import service  # pylint: disable=import-outside-toplevel
  options = webdriver.ChromeOptions()
  options.binary_location = CHROMIUM
  for flag in ["--headless=new", "--no-sandbox", "--window-size=1200,800",
               "--use-fake-device-for-media-stream",
               f"--use-file-for-fake-video-capture={camera}",
               f"--use-file-for-fake-audio-capture={microphone}"]:
    options.add_argument(flag)
  options.add_argument("--use-fake-ui-for-media-stream" if allow else "--deny-permission-prompts")
  driver = webdriver.Chrome(options=options, service=service.Service(CHROMEDRIVER))
  driver.implicitly_wait(5)
  return driver


@pytest.fixture(scope="module")
def camera(tmp_path_factory):
  if not (CHROMIUM and CHROMEDRIVER):
    pytest.skip("Debian's chromium and chromium-driver are not installed (.ci/run installs them)")
  frames, _ = raw_trees.moving_face_video(60, no_face=range(30, 40))
  return recordings.write_fake_camera(str(tmp_path_factory.mktemp("camera")), frames, LIVE_FPS)


@pytest.fixture(scope="module")
def browser(camera):
  driver = _chromium(*camera)
  yield driver
  driver.quit()


def _wait(driver, script, timeout=60):
  """The value of `script` once it is truthy."""
  end = time.monotonic() + timeout
  while time.monotonic() < end:
    value = driver.execute_script(script)
    if value:
      return value
    time.sleep(0.2)
  raise AssertionError(f"{script} still false after {timeout} s")


@pytest.mark.slow
def test_the_live_page_shows_the_predictions_the_server_makes(server, browser, va_model):
  from selenium.webdriver.common.by import By  # pylint: disable=import-outside-toplevel
  browser.get(server.url)
  _wait(browser, "return document.getElementById('model').textContent.includes('step')")
  server.inputs.clear()
  browser.find_element(By.ID, "start").click()
  _wait(browser, "return window.jmt.received.length >= 50")
  browser.find_element(By.ID, "stop").click()
  time.sleep(0.5)  # answers still on their way
  received = browser.execute_script("return window.jmt.received")
  assert browser.execute_script("return window.jmt.errors") == []
  # The same inputs, in the order the server took them, through a fresh predictor.
  replay = live.LivePredictor(va_model, fps=LIVE_FPS, audio=True)
  expected = {}
  for kind, time_s, data in list(server.inputs):
    call = replay.add_frame if kind == serve.FRAME else replay.add_audio
    expected.update({u.frame: u for u in call(data, time_s)})
  assert len(received) >= 50 and any(k == serve.AUDIO for k, _, _ in server.inputs)
  for got in received:
    want = expected[got["frame"]]
    for column, value in want.values.items():
      assert abs(got["values"][column] - value) <= 1e-5, (got, want)
    assert got["found"] == want.found
  assert any(u["found"]["audio_found"] for u in received)
  faces = [u for u in received if u["found"]["face_found"]]
  assert faces and len(faces) < len(received)  # the clip's face-free frames are seen as such
  # The last box is on the overlay, scaled from the picture to the page.
  box = browser.execute_script("""
      const g = document.getElementById('overlay').getContext('2d');
      const data = g.getImageData(0, 0, 480, 360).data;
      let x0 = 1e9, y0 = 1e9, x1 = -1, y1 = -1;
      for (let i = 0; i < data.length; i += 4) {
        if (data[i + 1] > 200 && data[i] < 60 && data[i + 3] > 200) {
          const x = (i / 4) % 480, y = Math.floor(i / 4 / 480);
          x0 = Math.min(x0, x); y0 = Math.min(y0, y); x1 = Math.max(x1, x); y1 = Math.max(y1, y);
        }
      }
      return [x0, y0, x1, y1];""")
  last = received[-1]
  if last["box"]:
    scale = 480 / 320  # the clip is 320x240
    np.testing.assert_allclose(box, np.array(last["box"]) * scale, atol=3)
  assert browser.execute_script("return window.jmt.boxes") > 0


@pytest.mark.slow
def test_the_page_uploads_a_video_and_offers_its_csv(server, browser, videos):
  from selenium.webdriver.common.by import By  # pylint: disable=import-outside-toplevel
  browser.get(server.url)
  _wait(browser, "return document.getElementById('model').textContent.includes('step')")
  browser.find_element(By.ID, "tab-file").click()
  browser.find_element(By.ID, "file-input").send_keys(videos["face.mp4"][0])
  browser.find_element(By.ID, "upload").click()
  _wait(browser, "return document.getElementById('file-status').textContent.startsWith('done')")
  links = browser.find_elements(By.CSS_SELECTOR, "#people a")
  assert links and all("/csv/" in a.get_attribute("href") for a in links)
  status, text = _request(links[0].get_attribute("href"))
  assert status == 200 and text.startswith(b"frame,time_s,face_found")
  assert browser.execute_script("return window.jmt.errors") == []


@pytest.mark.slow
def test_the_page_says_what_is_wrong_with_an_upload(server, browser, tmp_path):
  from selenium.webdriver.common.by import By  # pylint: disable=import-outside-toplevel
  notes = tmp_path / "notes.mp4"
  notes.write_bytes(b"not a video\n" * 100)
  browser.get(server.url)
  _wait(browser, "return document.getElementById('model').textContent.includes('step')")
  browser.find_element(By.ID, "tab-file").click()
  browser.find_element(By.ID, "file-input").send_keys(str(notes))
  browser.find_element(By.ID, "upload").click()
  message = _wait(browser, "return document.getElementById('file-message').textContent")
  assert message.startswith("notes.mp4: not a video this server can read")
  big = tmp_path / "big.mp4"
  big.write_bytes(io.BytesIO(b"\0" * (2 * 2**20)).getvalue())
  browser.find_element(By.ID, "file-input").send_keys(str(big))
  browser.find_element(By.ID, "upload").click()
  _wait(browser, "return document.getElementById('file-message').textContent.includes('limit')")


@pytest.mark.slow
def test_a_refused_camera_is_said_on_the_page(server, camera):
  from selenium.webdriver.common.by import By  # pylint: disable=import-outside-toplevel
  driver = _chromium(*camera, allow=False)
  try:
    driver.get(server.url)
    _wait(driver, "return document.getElementById('model').textContent.includes('step')")
    driver.find_element(By.ID, "start").click()
    message = _wait(driver, "return document.getElementById('live-message').textContent")
    assert message.startswith("The browser refused the camera or the microphone")
  finally:
    driver.quit()


@pytest.mark.slow
def test_a_microphone_for_a_model_without_a_voice_is_said_on_the_page(
    tmp_path_factory, data_dir, browser):
  from selenium.webdriver.common.by import By  # pylint: disable=import-outside-toplevel
  model = recordings.make_predictor(recordings.make_workdir(tmp_path_factory, data_dir,
                                                            "video,tiny"))
  running = serve.Server(serve.make_app(model, fps=LIVE_FPS)).start()
  try:
    browser.get(running.url)
    _wait(browser, "return document.getElementById('model').textContent.includes('step')")
    mic = browser.find_element(By.ID, "use-mic")
    assert not mic.is_selected()  # unticked for a model without a voice...
    mic.click()  # ...and ticked anyway
    browser.find_element(By.ID, "start").click()
    message = _wait(browser, "return document.getElementById('live-message').textContent")
    assert message.startswith("This model has no voice input (its inputs: video)")
    _wait(browser, "return window.jmt.received.length >= 5")  # the camera alone goes on
    browser.find_element(By.ID, "stop").click()
  finally:
    running.stop()


def test_a_picture_that_is_not_a_jpeg_is_answered_with_a_message(server):
  import aiohttp  # pylint: disable=import-outside-toplevel

  async def talk():
    async with aiohttp.ClientSession() as session:
      async with session.ws_connect(server.url + "/live") as ws:
        await ws.send_str(json.dumps({"type": "start", "audio": False}))
        assert (await ws.receive_json())["type"] == "ready"
        await ws.send_bytes(struct.pack("<Bd", serve.FRAME, 0.0) + b"not a jpeg")
        return await ws.receive_json()

  answer = asyncio.run(talk())
  assert answer == {"type": "error", "message": "a camera picture could not be decoded as a JPEG"}
