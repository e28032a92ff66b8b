"""Per-clip backbone embeddings, a fixed batch of clips at a time: what the feature cache
stores and what prediction fuses."""

import jax
import numpy as np

from jmt_jax.data import clips as clips_lib
from jmt_jax.models import model as model_lib
from jmt_jax.runtime import compiler

BATCH = 16  # clips per backbone call: one compiled shape, little padding for short inputs


def embed_fn(model):
  """Jitted (variables, {modality: (1, clips, ...) inputs}) -> {modality: (1, clips, D)}:
  `model.embed`, with variables as `model.apply` takes them (`models.variables.cast`)."""
  return compiler.jit(lambda v, batch: model.apply(v, batch, method=model.embed))


def batch_spec(config):
  """{modality: jax.ShapeDtypeStruct} of the batch an `embed_fn` is called with: BATCH clips."""
  return {m: jax.ShapeDtypeStruct((1, BATCH) + s.shape[2:], s.dtype)
          for m, s in model_lib.input_spec(config).items()}


def embedder(model, variables):
  """`embed_fn(model)` on `variables`: {modality: (1, clips, ...)} -> {modality: (1, clips, D)}."""
  embed = embed_fn(model)
  return lambda batch: embed(variables, batch)


def frame_modalities(config):
  """The modalities of `config` whose backbone is a frame encoder, embedded (and stored)
  frame by frame (models.model.is_frame_encoder)."""
  return tuple(m for m in config.model.modalities
               if model_lib.is_frame_encoder(config.model.backbones[m]))


def read_frames(store, recording, frames, specs):
  """{modality: (len(frames), 1, S, S, 3)}: the given frames of a recording of `store`
  as clips of one frame (`embed` gives their frame encoders' embeddings of each) for the
  frame modalities' input configs `specs`, zeros outside the recording."""
  if not specs:  # nothing to read (read_clips would still read the labels)
    return {}
  one = {m: dict(s, frames_per_clip=1) for m, s in specs.items()}
  inputs = clips_lib.read_clips(store, recording, frames, one, clip_frames=1)
  return {m: inputs[m] for m in specs}


def embed_clips(embed, inputs, batch_size=BATCH):
  """{modality: (clips, D) float32} of per-clip `inputs` ({modality: (clips, ...)}, and
  any chunked speech context: models.model.context_key), through `embed` (an
  `embedder`) in batches of `batch_size` clips, the last zero-padded."""
  n = len(next(iter(inputs.values())))
  parts = []
  for first in range(0, n, batch_size):
    batch = {m: np.concatenate([x[first:first + batch_size], np.zeros(
        (max(0, first + batch_size - n),) + x.shape[1:], x.dtype)])[None]
             for m, x in inputs.items()}
    parts.append(jax.device_get(embed(batch)))
  return {m: np.concatenate([p[m][0] for p in parts])[:n].astype(np.float32) for m in parts[0]}
