// The page of `python -m jmt_jax.inference.serve`: live from the camera and microphone
// over a WebSocket, or a recorded file uploaded and predicted on.
"use strict";

const FRAME = 1, AUDIO = 2;  // a binary message's first byte (serve.py)
const WINDOW_S = 60;  // the live plot's span
const MAX_IN_FLIGHT = 2;  // pictures sent and not yet answered: more only adds latency
const SILENT_DB = -50;  // audio below this level (dBFS) is quiet...
const QUIET_S = 0.3;  // ...and shown as silence once quiet this long (not between syllables)
const COLOURS = {valence: "#1f77b4", arousal: "#ff7f0e", pain_probability: "#d62728"};
const $ = (id) => document.getElementById(id);

// What a test (or a curious person at the console) can read back.
window.jmt = {received: [], errors: [], boxes: 0};

let info = null;

function showError(where, text) {
  $(where).textContent = text;
  window.jmt.errors.push(text);
}

function columnsOf(values) {
  return Object.keys(values).filter((k) => k in COLOURS);
}

function legend() {
  const dims = info.task === "pain" ? ["pain_probability"] : ["valence", "arousal"];
  $("legend").innerHTML = dims.map((d) =>
    `<span><i class="swatch" style="background:${COLOURS[d]}"></i>${d}</span>`).join("") +
    '<span><i class="swatch" style="background:#ddd"></i>no face</span>' +
    (info.voice ? '<span><i class="swatch" style="background:#f6c6c6"></i>silence</span>' : "");
}

// Lines over time with missing stretches shaded: `rows` are
// {t, values, face, quiet} and the x axis runs from t0 to t1 seconds.
function drawPlot(canvas, rows, t0, t1) {
  const g = canvas.getContext("2d");
  const w = canvas.width, h = canvas.height, left = 40, bottom = 20;
  const pain = info.task === "pain";
  const [lo, hi] = pain ? [0, 1] : [-1, 1];
  const x = (t) => left + (w - left - 5) * (t - t0) / Math.max(t1 - t0, 1e-6);
  const y = (v) => 5 + (h - bottom - 10) * (hi - v) / (hi - lo);
  g.clearRect(0, 0, w, h);
  g.fillStyle = "#fff";
  g.fillRect(0, 0, w, h);
  const step = rows.length > 1 ? rows[1].t - rows[0].t : 0.04;
  for (const r of rows) {
    if (!r.face) { g.fillStyle = "#ddd"; g.fillRect(x(r.t), 5, x(r.t + step) - x(r.t) + 1, h - bottom - 10); }
    if (r.quiet) { g.fillStyle = "#f6c6c6"; g.fillRect(x(r.t), h - bottom - 12, x(r.t + step) - x(r.t) + 1, 7); }
  }
  g.strokeStyle = "#999";
  g.fillStyle = "#333";
  g.font = "11px sans-serif";
  for (const v of pain ? [0, 0.5, 1] : [-1, 0, 1]) {
    g.beginPath(); g.moveTo(left, y(v)); g.lineTo(w - 5, y(v)); g.stroke();
    g.fillText(v.toFixed(1), 5, y(v) + 4);
  }
  g.fillText(`${t0.toFixed(0)} s`, left, h - 4);
  g.fillText(`${t1.toFixed(0)} s`, w - 40, h - 4);
  if (!rows.length) return;
  for (const c of columnsOf(rows[0].values)) {
    g.strokeStyle = COLOURS[c];
    g.lineWidth = 2;
    g.beginPath();
    rows.forEach((r, i) => (i ? g.lineTo : g.moveTo).call(g, x(r.t), y(r.values[c])));
    g.stroke();
    g.lineWidth = 1;
  }
}

// ---------------------------------------------------------------- live
const live = {ws: null, stream: null, audio: null, timer: null, t0: 0, inFlight: 0,
              rows: [], size: [480, 360], sentAt: new Map(), latency: [], quietFrames: 0};

function drawBox(update) {
  const g = $("overlay").getContext("2d");
  g.clearRect(0, 0, 480, 360);
  if (!update.box) return;
  const [sx, sy] = [480 / live.size[0], 360 / live.size[1]];
  const [x0, y0, x1, y1] = update.box;
  g.strokeStyle = "#00ff00";
  g.lineWidth = 3;
  g.strokeRect(x0 * sx, y0 * sy, (x1 - x0) * sx, (y1 - y0) * sy);
  window.jmt.boxes += 1;
}

