"""WavLM-Base forward, jmt_jax beside `transformers`' PyTorch `WavLMModel` on the same
weights, in one run; then per-clip against chunked encoding of a recording:

  python -m jmt_jax.benchmarks.speech_encoders [--batch=16] [--seconds=1] [--rounds=3]

1. Speed: a batch of `--batch` clips of `--seconds` of 16 kHz audio through
   `WavLMModel(WavLMConfig())` (WavLM-Base's architecture, random weights saved with
   `save_pretrained` and converted as a user's download is) to the pooled last hidden
   state. The two sides alternate `--rounds` times; medians, clips/s, their ratio
   (float32 against float32, jmt_jax bfloat16 beside it), XLA's FLOPs per batch and the
   utilisation of the peak (`benchmarks.train_step.peak`: on a CPU a measured matmul).
   PyTorch runs on `--threads` threads (default: every core), as XLA's CPU backend does.
2. Context: a built-in Aff-Wild2-shaped recording (30 fps, 44.1 kHz, ~1 s windows, a clip
   at every frame) embedded per clip (the authors' way) and in chunks of
   `--chunk_seconds` with `--margin_seconds` of context (features.speech_context): the
   time each takes for the recording, and how far the clip embeddings differ (cosine
   similarity, relative L2), over the clips at every `--clip_every`-th frame.

Needs `pip install torch transformers`.
"""

import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import flags

from jmt_jax import config_args
from jmt_jax.benchmarks import versus_transformers
from jmt_jax.data import clips as clips_lib
from jmt_jax.data import synthetic
from jmt_jax.features import embed as embed_lib
from jmt_jax.features import speech_context
from jmt_jax.inference import stream
from jmt_jax.models import model as model_lib
from jmt_jax.models import variables as variables_lib
from jmt_jax.runtime import cli
from jmt_jax.runtime import library_logs

FLAGS = flags.FLAGS


def build(torch, transformers, directory):
  """(torch model, jmt_jax encoder, its float32 variables) of one WavLM-Base, saved in
  `directory` as a download is."""
  torch.manual_seed(0)
  reference = transformers.WavLMModel(transformers.WavLMConfig()).eval()
  reference.save_pretrained(directory)
  return (reference, *versus_transformers.converted_encoder(
      f"configs/affwild2.py:audio_backbone=wavlm,speech_config={directory}/config.json",
      "audio", directory))


def speed(torch, reference, encoder, variables):
  x = np.random.default_rng(0).standard_normal(
      (FLAGS.batch, int(FLAGS.seconds * 16000))).astype(np.float32)
  xt = torch.from_numpy(x)

  def torch_run():
    with torch.inference_mode():
      return reference(xt).last_hidden_state.mean(1)
  want = torch_run().numpy()
  sides, flops = {}, {}
  for dtype in ["float32"] + (["bfloat16"] if FLAGS.bfloat16 else []):
    sides[f"jmt_jax {dtype}"], flops[dtype] = versus_transformers.jax_side(
        encoder, variables, jnp.asarray(x), getattr(jnp, dtype))
  got = np.asarray(sides["jmt_jax float32"]())
  print(f"pooled embeddings, jmt_jax float32 vs transformers: max |diff| "
        f"{np.abs(got - want).max():.2e}")
  sides[versus_transformers.TORCH_SIDE] = torch_run
  versus_transformers.time_sides(sides, flops, FLAGS.batch, "clips", FLAGS.rounds,
                                 f"WavLM-Base forward, batch {FLAGS.batch} x "
                                 f"{FLAGS.seconds:g} s")


