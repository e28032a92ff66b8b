"""Video and audio decoding with PyAV (its own bundled FFmpeg), failing with one line.

Times are put on the video's frame clock: frame k of a video starts at k / fps seconds
after its first frame, and audio is shifted so that its sample 0 is that first frame's
start (an audio stream may start before or after the video stream in the container).
"""

import av
import numpy as np

from jmt_jax.errors import BadInput


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


class Video:
  """A video file's frame rate and streams; a context manager around the open container."""

  def __init__(self, path):
    self.path = path
    self.container = _open(path)
    if not self.container.streams.video:
      self.container.close()
      raise BadInput(f"{path}: no video stream")
    stream = self.container.streams.video[0]
    rate = stream.average_rate or stream.guessed_rate
    if not rate:
      self.container.close()
      raise BadInput(f"{path}: the video stream has no frame rate")
    self.fps = float(rate)
    self.video_start = _start_seconds(stream)
    duration = (float(stream.duration * stream.time_base) if stream.duration
                else (self.container.duration or 0) / 1e6)
    self.num_frames_hint = stream.frames or int(round(duration * self.fps))

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.container.close()

  def frames(self):
    """Yields every decoded frame as (H, W, 3) uint8 RGB."""
    try:
      for frame in self.container.decode(video=0):
        yield frame.to_ndarray(format="rgb24")
    except av.error.FFmpegError as e:
      raise BadInput(f"{self.path}: video decoding failed ({_reason(e)}): truncated or "
                     f"corrupt file?") from None

  @property
  def has_audio(self):
    return bool(self.container.streams.audio)

  def audio_chunks(self, rate):
    """Yields the audio track as mono int16 chunks at `rate` Hz, sample 0 at the start of
    the first video frame (leading zeros if the audio starts later, samples dropped if
    it starts earlier, e.g. AAC priming)."""
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
