"""Deterministic synthetic recordings: a latent affect trajectory rendered into
face-like frames, a voice-like audio track and an EDA-like biosignal.

Every modality carries the latent state only part of the time (missing or occluded
faces, silence, sensor drop-outs) and the drop-outs of different modalities are
independent, so a model that fuses modalities can beat any single one of them.
Geometry is in normalised face units, so the same recording renders at any frame size.
"""

import dataclasses

import numpy as np

from jmt_jax.data.records import INVALID_LABEL

# A weak cue follows the latent dimension only partly: the rest is an unrelated smooth
# nuisance (mood-independent eye movements, a speaker's own prosody), so one modality
# alone predicts its weak dimension poorly.
WEAK_CUE_SIGNAL = 0.35

# Part of the cached dataset's name: bump it whenever rendering changes, so that
# datasets cached by an older renderer are not reused.
RENDER_VERSION = 4


@dataclasses.dataclass
class Recording:
  """One rendered recording, all arrays indexed by time from its first frame."""

  frames: np.ndarray  # (N, S, S, 3) uint8; all-zero where no face is shown
  face_found: np.ndarray  # (N,) bool
  valence: np.ndarray  # (N,) float32, INVALID_LABEL where unlabelled
  arousal: np.ndarray  # (N,) float32
  audio: np.ndarray  # (round(N * audio_rate / fps),) int16
  biosignal: np.ndarray  # (round(N * bio_rate / fps), 1) float32
  pain: int


@dataclasses.dataclass(frozen=True)
class RenderSpec:
  """How a recording is rendered; stored with the dataset so it can be rebuilt."""

  frame_size: int = 32
  fps: float = 10.0
  audio_rate: int = 8000
  bio_rate: int = 64
  min_frames: int = 240
  max_frames: int = 360
  # Fraction of time each modality is informative (mean on / (on + off) duration).
  mean_on_seconds: float = 7.0
  mean_off_seconds: float = 3.0
  invalid_label_prob: float = 0.3
  num_pain_levels: int = 5


def smooth_trajectory(rng, t):
  """A smooth curve in (-1, 1): a few slow sinusoids squashed by tanh."""
  x = np.full_like(t, rng.uniform(-0.4, 0.4))
  for _ in range(3):
    freq = rng.uniform(0.02, 0.15)
    x += rng.uniform(0.3, 0.9) * np.sin(2 * np.pi * freq * t + rng.uniform(0, 2 * np.pi))
  return np.tanh(x).astype(np.float32)


def on_off_mask(rng, num, rate, spec):
  """Alternating informative / uninformative stretches with exponential durations."""
  mask = np.empty(num, bool)
  pos, on = 0, rng.random() < spec.mean_on_seconds / (spec.mean_on_seconds + spec.mean_off_seconds)
  while pos < num:
    mean = spec.mean_on_seconds if on else spec.mean_off_seconds
    length = max(1, int(rng.exponential(mean) * rate))
    mask[pos:pos + length] = on
    pos, on = pos + length, not on
  return mask


def _soft(inside):
  """Anti-aliased mask from a signed 'inside' distance (positive inside)."""
  return 1.0 / (1.0 + np.exp(-np.clip(inside, -30, 30)))


def weak_cue(rng, latent, t):
  return WEAK_CUE_SIGNAL * latent + (1 - WEAK_CUE_SIGNAL) * smooth_trajectory(rng, t)