function onUpdates(items) {
  for (const u of items) {
    window.jmt.received.push(u);
    const heard = u.found[Object.keys(u.found).find((k) => k !== "face_found")];
    live.quietFrames = heard && u.audio_db !== null && u.audio_db >= SILENT_DB ? 0 :
        live.quietFrames + 1;
    const quiet = info.voice && live.quietFrames >= QUIET_S * info.fps;
    live.rows.push({t: u.time_s, values: u.values, face: u.found.face_found !== false, quiet});
    const sent = live.sentAt.get(u.frame);
    if (sent !== undefined) { live.latency.push(performance.now() - sent); live.sentAt.delete(u.frame); }
  }
  const last = items[items.length - 1];
  drawBox(last);
  const t1 = Math.max(WINDOW_S, last.time_s);
  while (live.rows.length && live.rows[0].t < t1 - WINDOW_S) live.rows.shift();
  drawPlot($("plot"), live.rows, t1 - WINDOW_S, t1);
  const recent = live.latency.slice(-50).sort((a, b) => a - b);
  const median = recent.length ? recent[Math.floor(recent.length / 2)] : NaN;
  const values = columnsOf(last.values).map((c) => `${c} ${last.values[c].toFixed(2)}`).join("  ");
  $("status").textContent = `frame ${last.frame}  ${values}  latency ${median.toFixed(0)} ms` +
    (last.found.face_found === false ? "  (no face)" : "");
}

function packet(kind, time, body) {
  const out = new Uint8Array(9 + body.byteLength);
  const view = new DataView(out.buffer);
  view.setUint8(0, kind);
  view.setFloat64(1, time, true);
  out.set(new Uint8Array(body), 9);
  return out.buffer;
}

function sendFrame() {
  const video = $("video");
  if (live.inFlight >= MAX_IN_FLIGHT || !video.videoWidth || live.ws.readyState !== 1) return;
  const time = (performance.now() - live.t0) / 1000;
  const canvas = document.createElement("canvas");
  live.size = [video.videoWidth, video.videoHeight];
  [canvas.width, canvas.height] = live.size;
  canvas.getContext("2d").drawImage(video, 0, 0);
  live.inFlight += 1;
  canvas.toBlob(async (blob) => {
    if (live.ws && live.ws.readyState === 1) {
      live.sentAt.set(Math.round(time * info.fps), performance.now());
      live.ws.send(packet(FRAME, time, await blob.arrayBuffer()));
    } else {
      live.inFlight -= 1;
    }
  }, "image/jpeg", 0.85);
}

async function startAudio() {
  const context = new AudioContext({sampleRate: info.audio_rate});
  await context.audioWorklet.addModule("/capture.js");
  const source = context.createMediaStreamSource(live.stream);
  const node = new AudioWorkletNode(context, "capture");
  const mute = context.createGain();
  mute.gain.value = 0;
  source.connect(node).connect(mute).connect(context.destination);
  // The audio clock's time of the stream's start.
  const offset = (performance.now() - live.t0) / 1000 - context.currentTime;
  node.port.onmessage = (e) => {
    if (live.ws && live.ws.readyState === 1) {
      live.ws.send(packet(AUDIO, e.data.time + offset, e.data.samples));
    }
  };
  live.audio = context;
}

async function startLive() {
  $("live-message").textContent = "";
  const wantMic = $("use-mic").checked;
  if (wantMic && !info.voice) {
    showError("live-message", `This model has no voice input (its inputs: ${info.inputs.join(", ")}): ` +
              "the microphone is not used.");
  }
  const withMic = wantMic && info.voice;
  try {
    live.stream = await navigator.mediaDevices.getUserMedia(
        {video: {width: 640, height: 480}, audio: withMic});
  } catch (e) {
    const why = e.name === "NotAllowedError" ?
        "The browser refused the camera" + (withMic ? " or the microphone" : "") +
        ": allow them for this page (the icon left of the address) and press Start again." :
        e.name === "NotFoundError" ? "No camera" + (withMic ? " or microphone" : "") + " was found." :
        `The camera could not be opened (${e.name}: ${e.message}).`;
    showError("live-message", why);
    return;
  }
  $("video").srcObject = live.stream;
  await $("video").play();
  live.rows = [];
  live.inFlight = 0;
  live.quietFrames = 0;
  live.ws = new WebSocket(`ws://${location.host}/live`);
  live.ws.onopen = () => live.ws.send(JSON.stringify({type: "start", audio: withMic}));
  live.ws.onmessage = async (e) => {
    const msg = JSON.parse(e.data);
    if (msg.type === "ready") {
      live.t0 = performance.now();
      if (withMic) await startAudio();
      live.timer = setInterval(sendFrame, 1000 / info.fps);
      $("status").textContent = "Streaming...";
    } else if (msg.type === "updates") {
      onUpdates(msg.items);
    } else if (msg.type === "ack") {
      live.inFlight = Math.max(0, live.inFlight - 1);
    } else if (msg.type === "error") {
      showError("live-message", msg.message);
    }
  };
  live.ws.onclose = () => stopLive();
  $("start").disabled = true;
  $("stop").disabled = false;
}

