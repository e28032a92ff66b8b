"""jmt_jax's train step beside the authors' computation, in PyTorch modules that follow
their layouts (`tests/torch_reference.py`, parity-tested), at the paper's Aff-Wild2
shapes, in one run:

  python -m jmt_jax.benchmarks.versus_pytorch [--settings=frozen,fusion] [--rounds=3]

- `frozen`: the full step with frozen backbones, as the paper trains the fusion; batch 2
  windows of 16 clips. PyTorch does what the authors' `train.py` does: the frozen
  R(2+1)D-18 (torchvision's VideoResNet, which their `models/video_resnet.py` copies)
  and the log-mel ResNet-18 in eval mode embed each window's 16 clips in a call of their
  own, then `Two_transformers` forward and backward, their CCC loss (unbiased variances,
  over the batch), an SGD (Nesterov) update. Their inputs come from their data loader
  already normalised and as log-mel spectrograms, stacked into contiguous channels-first
  tensors: that work is timed apart ("front ends") and not in the step. jmt_jax's step
  starts from the stored pixels and audio (uint8, int16) and computes its front ends
  itself, on the device. A third side, "pytorch channels-last", is the authors' step on
  clips kept in channels-last storage, which their loader does not give but oneDNN's
  3-D convolutions run faster.
- `fusion`: the same step from per-clip embeddings (the feature cache's path), batch 32.

The two sides alternate, `rounds` times, so that both see the same machine; the medians
and their ratio (clips/s of jmt_jax over PyTorch's) are printed, float32 against float32,
with jmt_jax in bfloat16 beside it. PyTorch runs on `--threads` threads (default: every
core); XLA's CPU backend uses every core of the host. Needs `pip install torch`.
"""

import os
import statistics
import sys
import time

import jax
import numpy as np
from absl import flags

from jmt_jax import config_args
from jmt_jax.benchmarks import step_timing
from jmt_jax.data.records import DIMENSIONS
from jmt_jax.models import frontends
from jmt_jax.runtime import cli
from jmt_jax.runtime import library_logs

FLAGS = flags.FLAGS

_REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# setting: (batch size, steps per timing)
SETTINGS = {"frozen": (2, 1), "fusion": (32, 20)}


def jax_config(setting, dtype):
  config = config_args.load("configs/affwild2.py:jmt,synthetic")
  config.model.freeze_backbones = True
  config.compute_dtype = dtype
  return config


