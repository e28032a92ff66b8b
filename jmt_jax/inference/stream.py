"""A recording streamed through the training data's clip reader in bounded memory.

`StreamStore` stands where `data.clips` reads prepared shards: it answers the same
store queries from the newest face crops (a ring of them) and from signals kept on disk,
so every clip is built by the code that built the training clips.
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
    self.lead = 0  # samples of padding before the recording's own first sample

  def read(self, lo, hi):
    return self.array[lo:hi]


class DiskSignal:
  """An int16 signal appended chunk by chunk to a file and read back by range (a long
  recording's 44.1 kHz audio does not stay in memory)."""

  def __init__(self, path):
    self.path = path
    self.length = 0
    self.lead = 0  # samples of padding before the recording's own first sample
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
  (any negative index) is `before_start`, the row of a clip wholly before frame 0 (of a
  frame before it, in a frame encoder's rows)."""

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

  def set_columns(self, lo, values):
    """Columns lo.. of every row replaced by `values` ((rows, k)), a block at a time."""
    values = np.asarray(values, np.float32)
    for first in range(0, self.rows, 4096):
      block = self.take(np.arange(first, min(first + 4096, self.rows)))
      block[:, lo:lo + values.shape[1]] = values[first:first + len(block)]
      self._file.seek(4 * self.width * first)
      self._file.write(block.tobytes())

  def close(self):
    self._file.close()


class StreamStore:
  """A `data.clips` store of one recording (index 0) read from a stream: the last `keep`
  face crops and whole signals.

  Until `finish(num_frames)` the recording is as long as the frames added so far (clips
  are read only up to the newest frame); after it, frames from `num_frames` on are zeros
  and signals are cut to the length those frames have, as the prepared data stores them.
  """

  def __init__(self, fps, rates, signals, keep):
    self._fps = fps
    self.rates = rates
    self.signals = signals  # {"audio"|"biosignal": ArraySignal or DiskSignal}
    self.keep = keep
    self.crops = {}
    self._num_frames = 0

  def add_frame(self, index, crop):
    self.crops[index] = crop
    self.crops.pop(index - self.keep, None)
    self._num_frames = index + 1

  def finish(self, num_frames):
    self._num_frames = num_frames

  def num_frames(self, recording):
    del recording
    return self._num_frames

  def fps(self, recording):
    del recording
    return self._fps

  def read_frames(self, recording, frames, decode=True):
    del recording
    missing = [int(i) for i in frames if int(i) not in self.crops]
    if missing:
      raise IndexError(f"frame {missing[0]} is no longer held (holding {min(self.crops)}..)")
    labels = np.full((len(frames), 2), records.INVALID_LABEL, np.float32)
    if not decode:
      return None, labels
    template = next(iter(self.crops.values()))
    images = np.stack([self.crops[int(i)] for i in frames]) if len(frames) else np.zeros(
        (0,) + template.shape, template.dtype)
    return images, labels

  def signal_length(self, key):
    """Samples of `key` the recording has (cut to its frames)."""
    length = self.signals[key].length if key in self.signals else 0
    return min(length, records.sample_at(self._num_frames, self.rates[records.RATE_KEYS[key]],
                                         self._fps))

  def read_signal(self, recording, key, lo, hi):
    del recording
    signal = self.signals.get(key)
    width = signal.array.shape[1:] if isinstance(signal, ArraySignal) else ()
    out = np.zeros((hi - lo,) + width, np.float32 if width else np.int16)
    src_lo, src_hi = max(lo, 0), min(hi, self.signal_length(key))
    if src_hi > src_lo:
      out[src_lo - lo:src_hi - lo] = signal.read(src_lo, src_hi)
    return out


class LiveSignal:
  """An int16 signal that arrives in pieces, each placed at the sample index of its first
  sample; the newest `keep` samples are held. A gap (samples that never came, or that
  `give_up_until` stopped waiting for) reads as zeros, silence, and is not `present`."""

  def __init__(self, keep):
    self.keep = keep
    self.length = 0  # samples final so far: received, or given up on
    self.lead = 0
    self._base = 0  # index of _samples[0]
    self._samples = np.zeros(0, np.int16)
    self._present = np.zeros(0, bool)

  def write(self, at, samples):
    """Places `samples` from index `at`; any part before `length` is late and dropped."""
    samples = np.asarray(samples, np.int16).reshape(-1)[max(0, self.length - at):]
    self.give_up_until(at)
    self._extend(samples, True)

  def give_up_until(self, stop):
    """Samples up to `stop` that have not come are silence from now on."""
    if stop > self.length:
      self._extend(np.zeros(stop - self.length, np.int16), False)

  def _extend(self, samples, present):
    self._samples = np.concatenate([self._samples, samples])
    self._present = np.concatenate([self._present, np.full(len(samples), present)])
    self.length += len(samples)
    if len(self._samples) > 2 * self.keep:
      drop = len(self._samples) - self.keep
      self._samples, self._present = self._samples[drop:], self._present[drop:]
      self._base += drop

  def _span(self, lo, hi):
    if lo < self._base:
      raise IndexError(f"samples from {lo} asked, holding from {self._base}")
    return slice(lo - self._base, hi - self._base)

  def read(self, lo, hi):
    return self._samples[self._span(lo, hi)]

  def present(self, lo, hi):
    """Whether any sample in [lo, hi) came."""
    return bool(self._present[self._span(max(lo, self._base), hi)].any())


class EmbeddingRing:
  """Embedding rows by index, as `RowFile.take` reads them (index -1 and below:
  `before_start`), for the newest indices only: a live stream's clips or frames."""

  def __init__(self, width):
    self.width = width
    self.before_start = None
    self._rows = {}

  def __contains__(self, index):
    return index < 0 or index in self._rows

  def put(self, indices, rows):
    for i, row in zip(indices, np.asarray(rows, np.float32)):
      self._rows[int(i)] = row

  def take(self, index):
    index = np.asarray(index).reshape(-1)
    return np.stack([self.before_start if i < 0 else self._rows[int(i)] for i in index]
                    ) if len(index) else np.zeros((0, self.width), np.float32)

  def forget_before(self, index):
    for i in [i for i in self._rows if i < index]:
      del self._rows[i]
