"""A trained workdir run on a person's own recording: one prediction per video frame.

Passes over the recording, none holding it in memory:
0. the faces are found and followed through the video (`faces.tracking`): the largest
   one, or every person (`faces="all"`), each kept apart as a track;
1. for each track, every frame is decoded at the video's own rate, the face cropped as
   the training crops were (`faces.crops`), and the clip ending on it embedded by the
   backbones (clips are built by the training clip reader, `data.clips.read_clips`;
   embeddings are spilled to disk); a frame encoder embeds the frame alone, once, and
   a clip's frames' embeddings are gathered in pass 2;
2. the fusion and head run over windows of those embeddings laid as evaluation lays them
   (valence/arousal: every frame the last frame of exactly one clip; pain: one window
   ending on every frame), in fixed-size batches; or, with `causal=True`, over the
   window ending on each frame, as live prediction (`inference.live`) must, and with
   `clip_stride=k` only on every k-th frame, the frames between carrying the last value.
Backbones see one clip at a time in inference mode, so this equals running the whole
model on the windows (tests/test_predict.py checks it). The voice and biosignals are
decoded once and shared by every person.
"""

import dataclasses
import os
import tempfile

import jax
import numpy as np
import tqdm
from absl import logging

from jmt_jax import tasks
from jmt_jax import workdir as workdir_lib
from jmt_jax.data import clips as clips_lib
from jmt_jax.data import records
from jmt_jax.errors import BadInput
from jmt_jax.faces import crops as crops_lib
from jmt_jax.faces import tracking
from jmt_jax.features import embed as embed_lib
from jmt_jax.features import speech_context
from jmt_jax.inference import stream
from jmt_jax.media import biosignals
from jmt_jax.media import decode
from jmt_jax.models import model as model_lib
from jmt_jax.models import variables as variables_lib
from jmt_jax.runtime import cli
from jmt_jax.runtime import compiler


@dataclasses.dataclass
class Prediction:
  """Per-frame results of one recording."""

  fps: float
  time_s: np.ndarray  # (N,) start of each frame, from the first
  found: dict  # {column: (N,) bool}: face_found, <modality>_found
  values: dict  # {column: (N,) float}: valence, arousal, or pain_probability (+ per class)
  person: int = 0  # 1, 2, ... left to right with faces="all"; 0 for the largest face
  computed: np.ndarray = None  # (N,) bool with a clip stride: frames predicted, not carried

  @property
  def num_frames(self):
    return len(self.time_s)


def found_column(name, spec):
  return "face_found" if spec["kind"] == "frames" else f"{name}_found"


def face_crop_of(spec):
  """The crop a frames modality was trained on. Workdirs from before `face_crop` was a
  config field: BioVid's (missing_face="hold") were the box crops, the others aligned."""
  return spec.get("face_crop", "box" if spec.get("missing_face") == "hold" else "aligned")


