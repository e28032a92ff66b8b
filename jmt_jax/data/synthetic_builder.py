"""The built-in dataset: synthetic recordings written as ArrayRecord shards of
`data.records` by a tensorflow-datasets builder, generated on first use and cached.

The builder config's name is a hash of everything that shapes the data (the record
format included), so a change of render parameters, seed or format makes a new cached
dataset rather than reusing a stale one. Frames are stored as JPEG at
`records.JPEG_QUALITY`, like every frame the preparation encodes itself.
"""

import dataclasses
import fcntl
import hashlib
import json
import os

import numpy as np
import tensorflow_datasets as tfds

from jmt_jax.data import records
from jmt_jax.data import synthetic

SIGNALS = {"audio": 0, "biosignal": 1}  # one EDA channel


@dataclasses.dataclass(eq=False)
class SyntheticConfig(tfds.core.BuilderConfig):
  spec: synthetic.RenderSpec = dataclasses.field(default_factory=synthetic.RenderSpec)
  split_sizes: tuple = (("train", 80), ("validation", 20))
  seed: int = 0
  segment_frames: int = 32


def make_config(spec, split_sizes, seed, segment_frames):
  key = json.dumps([synthetic.RENDER_VERSION, records.FORMAT, records.ENCODING,
                    dataclasses.asdict(spec), list(split_sizes), seed, segment_frames],
                   sort_keys=True)
  name = "s" + hashlib.sha1(key.encode()).hexdigest()[:12]
  return SyntheticConfig(name=name, spec=spec, split_sizes=tuple(split_sizes), seed=seed,
                         segment_frames=segment_frames, description=key)


class SyntheticAffect(tfds.core.GeneratorBasedBuilder):
  """Synthetic face video + voice + EDA recordings with valence/arousal and pain labels."""

  VERSION = tfds.core.Version("2.0.0")
  RELEASE_NOTES = {"1.0.0": "First release.", "2.0.0": "Frame records of JPEG bytes."}

  def _info(self):
    return tfds.core.DatasetInfo(
        builder=self,
        features=records.record_features(SIGNALS),
        disable_shuffling=True,  # records stay in stored order: see records.SplitTable
        metadata=tfds.core.MetadataDict(),
    )

  def _split_generators(self, dl_manager):
    del dl_manager
    cfg = self.builder_config
    self.info.metadata["rates"] = {"fps": cfg.spec.fps, "audio_rate": cfg.spec.audio_rate,
                                   "bio_rate": cfg.spec.bio_rate}
    self.info.metadata["segment_frames"] = cfg.segment_frames
    self.info.metadata["format"] = records.FORMAT
    return {split: self._generate_examples(split, split_id, size)
            for split_id, (split, size) in enumerate(cfg.split_sizes)}

  def _generate_examples(self, split, split_id, size):
    cfg, spec = self.builder_config, self.builder_config.spec
    rates = {"audio_rate": spec.audio_rate, "bio_rate": spec.bio_rate}
    table = []
    for i in range(size):
      rec = synthetic.render_recording(np.random.SeedSequence([cfg.seed, split_id, i]), spec)
      table.append({"name": f"{split}_{i:05d}", "num_frames": len(rec.valence), "pain": rec.pain})
      stored = records.Recording(jpegs=[records.encode_frame(f) for f in rec.frames],
                                 pain=rec.pain, **{k: getattr(rec, k) for k in records.ARRAYS})
      for j, record in enumerate(records.recording_records(stored, SIGNALS, cfg.segment_frames,
                                                           spec.fps, rates)):
        yield i * 10_000_000 + j, record
    self.info.metadata[split] = table


def prepare(data_dir, spec, split_sizes, seed, segment_frames):
  """Returns the builder, generating the dataset first if this data_dir lacks it.

  A file lock makes concurrent first uses (parallel tests, several hosts) build it once.
  """
  os.makedirs(data_dir, exist_ok=True)
  config = make_config(spec, split_sizes, seed, segment_frames)
  with open(os.path.join(data_dir, f".{config.name}.lock"), "w") as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    builder = SyntheticAffect(config=config, data_dir=data_dir, file_format="array_record")
    with records.deterministic_records():
      builder.download_and_prepare()
  return builder