class TorchStep:
  """The authors' step at the config's shapes, on inputs their data loader would give."""

  def __init__(self, torch, ref, config, setting, batch, channels_last=False):
    self.torch, self.setting, self.channels_last = torch, setting, channels_last
    self.fusion = ref.AffWild2Fusion(ref.JMT(512, 1, 1, "tokens"), 512).train()
    self.opt = torch.optim.SGD(self.fusion.parameters(), lr=config.optimizer.learning_rate,
                               momentum=0.9, nesterov=True)
    self.labels = [torch.from_numpy(batch[k]) for k in DIMENSIONS]
    if setting == "fusion":
      self.inputs = [torch.from_numpy(batch["embeddings"][m]) for m in ("video", "audio")]
      return
    self.video = ref.ResNet("r2plus1d", reduction="max").eval()
    self.audio = ref.ResNet("resnet2d", in_channels=1).eval()
    for p in [*self.video.parameters(), *self.audio.parameters()]:
      p.requires_grad = False  # their main.py freezes the backbones so
    video = config.model.backbones.video
    self.mean = torch.tensor(video.mean).view(1, 1, 3, 1, 1, 1)
    self.std = torch.tensor(video.std).view(1, 1, 3, 1, 1, 1)
    spec = config.input.modalities.audio
    self.spec = spec
    self.window = torch.from_numpy(frontends.window(spec.n_fft, spec.win_length).astype(np.float32))
    self.mel = torch.from_numpy(frontends.mel_filterbank(config.data.signals.audio_rate, spec.n_fft,
                                                      spec.n_mels).astype(np.float32))
    self.raw = (torch.from_numpy(batch["video"]), torch.from_numpy(batch["audio"]))
    self.inputs = self.front_ends()

  def front_ends(self):
    """(B, T, 3, F, H, W) normalised clips and (B, T, 1, mels, frames) log-mels of the
    stored (B, T, F, H, W, 3) pixels and (B, T, samples) audio: what the authors' data
    loader hands their step. Their loader stacks the clips (`torch.stack`), so they
    arrive contiguous, channels first; with `channels_last` they keep the pixels'
    channels-last storage, which oneDNN's 3-D convolutions take faster."""
    frames, wave = self.raw
    clips = (frames.permute(0, 1, 5, 2, 3, 4).float() / 255.0 - self.mean) / self.std
    b, t = wave.shape[:2]
    spectrograms = self._log_mel(wave.flatten(0, 1)).unflatten(0, (b, t)).contiguous()
    return (clips if self.channels_last else clips.contiguous()), spectrograms

  def _log_mel(self, wave):
    torch, s = self.torch, self.spec
    x = wave.float() / 32768.0
    x = torch.nn.functional.pad(x[:, None], (s.n_fft // 2, s.n_fft // 2), mode="reflect")[:, 0]
    frames = x.unfold(-1, s.n_fft, s.hop_length) * self.window
    power = torch.fft.rfft(frames).abs() ** 2
    db = 10.0 * torch.log10(torch.clamp(power @ self.mel, min=1e-10))
    db = torch.maximum(db, db.amax(dim=(-2, -1), keepdim=True) - s.top_db)
    return ((db.transpose(-1, -2) - s.mean) / s.std)[:, None]

  def _ccc_loss(self, preds):
    """The authors' CCCLoss per dimension over the batch's clips, summed."""
    loss = 0.0
    for p, y in zip(preds, self.labels):
      p, y = p.flatten(), y.flatten()
      cov = ((p - p.mean()) * (y - y.mean())).sum()
      ccc = 2 * cov / ((y.std() ** 2 + p.std() ** 2 + (p.mean() - y.mean()) ** 2 + 1e-8)
                       * p.shape[0])
      loss = loss + 1 - ccc
    return loss

  def __call__(self):
    torch = self.torch
    if self.setting == "fusion":
      v, a = self.inputs
    else:
      clips, spectrograms = self.inputs
      b, t = self.labels[0].shape
      v, a = torch.empty(b, t, 512), torch.empty(b, t, 512)
      for i in range(b):  # as their train.py: one backbone call per window
        v[i] = self.video(clips[i])
        a[i] = self.audio(spectrograms[i])
    loss = self._ccc_loss(self.fusion(v, a))
    self.opt.zero_grad()
    loss.backward()
    self.opt.step()
    return float(loss)


def compare(torch, ref, setting, rounds, with_bf16):
  batch_size, steps = SETTINGS[setting]
  config = jax_config(setting, "float32")
  batch = step_timing.synthetic_batch(config, batch_size, embeddings=setting == "fusion")
  clips = batch_size * config.input.num_clips
  fusion = setting == "fusion"
  sides = {"jmt_jax float32": step_timing.compile_step(config, batch, fusion)}
  if with_bf16:
    sides["jmt_jax bfloat16"] = step_timing.compile_step(jax_config(setting, "bfloat16"), batch,
                                                             fusion)
  authors = "pytorch float32"
  torch_steps = {authors: TorchStep(torch, ref, config, setting, batch)}
  if not fusion:
    torch_steps["pytorch channels-last"] = TorchStep(torch, ref, config, setting, batch, True)
  for torch_step in torch_steps.values():
    torch_step()  # warm-up

  def time_torch(torch_step):
    t0 = time.perf_counter()
    for _ in range(steps):
      torch_step()
    return (time.perf_counter() - t0) / steps

  def time_front_ends():
    t0 = time.perf_counter()
    torch_steps[authors].front_ends()
    return time.perf_counter() - t0

  seconds = {name: [] for name in [*sides, *torch_steps]}
  front = []
  for _ in range(rounds):
    for name, side in sides.items():
      seconds[name].append(side.time(steps))
    for name, torch_step in torch_steps.items():
      seconds[name].append(time_torch(torch_step))
    if not fusion:
      front.append(time_front_ends())
  if front:
    seconds["pytorch + front ends"] = [s + f for s, f in zip(seconds[authors], front)]
  rate = {name: clips / statistics.median(s) for name, s in seconds.items()}
  print(f"\n{setting}: batch {batch_size} x {config.input.num_clips} clips, median of {rounds} "
        f"rounds of {steps} step(s)")
  for name, s in seconds.items():
    print(f"  {name:20s} {rate[name]:9.2f} clips/s  ({statistics.median(s):.3f} s/step; "
          f"rounds: {', '.join(f'{x:.3f}' for x in s)})")
  if front:
    print(f"  (PyTorch's front ends, normalising the pixels and computing log-mels as the "
          f"authors' data loader does: {statistics.median(front):.3f} s a batch)")
  for name in sides:
    for base in (authors, "pytorch + front ends", "pytorch channels-last"):
      if base in rate:
        print(f"  ratio {name} / {base}: {rate[name] / rate[base]:.2f}x")
  return rate


def main(argv):
  del argv
  library_logs.quiet()
  try:
    import torch  # pylint: disable=import-outside-toplevel
  except ImportError:
    sys.exit("error: this benchmark needs PyTorch (pip install torch, the CPU build)")
  sys.path.insert(0, os.path.join(_REPO, "tests"))
  import torch_reference as ref  # pylint: disable=import-outside-toplevel
  torch.set_num_threads(FLAGS.threads or os.cpu_count())
  print(f"jax {jax.__version__} on {jax.devices()[0].device_kind} ({os.cpu_count()} host "
        f"cores); torch {torch.__version__} on {torch.get_num_threads()} threads")
  for setting in FLAGS.settings:
    if setting not in SETTINGS:
      sys.exit(f"error: --settings: unknown {setting!r}; use {sorted(SETTINGS)}")
    compare(torch, ref, setting, FLAGS.rounds, FLAGS.bfloat16)


def _define_flags():
  flags.DEFINE_list("settings", ["frozen", "fusion"], "Steps to compare.")
  flags.DEFINE_integer("rounds", 3, "Alternations of the two sides.")
  flags.DEFINE_integer("threads", 0, "PyTorch threads (0: every core).")
  flags.DEFINE_bool("bfloat16", True, "Also time jmt_jax in bfloat16.")


if __name__ == "__main__":
  cli.app_run(main, _define_flags)