def render_faces(rng, valence, arousal, pain, face_on, spec):
  """Face-like frames: mouth curvature shows valence, eye opening and head shake show
  arousal, squeezed eyes and lowered inner brows show pain. The face is a strong cue
  to valence and a weaker one to arousal; the voice is the reverse."""
  n, size = len(valence), spec.frame_size
  grid = (np.arange(size) + 0.5) / size * 2 - 1
  y, x = grid[None, :, None], grid[None, None, :]
  edge = 2.0 / size
  t = np.arange(n) / spec.fps
  v = valence[:, None, None]
  a = (weak_cue(rng, arousal, t)[:, None, None] + 1) / 2
  squeeze = pain / max(1, spec.num_pain_levels - 1)

  drift = lambda: 0.12 * np.sin(2 * np.pi * rng.uniform(0.01, 0.05) * np.arange(n) / spec.fps + rng.uniform(0, 6))
  shake = 0.04 * a[:, 0, 0] * rng.standard_normal((2, n))
  cx = (drift() + shake[0])[:, None, None]
  cy = (drift() + shake[1])[:, None, None]
  s = rng.uniform(0.8, 1.05) * (1 + 0.05 * np.sin(np.arange(n) / spec.fps * rng.uniform(0.1, 0.4)))[:, None, None]

  background = rng.uniform(0.1, 0.6, 3)
  skin = rng.uniform([0.55, 0.4, 0.3], [0.95, 0.8, 0.7])
  img = np.broadcast_to(background, (n, size, size, 3)).copy()

  face = _soft((1 - np.sqrt(((x - cx) / (0.62 * s)) ** 2 + ((y - cy) / (0.8 * s)) ** 2)) / edge * 0.6)
  img = img * (1 - face[..., None]) + skin * face[..., None]

  dark = np.zeros((n, size, size))
  eye_open = (0.06 + 0.04 * a) * (1 - 0.55 * squeeze)
  for side in (-1, 1):
    ex = cx + side * 0.26 * s
    ey = cy - 0.18 * s
    dark = np.maximum(dark, _soft((1 - np.sqrt(((x - ex) / (0.13 * s)) ** 2 + ((y - ey) / (eye_open * s)) ** 2)) * 4))
    # The inner ends of the brows drop with pain.
    inner = (x - cx) * side < 0.26 * s
    brow_y = ey - 0.19 * s + np.where(inner, 0.08 * squeeze * s * (1 - np.abs(x - ex) / (0.15 * s)), 0)
    brow = _soft((0.025 * s - np.abs(y - brow_y)) / edge) * _soft((0.16 * s - np.abs(x - ex)) / edge)
    dark = np.maximum(dark, brow)
  u = (x - cx) / (0.3 * s)
  mouth_y = cy + 0.42 * s - 0.16 * s * v * u**2
  mouth = _soft((0.06 * s - np.abs(y - mouth_y)) / edge) * _soft((1 - np.abs(u)) * 6)
  dark = np.maximum(dark, mouth)
  img = img * (1 - 0.85 * dark[..., None])

  # During some "off" stretches a hand or object covers the eyes or the mouth; during
  # the others no face is found at all.
  occluded = np.zeros(n, bool)
  band_top = np.zeros(n)
  stretch_id = np.cumsum(np.r_[True, face_on[1:] != face_on[:-1]])
  for sid in np.unique(stretch_id[~face_on]):
    if rng.random() < 0.4:
      idx = stretch_id == sid
      occluded |= idx
      band_top[idx] = rng.choice([-0.45, 0.05])
  band_top = band_top[:, None, None]
  cover = occluded[:, None, None] & (y > cy + band_top * s) & (y < cy + (band_top + 0.6) * s)
  img = np.where(cover[..., None], rng.uniform(0.2, 0.8, 3), img)

  brightness = rng.uniform(0.75, 1.25)
  img = img * brightness + rng.normal(0, 0.04, img.shape)
  frames = (np.clip(img, 0, 1) * 255).astype(np.uint8)
  face_found = face_on | occluded
  frames[~face_found] = 0
  return frames, face_found