function stopLive() {
  clearInterval(live.timer);
  if (live.audio) live.audio.close();
  if (live.stream) live.stream.getTracks().forEach((t) => t.stop());
  if (live.ws && live.ws.readyState <= 1) live.ws.close();
  Object.assign(live, {ws: null, stream: null, audio: null, timer: null});
  $("start").disabled = false;
  $("stop").disabled = true;
}

// ---------------------------------------------------------------- recorded file
function poll(job) {
  fetch(`/jobs/${job}`).then((r) => r.json()).then((state) => {
    if (state.state === "failed") {
      showError("file-message", state.error);
      return;
    }
    if (state.state !== "done") {
      $("file-status").textContent = `${state.stage || "waiting"}: ${state.done}` +
        (state.total ? ` of ${state.total}` : "");
      if (state.total) $("file-progress").value = state.done / state.total;
      setTimeout(() => poll(job), 500);
      return;
    }
    $("file-progress").value = 1;
    $("file-status").textContent = `done: ${state.people.length} ` +
      (state.people.length === 1 ? "person" : "people");
    const first = state.people[0];
    const rows = first.time_s.map((t, i) => ({
      t, face: first.found.face_found ? first.found.face_found[i] : true, quiet: false,
      values: Object.fromEntries(Object.entries(first.values).map(([k, v]) => [k, v[i]]))}));
    $("file-plot").hidden = false;
    drawPlot($("file-plot"), rows, 0, rows.length ? rows[rows.length - 1].t : 1);
    $("people").innerHTML = "Per-frame CSV: " + state.people.map((p) =>
      `<a href="/jobs/${job}/csv/${p.person}" download>${p.person ? "person " + p.person : "the face"}</a>`
    ).join("") + (state.people.length > 1 ? " (the plot shows person 1)" : "");
  });
}

function upload() {
  const file = $("file-input").files[0];
  $("file-message").textContent = "";
  $("people").innerHTML = "";
  if (!file) { showError("file-message", "Choose a video file first."); return; }
  if (file.size > info.max_upload_mb * 2 ** 20) {
    showError("file-message", `${file.name}: larger than the server's limit of ${info.max_upload_mb} MB.`);
    return;
  }
  const form = new FormData();
  form.append("video", file, file.name);
  const xhr = new XMLHttpRequest();
  xhr.open("POST", "/upload");
  xhr.upload.onprogress = (e) => {
    $("file-progress").value = e.lengthComputable ? e.loaded / e.total : 0;
    $("file-status").textContent = "uploading";
  };
  xhr.onload = () => {
    let answer = {};
    try { answer = JSON.parse(xhr.responseText); } catch (e) { answer = {error: xhr.statusText}; }
    if (xhr.status !== 200) { showError("file-message", answer.error || xhr.statusText); return; }
    $("file-progress").value = 0;
    poll(answer.job);
  };
  xhr.onerror = () => showError("file-message", "The upload failed: is the server still running?");
  xhr.send(form);
}

// ---------------------------------------------------------------- start
function tab(name) {
  for (const t of ["live", "file"]) {
    $(t).hidden = t !== name;
    $(`tab-${t}`).classList.toggle("on", t === name);
  }
}

fetch("/info").then((r) => r.json()).then((i) => {
  info = i;
  $("model").textContent = `Model: ${i.task === "pain" ? "pain" : "valence and arousal"} from ` +
    `${i.inputs.join(" + ")}, step ${i.step}; live at ${i.fps} frames/s` +
    (i.clip_stride > 1 ? `, a prediction every ${i.clip_stride} frames` : "") + ".";
  if (!i.voice) $("use-mic").checked = false;
  legend();
  drawPlot($("plot"), [], 0, WINDOW_S);
});
$("tab-live").onclick = () => tab("live");
$("tab-file").onclick = () => tab("file");
$("start").onclick = startLive;
$("stop").onclick = stopLive;
$("upload").onclick = upload;
