"""The tensorflow-datasets builder that writes prepared recordings as ArrayRecord shards.

Its records are those of the built-in dataset (`data.records`), so one reader serves
both. The builder config is named after a hash of the recordings' outcomes and the
record format, so shards written from different work files or formats never mix.
"""

import dataclasses

import tensorflow_datasets as tfds

from jmt_jax.data import records
from jmt_jax.prepare import work


@dataclasses.dataclass(eq=False)
class PreparedConfig(tfds.core.BuilderConfig):
  work_dir: str = ""
  frame_size: int = 112
  signals: tuple = ()  # ((signal key, channels), ...): see records.record_features
  rates: tuple = ()  # (("fps", ...), ("audio_rate", ...), ("bio_rate", ...))
  segment_frames: int = 64


class PreparedRecordings(tfds.core.GeneratorBasedBuilder):
  """Face video, audio and biosignals of a real dataset, as frame and segment records.

  `split_entries` ({split: [table entry, ...]}) says which work files go into which split;
  it is not part of the config, which tensorflow-datasets logs in full.
  """

  def __init__(self, *, split_entries=None, **kwargs):
    super().__init__(**kwargs)
    self.split_entries = split_entries or {}

  VERSION = tfds.core.Version("2.0.0")
  RELEASE_NOTES = {"1.0.0": "First release.", "2.0.0": "Frame records of JPEG bytes."}

  def _info(self):
    cfg = self.builder_config
    return tfds.core.DatasetInfo(
        builder=self,
        features=records.record_features(dict(cfg.signals)),
        disable_shuffling=True,  # records stay in stored order: see records.SplitTable
        metadata=tfds.core.MetadataDict(),
    )

  def _split_generators(self, dl_manager):
    del dl_manager
    cfg = self.builder_config
    self.info.metadata["rates"] = dict(cfg.rates)
    self.info.metadata["segment_frames"] = cfg.segment_frames
    self.info.metadata["format"] = records.FORMAT
    for split, entries in self.split_entries.items():
      self.info.metadata[split] = list(entries)
    return {split: self._generate_examples(entries) for split, entries in self.split_entries.items()}

  def _generate_examples(self, entries):
    cfg = self.builder_config
    rates = dict(cfg.rates)
    for i, entry in enumerate(entries):
      rec = work.load(cfg.work_dir, entry["name"], cfg.frame_size)
      for j, record in enumerate(records.recording_records(
          rec, dict(cfg.signals), cfg.segment_frames, entry["fps"], rates)):
        yield i * 10_000_000 + j, record

