"""A trained workdir run on a person's own recording: one prediction per video frame.

Two passes over the recording, neither holding it in memory:
1. every frame is decoded at the video's own rate, its face cropped as the training
   crops were, and the clip ending on it embedded by the backbones (clips are built by
   the training clip reader, `data.clips.read_clips`; embeddings are spilled to disk);
2. the fusion and head run over windows of those embeddings laid as evaluation lays them
   (valence/arousal: every frame the last frame of exactly one clip; pain: one window
   ending on every frame), in fixed-size batches.
Backbones see one clip at a time in inference mode, so this equals running the whole
model on the windows (tests/test_predict.py checks it).
"""

import dataclasses
import os
import tempfile

import jax
import numpy as np
import tqdm
from absl import logging

from jmt_jax import abaw
from jmt_jax import features
from jmt_jax import train
from jmt_jax import train_step
from jmt_jax.data import clips as clips_lib
from jmt_jax.data import pipeline
from jmt_jax.data import records
from jmt_jax.data import windows
from jmt_jax.inference import stream
from jmt_jax.prepare import biovid
from jmt_jax.prepare import faces
from jmt_jax.prepare import media
from jmt_jax.prepare.errors import BadInput

@dataclasses.dataclass
class Prediction:
  """Per-frame results of one recording."""

  fps: float
  time_s: np.ndarray  # (N,) start of each frame, from the first
  found: dict  # {column: (N,) bool}: face_found, <modality>_found
  values: dict  # {column: (N,) float}: valence, arousal, or pain_probability (+ per class)

  @property
  def num_frames(self):
    return len(self.time_s)


def found_column(name, spec):
  return "face_found" if spec["kind"] == "frames" else f"{name}_found"


