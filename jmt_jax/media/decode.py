"""Video and audio decoding with PyAV (its own bundled FFmpeg), failing with one line.

Times are put on the video's frame clock: frame k of a video is the picture shown at
k / fps seconds after its first frame (fps: the stream's average rate), and audio is
shifted so that its sample 0 is that first frame's start (an audio stream may start
before or after the video stream in the container). Frames are placed on that clock by
their own timestamps, so a variable-frame-rate video (as phones record) keeps its true
times, and are turned upright as the file's display rotation says.
"""

import av
import numpy as np

from jmt_jax.errors import BadInput

# A decoded video may fall short of its header's frame count by this much (containers
# count a frame or two differently) before it is called truncated.
TRUNCATION_TOLERANCE = (2, 0.02)  # frames, and a fraction of the promised count


def _open(path):
  try:
    return av.open(str(path))
  except (av.error.FFmpegError, OSError) as e:
    raise BadInput(f"{path}: cannot open the video, truncated or corrupt? "
                   f"({_reason(e).split(':')[0]})") from None


def _reason(e):
  return str(e).splitlines()[0] if str(e) else type(e).__name__


def _start_seconds(stream):
  return float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0


def upright(rgb, rotation):
  """`rgb` turned as a display matrix's rotation (degrees counterclockwise, FFmpeg's
  `av_display_rotation_get`) says a player shows it."""
  turns = int(round((rotation or 0) / 90.0)) % 4
  return np.ascontiguousarray(np.rot90(rgb, turns)) if turns else rgb


def _stream_seconds(stream):
  """The video stream's own duration: from the stream, or Matroska's DURATION tag."""
  if stream.duration:
    return float(stream.duration * stream.time_base)
  tag = stream.metadata.get("DURATION", "")
  try:
    h, m, sec = tag.split(":")
    return int(h) * 3600 + int(m) * 60 + float(sec)
  except ValueError:
    return None


class Video:
  """A video file's frame rate and streams; a context manager around the open container."""

  def __init__(self, path):
    self.path = path
    self.container = _open(path)
    pictures = self.container.streams.video
    moving = [s for s in pictures if not s.disposition & av.stream.Disposition.attached_pic]
    if not moving:
      self.container.close()
      raise BadInput(f"{path}: no video stream" + (" (its only picture is cover art)"
                                                   if pictures else ""))
    stream = self.stream = moving[0]
    rate = stream.average_rate or stream.guessed_rate
    if not rate:
      self.container.close()
      raise BadInput(f"{path}: the video stream has no frame rate")
    self.fps = float(rate)
    self.video_start = _start_seconds(stream)
    seconds = _stream_seconds(stream)
    # The frames the header promises for the video stream itself (0: it says nothing);
    # the container's duration may be the audio's, longer, so it only sizes progress bars.
    self.promised_frames = stream.frames or int(round((seconds or 0) * self.fps))
    self.num_frames_hint = self.promised_frames or int(
        round((self.container.duration or 0) / 1e6 * self.fps))
    self.decoded = 0  # frames decoded so far by `frames`
    self.audio_lead = 0  # samples of silence `audio_chunks` put before the audio starts

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.container.close()

  def _decoded(self):
    """(seconds from the video stream's start or None, upright RGB) of every decoded frame."""
    try:
      for frame in self.container.decode(self.stream):
        self.decoded += 1
        t = None if frame.time is None else float(frame.time) - self.video_start
        yield t, upright(frame.to_ndarray(format="rgb24"), frame.rotation)
    except av.error.FFmpegError as e:
      raise BadInput(f"{self._count()} (then {_reason(e)}): truncated or corrupt "
                     f"file?") from None
    promised = self.promised_frames
    short_by = promised - self.decoded
    if promised and short_by > max(TRUNCATION_TOLERANCE[0], TRUNCATION_TOLERANCE[1] * promised):
      raise BadInput(f"{self._count()}: truncated or corrupt file?")

  def _count(self):
    promised = (f"of the {self.promised_frames} its header promises" if self.promised_frames
                else "(its header gives no count)")
    return f"{self.path}: {self.decoded} frames decoded {promised}"

  def frames(self):
    """Yields the frames on the frame clock as (H, W, 3) uint8 RGB, upright: frame k is
    the last decoded frame whose timestamp rounds to k / fps or before (a frame held
    longer repeats; of two frames in one slot the later is kept, as FFmpeg's
    `-fps_mode cfr`); frames without a timestamp follow each other. A video decoding to
    fewer frames than its header promises is reported (BadInput) after the last one."""
    held, slot = None, 0  # the frame waiting to be yielded, and its slot
    for t, rgb in self._decoded():
      if t is None:
        at = 0 if held is None else slot + 1
      else:
        at = max(int(round(t * self.fps)), 0)
      if held is None:  # nothing shows before the first frame: it stands in for those slots
        held, slot = rgb, 0
      if at <= slot:
        held = rgb
        continue
      for _ in range(at - slot):
        yield held
      held, slot = rgb, at
    if held is not None:
      yield held

  @property
  def has_audio(self):
    return bool(self.container.streams.audio)

  def audio_chunks(self, rate):
    """Yields the audio track as mono int16 chunks at `rate` Hz, sample 0 at the start of
    the first video frame (leading zeros if the audio starts later, samples dropped if
    it starts earlier, e.g. AAC priming; `audio_lead` counts those zeros)."""
    if not self.has_audio:
      raise BadInput(f"{self.path}: no audio stream")
    resampler = av.AudioResampler(format="s16", layout="mono", rate=rate)
    offset = None  # of the first audio frame from the first video frame, in samples

    def resampled():
      nonlocal offset
      for frame in self.container.decode(audio=0):
        if offset is None:
          offset = int(round((float(frame.time or 0.0) - self.video_start) * rate))
        yield from resampler.resample(frame)
      yield from resampler.resample(None)

    skip = None
    try:
      for out in resampled():
        chunk = out.to_ndarray().reshape(-1).astype(np.int16)
        if skip is None:
          self.audio_lead = max(0, offset)
          if offset > 0:
            yield np.zeros(offset, np.int16)
          skip = max(0, -offset)
        drop = min(skip, len(chunk))
        skip -= drop
        if len(chunk) > drop:
          yield chunk[drop:]
    except av.error.FFmpegError as e:
      raise BadInput(f"{self.path}: audio decoding failed ({_reason(e)}): truncated or "
                     f"corrupt file?") from None

  def audio(self, rate):
    """The whole audio track (see `audio_chunks`) as one array."""
    chunks = list(self.audio_chunks(rate))
    if not chunks:
      raise BadInput(f"{self.path}: the audio stream holds no samples")
    return np.concatenate(chunks)


def fit_length(signal, length, what, path, tolerance):
  """`signal` cut or zero-padded to `length` samples; shorter by more than `tolerance`
  samples is an error (a truncated recording, not a rounding difference)."""
  if len(signal) + tolerance < length:
    raise BadInput(f"{path}: {what} has {len(signal)} samples but the frames need {length} "
                   f"(short by more than {tolerance}): truncated file?")
  if len(signal) >= length:
    return signal[:length]
  pad = np.zeros((length - len(signal),) + signal.shape[1:], signal.dtype)
  return np.concatenate([signal, pad])