def context(directory, encoder_variables):
  """Per-clip and chunked embeddings of one built-in recording, through the paths the
  feature cache takes (`data.clips.read_clips` + `model.embed`, and
  `features.speech_context.ContextEmbedder`): times and differences."""
  spec = synthetic.RenderSpec(frame_size=16, fps=30.0, audio_rate=44100, bio_rate=64,
                              min_frames=900, max_frames=900)
  recording = synthetic.render_recording(0, spec)
  num_frames = len(recording.valence)

  def make_store():
    out = stream.StreamStore(spec.fps, {"audio_rate": spec.audio_rate, "bio_rate": 0},
                             {"audio": stream.ArraySignal(recording.audio)}, keep=num_frames)
    for i in range(num_frames):  # no faces: the clips read labels only
      out.add_frame(i, np.zeros((1, 1, 3), np.uint8))
    out.finish(num_frames)
    return out
  store = make_store()
  models = {}
  for chunk in (0.0, FLAGS.chunk_seconds):
    config = config_args.load(f"configs/affwild2.py:audio,audio_backbone=wavlm,speech_config="
                              f"{directory}/config.json,speech_chunk_seconds={chunk}")
    config.model.backbones.audio.chunk_margin_seconds = FLAGS.margin_seconds
    model = model_lib.build_model(config)
    variables = jax.jit(lambda k, m=model, c=config: variables_lib.init(m, c, k)[0])(
        jax.random.PRNGKey(0))
    params = {**variables["params"], "audio_backbone": encoder_variables["params"]}
    models[chunk] = model, variables_lib.cast(model, params, variables["batch_stats"]), config
  model, cast, config = models[0.0]
  specs = {"audio": config.input.modalities.audio.to_dict()}
  embed = embed_lib.embedder(model, cast)
  window = clips_lib.signal_window(specs["audio"], store.rates)

  def per_clip(ends):
    clips = clips_lib.read_clips(store, 0, ends, specs, config.input.clip_frames)
    return embed_lib.embed_clips(embed, {"audio": clips["audio"]})["audio"]

  chunked_model, chunked_cast, _ = models[FLAGS.chunk_seconds]
  embedder = speech_context.ContextEmbedder(chunked_model, chunked_cast, specs)
  chunked = lambda ends, on=store: embedder(on, 0, ends)[model_lib.context_key("audio")]
  sample = np.arange(0, num_frames, FLAGS.clip_every)
  chunked(sample[:1], make_store())  # compiles (a recording is encoded once per store)
  per_clip(sample[:1])
  t0 = time.perf_counter()
  pooled = chunked(np.arange(num_frames))
  chunk_s = time.perf_counter() - t0
  t0 = time.perf_counter()
  direct = per_clip(sample)
  per_clip_s = (time.perf_counter() - t0) * num_frames / len(sample)
  # Clips wholly inside the recording (a window reaching before it is zero-padded per clip).
  inside = clips_lib.window_stops(sample, spec.audio_rate, spec.fps) >= window
  a, b = direct[inside], pooled[sample[inside]]
  cos = (a * b).sum(-1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1)
  rel = np.linalg.norm(a - b, axis=-1) / np.linalg.norm(a, axis=-1)
  print(f"\ncontext: one built-in recording, {num_frames / spec.fps:.0f} s at {spec.fps:g} fps, "
        f"a {window / spec.audio_rate:.3f} s window per frame ({num_frames} clips)")
  print(f"  per clip (the authors'): {per_clip_s:7.1f} s (timed on {len(sample)} clips, scaled)")
  print(f"  chunked ({FLAGS.chunk_seconds:g} s chunks, {FLAGS.margin_seconds:g} s margins): "
        f"{chunk_s:7.1f} s   speed-up {per_clip_s / chunk_s:.1f}x")
  print(f"  over {len(a)} clips inside the recording: cosine similarity mean {cos.mean():.4f} "
        f"(min {cos.min():.4f}), relative L2 difference mean {rel.mean():.4f} "
        f"(max {rel.max():.4f})")


def main(argv):
  del argv
  library_logs.quiet()
  torch, transformers = versus_transformers.import_torch(FLAGS.threads)
  with tempfile.TemporaryDirectory() as directory:
    reference, encoder, variables = build(torch, transformers, directory)
    if "speed" in FLAGS.parts:
      speed(torch, reference, encoder, variables)
    if "context" in FLAGS.parts:
      context(directory, variables)


def _define_flags():
  flags.DEFINE_list("parts", ["speed", "context"], "What to measure.")
  flags.DEFINE_integer("batch", 16, "Clips per batch.")
  flags.DEFINE_float("seconds", 1.0, "Seconds of 16 kHz audio per clip (speed).")
  flags.DEFINE_integer("rounds", 3, "Alternations of the sides.")
  flags.DEFINE_integer("threads", 0, "PyTorch threads (0: every core).")
  flags.DEFINE_bool("bfloat16", True, "Also time jmt_jax in bfloat16.")
  flags.DEFINE_float("chunk_seconds", 10.0, "Chunk length of the chunked context.")
  flags.DEFINE_float("margin_seconds", 1.0, "Context either side of a chunk.")
  flags.DEFINE_integer("clip_every", 30, "Per-clip embeddings compared at every n-th frame.")


if __name__ == "__main__":
  cli.app_run(main, _define_flags)