class Predictor:
  """The newest checkpoint of a training workdir, ready to predict on recordings."""

  def __init__(self, workdir, config=None):
    self.config = config if config is not None else train.read_config(workdir)
    setup, self.step, state = train.restore_for_eval(self.config, workdir, with_data=False)
    model = self.model = setup.model
    self.variables = jax.device_put(jax.device_get(
        train_step.inference_variables(model, state.params, state.batch_stats)),
                                    jax.devices()[0])
    self.modalities = {m: self.config.input.modalities[m].to_dict()
                       for m in self.config.model.modalities}
    signals = pipeline.signal_config(self.config)
    self.frame_size = int(signals.frame_size)
    self.rates = {"audio_rate": signals.audio_rate, "bio_rate": signals.bio_rate}
    self.embed = jax.jit(lambda v, b: model.apply(v, b, train=False, embeddings_only=True))
    self.fuse = jax.jit(lambda v, e: model.apply(v, {"embeddings": e}, train=False))
    # The whole model on a batch of windows: what `jmt_jax.export` writes.
    self.apply = jax.jit(lambda v, b: model.apply(v, b, train=False))

  def uses(self, kind):
    return any(s["kind"] == kind for s in self.modalities.values())

  # ------------------------------------------------------------------ signals
  def _signals(self, video_path, biosignals_path, tmp):
    """{signal key: ArraySignal or DiskSignal}; a missing track is an empty signal."""
    if biosignals_path and not self.uses("biosignal"):  # before any decoding
      raise ValueError(f"this model does not read biosignals (its inputs: "
                       f"{sorted(self.modalities)}); leave out --biosignals")
    out = {}
    if self.uses("logmel"):
      audio = stream.DiskSignal(os.path.join(tmp, "audio.s16"))
      with media.Video(video_path) as video:
        if video.has_audio:
          for chunk in video.audio_chunks(int(self.rates["audio_rate"])):
            audio.append(chunk)
      if not audio.length:
        logging.warning("%s has no audio: the voice is treated as silent, as in training, "
                        "and flagged in the *_found column.", video_path)
      out["audio"] = audio
    if self.uses("biosignal"):
      specs = [s for s in self.modalities.values() if s["kind"] == "biosignal"]
      width = max(max(s["channels"]) for s in specs) + 1
      if biosignals_path:
        if width > len(biovid.BIO_CHANNELS):
          raise ValueError(f"the model reads biosignal channels {specs[0]['channels']}, "
                           f"beyond BioVid's {list(biovid.BIO_CHANNELS)}")
        names = biovid.BIO_CHANNELS[:width]
        out["biosignal"] = stream.ArraySignal(biovid.read_biosignals(biosignals_path, names))
      else:
        logging.warning("No --biosignals given: the biosignal is treated as missing (zeros), "
                        "as the sensor's drop-outs were in training, and flagged.")
        out["biosignal"] = stream.ArraySignal(np.zeros((0, width), np.float32))
    return out

  # ------------------------------------------------------------------ pass 1: embeddings
  def _embed(self, store, ends):
    """{modality: (len(ends), D)} embeddings of the clips ending at `ends`."""
    inputs = clips_lib.read_clips(store, 0, ends, self.modalities, self.config.input.clip_frames)
    parts = [jax.device_get(self.embed(self.variables, b))
             for b in features.clip_batches(inputs)]
    return {m: np.concatenate([p[m][0] for p in parts])[:len(ends)] for m in self.modalities}

  def _embed_into(self, store, ends, rows):
    for m, r in self._embed(store, ends).items():
      rows[m].append(r)

  def _window_ends(self, num_frames):
    """(W, T) clip ends of the windows that predict every frame."""
    clip, clips = self.config.input.clip_frames, self.config.input.num_clips
    if self.config.task == "pain":  # the window whose last clip ends on each frame
      starts = np.arange(num_frames) - clip * clips + 1
    else:
      starts = np.sort(windows.eval_windows([num_frames], [0], clip, clips)[:, 1])
    return clips_lib.clip_ends(starts, clip, clips)

  def predict(self, video_path, biosignals_path=None, progress=True):
    """The `Prediction` for the video at `video_path` (and its biosignal CSV)."""
    clip = self.config.input.clip_frames
    frame_specs = [s for s in self.modalities.values() if s["kind"] == "frames"]
    face = frame_specs[0] if frame_specs else {}
    cropper = faces.StreamingCropper(self.frame_size, face.get("face_margin", 0.2),
                                     face.get("missing_face", "zeros"))
    with tempfile.TemporaryDirectory(prefix="jmt_jax_predict_") as tmp:
      signals = self._signals(video_path, biosignals_path, tmp)
      rows = {m: stream.RowFile(os.path.join(tmp, f"{m}.f32"),
                                self.model.config.backbones[m].embed_dim)
              for m in self.modalities}
      try:
        with media.Video(video_path) as video:
          fps = video.fps
          store = stream.StreamStore(fps, self.rates, signals, keep=clip + features.EMBED_BATCH)
          face_found, pending = [], []
          bar = tqdm.tqdm(total=video.num_frames_hint or None, unit="frame", desc="frames",
                          disable=not progress)
          for i, rgb in enumerate(video.frames()):
            crop, found = cropper(rgb) if frame_specs else (np.zeros((1, 1, 3), np.uint8), False)
            store.add_frame(i, crop)
            face_found.append(found)
            pending.append(i)
            if len(pending) == features.EMBED_BATCH:
              self._embed_into(store, pending, rows)
              pending = []
            bar.update(1)
          bar.close()
        n = len(face_found)
        if not n:
          raise BadInput(f"{video_path}: no video frames could be decoded")
        store.finish(n)
        ends = self._window_ends(n)
        pending += list(range(n, int(ends.max()) + 1))  # padding clips of the last windows
        if pending:
          self._embed_into(store, pending, rows)
        if (ends < 0).any():  # a clip wholly before frame 0 reads only zeros
          for m, r in self._embed(store, [-1]).items():
            rows[m].before_start = r[0]
        values = self._fuse_windows(rows, ends, n, progress)
      finally:
        for s in list(rows.values()) + [s for s in signals.values()
                                        if isinstance(s, stream.DiskSignal)]:
          s.close()
      found = {}
      for m, s in self.modalities.items():
        if s["kind"] == "frames":
          found[found_column(m, s)] = np.array(face_found, bool)
        else:
          key = clips_lib.SIGNAL_OF_KIND[s["kind"]]
          rate = self.rates[records.RATE_KEYS[key]]
          starts = np.array([records.sample_at(i, rate, fps) for i in range(n)])
          found[found_column(m, s)] = starts < store.signal_length(key)
    return Prediction(fps=fps, time_s=np.arange(n) / fps, found=found, values=values)

  # ------------------------------------------------------------------ pass 2: fusion
  def _fuse_windows(self, rows, ends, num_frames, progress):
    batch = self.config.eval.batch_size
    outputs = []
    for first in tqdm.trange(0, len(ends), batch, unit="batch", desc="windows",
                             disable=not progress):
      part = ends[first:first + batch]
      pad = batch - len(part)
      emb = {m: np.concatenate([rows[m].take(part).reshape(part.shape + (-1,)),
                                np.zeros((pad,) + part.shape[1:] + (rows[m].width,),
                                         np.float32)])
             for m in self.modalities}
      out = jax.device_get(self.fuse(self.variables, emb))
      outputs.append({k: v[:len(part)] for k, v in out.items()})
    out = {k: np.concatenate([o[k] for o in outputs]) for k in outputs[0]}
    if self.config.task == "pain":
      probs = np.asarray(jax.nn.softmax(out["logits"], axis=-1))
      names = train.class_names(self.config)
      values = {"pain_probability": 1.0 - probs[:, 0]}
      values.update({f"p_{name.replace(' ', '_')}": probs[:, k] for k, name in enumerate(names)})
      return values
    per_dim = {d: abaw.reassemble(["recording"], [num_frames], np.zeros(ends.shape, np.int64),
                                  ends, out[d])["recording"] for d in abaw.DIMENSIONS}
    return abaw.postprocess({"recording": per_dim}, dict(self.config.eval.smoothing))["recording"]