class Predictor:
  """The newest checkpoint of a training workdir, ready to predict on recordings; or,
  with `variables` ({params, batch_stats}, float32) and `config`, a model that was not
  trained in a workdir (step 0)."""

  def __init__(self, workdir, config=None, variables=None):
    self.config = config if config is not None else workdir_lib.read_config(workdir)
    self.task = tasks.get(self.config.task)
    model = self.model = model_lib.build_model(self.config)
    if variables is None:
      self.step, variables = workdir_lib.restore_variables(self.config, workdir, model)
    else:
      self.step = 0
    self.modalities = {m: self.config.input.modalities[m].to_dict()
                       for m in self.config.model.modalities}
    self.by_frame = embed_lib.frame_modalities(self.config)
    signals = self.config.data.signals
    self.frame_size = int(signals.frame_size)
    self.rates = {"audio_rate": signals.audio_rate, "bio_rate": signals.bio_rate}
    cast = variables_lib.cast(model, variables["params"], variables["batch_stats"])
    self.embed = embed_lib.embedder(model, cast)
    self.context = speech_context.ContextEmbedder(model, cast, self.modalities)
    fuse = compiler.jit(lambda v, e: model.apply(v, e, method=model.fuse), fusion_only=True)
    self.fuse = lambda embeddings: fuse(cast, embeddings)

  def uses(self, kind):
    return any(s["kind"] == kind for s in self.modalities.values())

  def reads(self, signal):
    """Whether an input reads the stored signal `signal` ('audio', 'biosignal')."""
    return any(clips_lib.SIGNAL_OF_KIND.get(s["kind"]) == signal for s in self.modalities.values())

  # ------------------------------------------------------------------ signals
  def _signals(self, video_path, biosignals_path, tmp):
    """{signal key: ArraySignal or DiskSignal}; a missing track is an empty signal."""
    if biosignals_path and not self.uses("biosignal"):  # before any decoding
      raise ValueError(f"this model does not read biosignals (its inputs: "
                       f"{sorted(self.modalities)}); leave out --biosignals")
    out = {}
    if self.reads("audio"):
      audio = stream.DiskSignal(os.path.join(tmp, "audio.s16"))
      with decode.Video(video_path) as video:
        if video.has_audio:
          for chunk in video.audio_chunks(int(self.rates["audio_rate"])):
            audio.append(chunk)
          audio.lead = video.audio_lead
      if not audio.length:
        logging.warning("%s has no audio: the voice is treated as silent, as in training, "
                        "and flagged in the *_found column.", video_path)
      out["audio"] = audio
    if self.uses("biosignal"):
      specs = [s for s in self.modalities.values() if s["kind"] == "biosignal"]
      width = max(max(s["channels"]) for s in specs) + 1
      if biosignals_path:
        if width > len(biosignals.CHANNELS):
          raise ValueError(f"the model reads biosignal channels {specs[0]['channels']}, "
                           f"beyond BioVid's {list(biosignals.CHANNELS)}")
        names = biosignals.CHANNELS[:width]
        out["biosignal"] = stream.ArraySignal(
            biosignals.read(biosignals_path, names, self.rates["bio_rate"]))
      else:
        logging.warning("No --biosignals given: the biosignal is treated as missing (zeros), "
                        "as the sensor's drop-outs were in training, and flagged.")
        out["biosignal"] = stream.ArraySignal(np.zeros((0, width), np.float32))
    return out

  # ------------------------------------------------------------------ pass 0: faces
  def face_tracks(self, video_path, faces="largest", progress=True):
    """[(person, [mtcnn.Face or None] per frame)]: the largest face (person 0), or with
    faces="all" every person seen for at least half a second, numbered 1, 2, ... from
    the left; a video where no one is seen gives one track without a face."""
    with decode.Video(video_path) as video:
      bar = _bar(progress, video.num_frames_hint or None, "faces")
      tracks = tracking.Tracks.of_video(_counted(video.frames(), bar), tracking.Tracker(faces))
      bar.close()
      fps = video.fps
    if not tracks.num_frames:
      raise BadInput(f"{video_path}: no video frames could be decoded")
    if faces == "largest":
      return [(0, tracks.faces.get(0, [None] * tracks.num_frames))]
    people, short = tracks.people(min_frames=max(3, int(round(fps / 2))))
    if short:
      logging.warning("%s: %d face track(s) seen for under half a second left out",
                      video_path, short)
    if not people:
      logging.warning("%s: no face found on any frame; predicting with the face missing",
                      video_path)
      return [(1, [None] * tracks.num_frames)]
    return [(k, tracks.faces[t]) for k, t in enumerate(people, start=1)]

  # ------------------------------------------------------------------ pass 1: clip embeddings
  def embeddings(self, store, ends, modalities=None, batch=embed_lib.BATCH):
    """{modality: (len(ends), D)} embeddings of the clips ending at `ends` (of the frames
    `ends`, for a frame encoder), of every modality or of `modalities`."""
    chosen = {m: self.modalities[m] for m in (modalities or self.modalities)}
    per_clip = {m: s for m, s in chosen.items() if m not in self.by_frame}
    inputs = clips_lib.read_clips(store, 0, ends, per_clip, self.config.input.clip_frames)
    inputs = {m: inputs[m] for m in per_clip}
    inputs.update(embed_lib.read_frames(store, 0, ends, {m: s for m, s in chosen.items()
                                                        if m in self.by_frame}))
    for m in self.context.members:  # filled in once the audio is whole (_fill_context)
      lo, hi = model_lib.context_columns(self.model.config.backbones[m])
      inputs[model_lib.context_key(m)] = np.zeros((len(ends), hi - lo), np.float32)
    return embed_lib.embed_clips(self.embed, inputs, batch)

  def _fill_context(self, store, rows):
    """Chunked speech embeddings, made from the whole recording (`store` finished), in
    place of the zeros that streaming embedded."""
    for m in self.context.members:
      lo, hi = model_lib.context_columns(self.model.config.backbones[m])
      key = model_lib.context_key(m)
      rows[m].set_columns(lo, self.context(store, 0, np.arange(rows[m].rows))[key])
      if rows[m].before_start is not None:
        rows[m].before_start[lo:hi] = self.context(store, 0, [-1])[key][0]

  def _embed_into(self, store, ends, rows):
    for m, r in self.embeddings(store, ends).items():
      rows[m].append(r)

  def window_ends(self, frames=None, num_frames=None):
    """(W, T) clip ends: of the causal windows ending on `frames`, or of the windows that
    predict every frame of a recording of `num_frames` as evaluation lays them."""
    clip, clips = self.config.input.clip_frames, self.config.input.num_clips
    starts = (clips_lib.causal_window_starts(frames, clip, clips) if frames is not None
              else self.task.frame_window_starts(num_frames, clip, clips))
    return clips_lib.clip_ends(starts, clip, clips)

  # ------------------------------------------------------------------ pass 2: fusion
  def _clip_rows(self, rows, m, ends):
    """(ends.shape + (D,)) embeddings of modality `m` of the clips ending at `ends`: a
    frame encoder's frames' side by side."""
    index = ends
    if m in self.by_frame:
      index = clips_lib.frame_indices(ends.reshape(-1), self.modalities[m],
                                      self.config.input.clip_frames)
    return rows[m].take(index).reshape(ends.shape + (-1,))

  def window_outputs(self, rows, ends, batch, progress=False):
    """The model's outputs ({name: (W, ...)}) on the windows whose clips end at `ends`
    (W, T), their embeddings taken from `rows` ({modality: RowFile or EmbeddingRing}),
    `batch` windows a call (the last padded)."""
    outputs = []
    bar = _bar(progress, -(-len(ends) // batch), "windows", "batch")
    for first in range(0, len(ends), batch):
      part = ends[first:first + batch]
      pad = batch - len(part)
      emb = {m: np.pad(self._clip_rows(rows, m, part), [(0, pad), (0, 0), (0, 0)])
             for m in self.modalities}
      out = jax.device_get(self.fuse(emb))
      outputs.append({k: v[:len(part)] for k, v in out.items()})
      bar.update(1)
    bar.close()
    return {k: np.concatenate([o[k] for o in outputs]) for k in outputs[0]}

  # ------------------------------------------------------------------ one person, then everyone
  def face_spec(self):
    """The input config of the face modality (None: a model without faces)."""
    return next((s for s in self.modalities.values() if s["kind"] == "frames"), None)

  def _predict_track(self, video_path, signals, tmp, person, track, progress, causal,
                     clip_stride):
    """Passes 1 and 2 for one face track (None: a model without faces)."""
    clip = self.config.input.clip_frames
    if track is not None:
      face = self.face_spec()
      cropper = crops_lib.TrackCrops(track, face_crop_of(face), self.frame_size,
                                     face.get("face_margin", 0.2),
                                     face.get("missing_face", "zeros"), causal=causal)
    rows = {m: stream.RowFile(os.path.join(tmp, f"{m}_{person}.f32"),
                              model_lib.embedding_width(self.model.config.backbones[m]))
            for m in self.modalities}
    try:
      with decode.Video(video_path) as video:
        fps = video.fps
        store = stream.StreamStore(fps, self.rates, signals, keep=clip + embed_lib.BATCH)
        pending = []
        bar = _bar(progress, video.num_frames_hint or None,
                   f"person {person}" if person else "frames")
        n = 0
        for n, rgb in enumerate(_counted(video.frames(), bar), start=1):
          i = n - 1
          store.add_frame(i, cropper(i, rgb) if track is not None
                          else np.zeros((1, 1, 3), np.uint8))
          pending.append(i)
          if len(pending) == embed_lib.BATCH:
            self._embed_into(store, pending, rows)
            pending = []
        bar.close()
      if not n:
        raise BadInput(f"{video_path}: no video frames could be decoded")
      store.finish(n)
      computed = np.arange(0, n, clip_stride)
      ends = self.window_ends(frames=computed) if causal else self.window_ends(num_frames=n)
      pending += list(range(n, int(ends.max()) + 1))  # padding clips of the last windows
      if pending:
        self._embed_into(store, pending, rows)
      # A clip wholly before frame 0 reads only zeros, as does a frame before it.
      for m, r in self.embeddings(store, [-1]).items():
        rows[m].before_start = r[0]
      if self.context:
        self._fill_context(store, rows)
      out = self.window_outputs(rows, ends, self.config.eval.batch_size, progress)
      if causal:
        values = {k: v[np.arange(n) // clip_stride]  # each frame: the last computed one's
                  for k, v in self.task.causal_values(out, self.config).items()}
      else:
        values = self.task.frame_values(out, ends, n, self.config)
    finally:
      for r in rows.values():
        r.close()
    found = {}
    for m, s in self.modalities.items():
      if s["kind"] == "frames":
        found[found_column(m, s)] = cropper.found[:n].copy()
      else:
        key = clips_lib.SIGNAL_OF_KIND[s["kind"]]
        rate = self.rates[records.RATE_KEYS[key]]
        bounds = np.array([records.sample_at(i, rate, fps) for i in range(n + 1)])
        # Found where the frame's samples reach the recording's own: not over the silence
        # put before a late-starting track, nor past its end.
        found[found_column(m, s)] = ((bounds[:-1] < store.signal_length(key))
                                     & (bounds[1:] > signals[key].lead))
    return Prediction(fps=fps, time_s=np.arange(n) / fps, found=found, values=values,
                      person=person,
                      computed=np.arange(n) % clip_stride == 0 if clip_stride > 1 else None)

  def predict(self, video_path, biosignals_path=None, progress=True, **kwargs):
    """The `Prediction` for the largest face of the video at `video_path` (and its
    biosignal CSV); `kwargs` as `predict_people`'s."""
    return self.predict_people(video_path, biosignals_path, progress, faces="largest",
                               **kwargs)[0]

  def predict_people(self, video_path, biosignals_path=None, progress=True, faces="largest",
                     causal=False, clip_stride=1):
    """One `Prediction` per person of `face_tracks` (the largest face, or everyone).
    `progress`: show bars, or a callable taking (stage, done, total or None) to report to.
    `causal`, `clip_stride`: the live predictor's windows (module docstring)."""
    if faces not in tracking.MODES:
      raise ValueError(f"faces={faces!r}: use one of {tracking.MODES}")
    if clip_stride < 1 or (clip_stride > 1 and not causal):
      raise ValueError(f"clip_stride={clip_stride}: a positive stride, with causal windows")
    if self.uses("features"):
      raise ValueError("this model reads per-clip features extracted elsewhere (input kind "
                       "'features'), which a new recording has none of: predict with a model "
                       "whose backbones run on the recording")
    if faces == "all" and biosignals_path:
      raise ValueError("--faces=all with --biosignals: a biosignal recording belongs to one "
                       "person; predict with --faces=largest")
    with tempfile.TemporaryDirectory(prefix="jmt_jax_predict_") as tmp:
      signals = self._signals(video_path, biosignals_path, tmp)
      try:
        people = (self.face_tracks(video_path, faces, progress) if self.uses("frames")
                  else [(0, None)])
        return [self._predict_track(video_path, signals, tmp, person, track, progress, causal,
                                    clip_stride)
                for person, track in people]
      finally:
        for s in signals.values():
          if isinstance(s, stream.DiskSignal):
            s.close()


def command_line_config(workdir, config=None):
  """The config a command line predicts with: the workdir's config.json (or `config`, for
  a workdir trained before it was written), with the compilation cache it names enabled."""
  config = config if config is not None else workdir_lib.read_config(workdir)
  cli.enable_compilation_cache(config.get("compilation_cache_dir"))
  return config


class _Reported:
  """A progress bar's `update` and `close` that report to `report(stage, done, total)`."""

  def __init__(self, report, total, stage):
    self.report, self.total, self.stage, self.done = report, total, stage, 0

  def update(self, n):
    self.done += n
    self.report(self.stage, self.done, self.total)

  def close(self):
    pass


def _bar(progress, total, stage, unit="frame"):
  """A tqdm bar of `total` (shown when `progress` is true), or a `_Reported` when it is
  a callable."""
  if callable(progress):
    return _Reported(progress, total, stage)
  return tqdm.tqdm(total=total, unit=unit, desc=stage, disable=not progress)


def _counted(frames, bar):
  for f in frames:
    yield f
    bar.update(1)