def render_voice(rng, valence, arousal, voice_on, spec):
  """Voice-like audio: loudness and syllable tempo follow arousal strongly; pitch
  (relative to the speaker's own) and brightness follow valence weakly; silent while
  the voice is off."""
  n = len(valence)
  num_samples = int(round(n * spec.audio_rate / spec.fps))
  t_frames = np.arange(n) / spec.fps
  t = np.arange(num_samples) / spec.audio_rate
  v = np.interp(t, t_frames, weak_cue(rng, valence, t_frames))
  a = np.interp(t, t_frames, arousal)
  on = np.interp(t, t_frames, voice_on.astype(np.float64))

  f0 = rng.uniform(110, 200) * 2 ** (0.5 * v + 0.03 * np.sin(2 * np.pi * 5 * t))
  phase = 2 * np.pi * np.cumsum(f0) / spec.audio_rate
  tilt = 1.7 - 0.6 * v
  wave = np.zeros(num_samples)
  for k in range(1, 13):
    partial = k ** -tilt * np.sin(k * phase)
    wave += np.where(k * f0 < 0.45 * spec.audio_rate, partial, 0.0)

  syllable_rate = 2.0 + 3.0 * (a + 1) / 2
  syllables = (0.5 + 0.5 * np.sin(2 * np.pi * np.cumsum(syllable_rate) / spec.audio_rate)) ** 2
  loudness = 10 ** ((-22 + 16 * a) / 20)
  noise = rng.uniform(0.002, 0.01) * rng.standard_normal(num_samples)
  audio = on * loudness * syllables * wave / 2 + noise
  return (np.clip(audio, -1, 1) * 32767).astype(np.int16)


def render_eda(rng, arousal, pain, bio_on, spec):
  """EDA-like signal: skin-conductance responses whose rate and size grow with pain,
  a tonic level that follows arousal slightly, and flat zeros during sensor drop-outs."""
  n = len(arousal)
  num = int(round(n * spec.bio_rate / spec.fps))
  t = np.arange(num) / spec.bio_rate
  a = np.interp(t, np.arange(n) / spec.fps, arousal)
  level = pain / max(1, spec.num_pain_levels - 1)
  tonic = rng.uniform(2, 8) + 0.3 * a + 0.05 * np.cumsum(rng.standard_normal(num)) / np.sqrt(spec.bio_rate)
  kernel_t = np.arange(int(8 * spec.bio_rate)) / spec.bio_rate
  kernel = np.exp(-kernel_t / 3.0) - np.exp(-kernel_t / 0.7)
  kernel /= kernel.max()
  onsets = rng.random(num) < (0.05 + 0.35 * level) / spec.bio_rate
  impulses = onsets * rng.uniform(0.5, 1.5, num) * (0.15 + 0.6 * level)
  phasic = np.convolve(impulses, kernel)[:num]
  on = np.interp(t, np.arange(n) / spec.fps, bio_on.astype(np.float64)) > 0.5
  eda = np.where(on, tonic + phasic + 0.02 * rng.standard_normal(num), 0.0)
  return eda.astype(np.float32)[:, None]


def render_recording(seed, spec):
  """Renders one recording from its own seed (independent of any other recording)."""
  rng = np.random.default_rng(seed)
  n = int(rng.integers(spec.min_frames, spec.max_frames + 1))
  t = np.arange(n) / spec.fps
  valence, arousal = smooth_trajectory(rng, t), smooth_trajectory(rng, t)
  pain = int(rng.integers(spec.num_pain_levels))
  face_on = on_off_mask(rng, n, spec.fps, spec)
  voice_on = on_off_mask(rng, n, spec.fps, spec)
  bio_on = on_off_mask(rng, n, spec.fps, spec)

  frames, face_found = render_faces(rng, valence, arousal, pain, face_on, spec)
  audio = render_voice(rng, valence, arousal, voice_on, spec)
  eda = render_eda(rng, arousal, pain, bio_on, spec)

  labels_valid = np.ones(n, bool)
  if rng.random() < spec.invalid_label_prob:
    start, length = rng.integers(0, n), rng.integers(5, 30)
    labels_valid[start:start + length] = False
  return Recording(
      frames=frames,
      face_found=face_found,
      valence=np.where(labels_valid, valence, INVALID_LABEL).astype(np.float32),
      arousal=np.where(labels_valid, arousal, INVALID_LABEL).astype(np.float32),
      audio=audio,
      biosignal=eda,
      pain=pain,
  )
