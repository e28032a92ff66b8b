"""Opening a dataset that `python -m jmt_jax.prepare` wrote, and its evaluation protocols.

Aff-Wild2's splits are the organisers' (train, validation, test), stored as such.
BioVid is stored as one split of all samples; a protocol in the config picks a fold's
training and validation samples from it (`folds`).
"""

import json
import os

import numpy as np
import tensorflow_datasets as tfds
from absl import logging

from jmt_jax.data import records

DATASETS = ("affwild2", "biovid")
MANIFEST = "manifest.json"
PROTOCOLS = ("loso", "subject_kfold", "sample_kfold")


def how_to_prepare(name, data_dir):
  return (f"no prepared {name} data in {data_dir}: prepare it first with\n"
          f"  python -m jmt_jax.prepare {name} --raw_dir=<the organisers' {name} tree> "
          f"--out_dir={data_dir}\nor point the config at it with data_dir=<that out_dir>")


def how_to_rewrite(name, data_dir, manifest):
  return (f"{data_dir} holds shards in an older record format (format "
          f"{manifest.get('format', 1)}; this jmt_jax reads format {records.FORMAT}): rewrite "
          f"them with\n  python -m jmt_jax.prepare {name} --raw_dir={manifest['raw_dir']} "
          f"--out_dir={data_dir}\n(it writes the shards from {data_dir}/work without "
          f"decoding any video again)")


def read_manifest(data_dir):
  path = os.path.join(data_dir, MANIFEST)
  if not os.path.exists(path):
    return None
  with open(path) as f:
    return json.load(f)


def open_prepared(data_config):
  """A `records.Dataset` from the prepared `data_config.data_dir`."""
  data_dir = os.path.expanduser(data_config.data_dir)
  manifest = read_manifest(data_dir)
  if manifest is None or not manifest.get("complete"):
    raise FileNotFoundError(how_to_prepare(data_config.name, data_dir))
  if manifest["dataset"] != data_config.name:
    raise ValueError(f"{data_dir} holds prepared {manifest['dataset']} data, not "
                     f"{data_config.name}")
  if manifest.get("format", 1) != records.FORMAT:
    raise ValueError(how_to_rewrite(data_config.name, data_dir, manifest))
  for key, want in data_config.signals.items():
    got = manifest["signals"][key]
    if want and got != want:
      raise ValueError(f"{data_dir} was prepared with {key}={got} but the config expects "
                       f"{want}: prepare again with --{key}={want} or change "
                       f"config.data.signals.{key}")
  builder = tfds.builder_from_directory(os.path.join(data_dir, manifest["tfds_dir"]))
  meta = builder.info.metadata
  sources = records.serialized_sources(builder)
  rates = dict(meta["rates"])
  tables = {s: records.SplitTable(meta[s], meta["segment_frames"], rates["fps"]) for s in sources}
  if data_config.name == "biovid":
    splits = fold_splits(sources["samples"], tables["samples"], data_config.protocol)
  else:
    splits = {s: records.Split(sources[s], t, np.arange(len(t))) for s, t in tables.items()}
  return records.Dataset(splits=splits, rates=rates,
                         frame_size=int(manifest["signals"]["frame_size"]),
                         directory=str(builder.data_dir))


def fold_splits(source, table, protocol):
  """{"train": Split, "validation": Split} of one fold of a protocol over one stored split."""
  return {name: records.Split(source, table, idx)
          for name, idx in folds(table, **protocol).items()}


def count_folds(table, kind, num_folds=5, **unused):
  """How many folds protocol `kind` has on `table`."""
  del unused
  return len(set(table.subjects)) if kind == "loso" else num_folds


def folds(table, kind, fold, num_folds=5, seed=0):
  """{"train": indices, "validation": indices} of fold `fold` of a protocol:

  loso: leave one subject out (as many folds as subjects, sorted by subject name);
  subject_kfold: subjects shuffled with `seed` and dealt into `num_folds` groups;
  sample_kfold: samples shuffled with `seed` into `num_folds` groups, as the public JMT
    code does; a subject's samples land on both sides, so its scores are optimistic.
  """
  subjects = np.array(table.subjects)
  names = sorted(set(table.subjects))
  if kind == "loso":
    num_folds = len(names)
    held_out = np.isin(subjects, names[fold:fold + 1])
  elif kind == "subject_kfold":
    order = np.random.default_rng(seed).permutation(len(names))
    groups = np.array_split(np.array(names)[order], num_folds)
    held_out = np.isin(subjects, groups[fold] if fold < num_folds else [])
  elif kind == "sample_kfold":
    logging.warning("BioVid protocol sample_kfold puts samples of one subject in both training "
                    "and validation (subject leakage): its accuracy is not comparable with "
                    "subject-independent results.")
    order = np.random.default_rng(seed).permutation(len(table))
    groups = np.array_split(order, num_folds)
    held_out = np.isin(np.arange(len(table)), groups[fold] if fold < num_folds else [])
  else:
    raise ValueError(f"unknown BioVid protocol {kind!r}; use one of {list(PROTOCOLS)}")
  if not 0 <= fold < num_folds:
    raise ValueError(f"fold {fold} does not exist: protocol {kind} has folds 0..{num_folds - 1}")
  return {"train": np.flatnonzero(~held_out), "validation": np.flatnonzero(held_out)}
