"""A recording streamed through the training data's window readers in bounded memory.

`StreamSpan` stands where `data.windows` reads a span of stored records: it answers the
same `frames` and `samples` queries from the newest face crops (a ring of them) and from
signals kept on disk, so every clip is built by the code that built the training clips.
Per-clip embeddings go to disk too (`RowFile`); only per-frame flags and predictions
(a few bytes a frame) stay in memory.
"""

import os

import numpy as np

from jmt_jax.data import records


class ArraySignal:
  """A signal held in memory: (samples, channels) float32 (a biosignal is small)."""

  def __init__(self, array):
    self.array = array
    self.length = len(array)

  def read(self, lo, hi):
    return self.array[lo:hi]


class DiskSignal:
  """An int16 signal appended chunk by chunk to a file and read back by range (a long
  recording's 44.1 kHz audio does not stay in memory)."""

  def __init__(self, path):
    self.path = path
    self.length = 0
    self._file = open(path, "w+b")

  def append(self, chunk):
    self._file.seek(0, os.SEEK_END)
    self._file.write(np.ascontiguousarray(chunk, np.int16).tobytes())
    self.length += len(chunk)

  def read(self, lo, hi):
    self._file.seek(2 * lo)
    return np.frombuffer(self._file.read(2 * (hi - lo)), np.int16)

  def close(self):
    self._file.close()


class RowFile:
  """Fixed-width float32 rows appended in order and read back by row index; index -1
  (any negative index) is `before_start`, the row of a clip wholly before frame 0."""

  def __init__(self, path, width):
    self.width = width
    self.rows = 0
    self.before_start = None
    self._file = open(path, "w+b")

  def append(self, rows):
    rows = np.ascontiguousarray(rows, np.float32).reshape(-1, self.width)
    self._file.seek(0, os.SEEK_END)
    self._file.write(rows.tobytes())
    self.rows += len(rows)

  def take(self, index):
    """(len(index), width): rows of `index`, read as one contiguous block."""
    index = np.asarray(index).reshape(-1)
    out = np.empty((len(index), self.width), np.float32)
    before = index < 0
    if before.any():
      out[before] = self.before_start
    if (~before).any():
      lo, hi = int(index[~before].min()), int(index[~before].max()) + 1
      if hi > self.rows:
        raise IndexError(f"row {hi - 1} asked of {self.rows} rows")
      self._file.seek(4 * self.width * lo)
      block = np.frombuffer(self._file.read(4 * self.width * (hi - lo)), np.float32)
      out[~before] = block.reshape(-1, self.width)[index[~before] - lo]
    return out

  def close(self):
    self._file.close()


class StreamSpan:
  """What `data.windows`' readers ask of a span (see `windows._Span`), answered from a
  stream: the last `keep` face crops and whole signals.

  `num_frames` is None while the stream is read; once set, frames from it on are zeros
  and signals are cut to the length those frames have, as the prepared data stores them.
  """

  def __init__(self, fps, rates, signals, keep):
    self.fps = fps
    self.rates = rates
    self.signals = signals  # {"audio"|"biosignal": ArraySignal or DiskSignal}
    self.keep = keep
    self.crops = {}
    self.num_frames = None

  def add_frame(self, index, crop):
    self.crops[index] = crop
    self.crops.pop(index - self.keep, None)

  def frames(self, key, lo, hi, fill=0):
    del key
    template = next(iter(self.crops.values()))
    out = np.full((hi - lo,) + template.shape, fill, template.dtype)
    for i in range(max(lo, 0), hi):
      if self.num_frames is not None and i >= self.num_frames:
        break
      if i not in self.crops:
        raise IndexError(f"frame {i} is no longer held (holding {sorted(self.crops)[:1]}..)")
      out[i - lo] = self.crops[i]
    return out

  def signal_length(self, key, rate_key):
    """Samples of `key` the recording has (cut to its frames once they are known)."""
    length = self.signals[key].length if key in self.signals else 0
    if self.num_frames is not None:
      length = min(length, records.sample_at(self.num_frames, self.rates[rate_key], self.fps))
    return length

  def samples(self, key, rate_key, end_frame, num_samples):
    end = records.sample_at(end_frame, self.rates[rate_key], self.fps)
    lo, hi = max(end - num_samples, 0), min(end, self.signal_length(key, rate_key))
    signal = self.signals.get(key)
    width = signal.array.shape[1:] if isinstance(signal, ArraySignal) else ()
    out = np.zeros((num_samples,) + width, np.float32)
    if hi > lo:
      out[lo - end + num_samples:hi - end + num_samples] = signal.read(lo, hi)
    return out
