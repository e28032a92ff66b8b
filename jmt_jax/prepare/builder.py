"""The tensorflow-datasets builder that writes prepared recordings as ArrayRecord shards.

Its records are the same segment records as the built-in dataset's (`data.records`),
so one reader serves both. The builder config is named after a hash of the recordings'
outcomes, so shards written from different work files never mix.
"""

import dataclasses

import tensorflow_datasets as tfds

from jmt_jax.data import records
from jmt_jax.prepare import work


@dataclasses.dataclass(eq=False)
class PreparedConfig(tfds.core.BuilderConfig):
  work_dir: str = ""
  frame_size: int = 112
  bio_channels: int = 0
  rates: tuple = ()  # (("fps", ...), ("audio_rate", ...), ("bio_rate", ...))
  segment_frames: int = 64


class PreparedRecordings(tfds.core.GeneratorBasedBuilder):
  """Face video, audio and biosignals of a real dataset, cut into segment records.

  `split_entries` ({split: [table entry, ...]}) says which work files go into which split;
  it is not part of the config, which tensorflow-datasets logs in full.
  """

  def __init__(self, *, split_entries=None, **kwargs):
    super().__init__(**kwargs)
    self.split_entries = split_entries or {}

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "First release."}

  def _info(self):
    cfg = self.builder_config
    return tfds.core.DatasetInfo(
        builder=self,
        features=records.segment_features(cfg.frame_size, cfg.bio_channels),
        disable_shuffling=True,  # records stay in (recording, segment) order: see records.SplitTable
        metadata=tfds.core.MetadataDict(),
    )

  def _split_generators(self, dl_manager):
    del dl_manager
    cfg = self.builder_config
    self.info.metadata["rates"] = dict(cfg.rates)
    self.info.metadata["segment_frames"] = cfg.segment_frames
    for split, entries in self.split_entries.items():
      self.info.metadata[split] = list(entries)
    return {split: self._generate_examples(entries) for split, entries in self.split_entries.items()}

  def _generate_examples(self, entries):
    cfg = self.builder_config
    rates = dict(cfg.rates)
    for i, entry in enumerate(entries):
      rec = work.load(cfg.work_dir, entry["name"], cfg.frame_size)
      for seg in records.segment_recording(entry["name"], i, rec, cfg.segment_frames,
                                           entry["fps"], rates["audio_rate"], rates["bio_rate"]):
        yield i * 1_000_000 + seg["segment_index"], seg
