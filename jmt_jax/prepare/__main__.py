"""Prepare Aff-Wild2 or BioVid (Part A) from the organisers' tree as ArrayRecord shards.

  python -m jmt_jax.prepare affwild2 --raw_dir=/data/Aff-Wild2 --out_dir=data/affwild2
  python -m jmt_jax.prepare biovid --raw_dir=/data/BioVid/PartA --out_dir=data/biovid

Running the same command again continues a killed preparation where it stopped.
Files that cannot be used are reported in one line each and listed in
<out_dir>/manifest.json with the counts and the shards' checksums; the rest is prepared.
"""

import os
import sys

from absl import app
from absl import flags

from jmt_jax.errors import BadInput
from jmt_jax.prepare import driver
from jmt_jax.runtime import cli
from jmt_jax.runtime import library_logs

FLAGS = flags.FLAGS


def main(argv):
  if len(argv) != 2 or argv[1] not in driver.LAYOUTS:
    raise app.UsageError(f"name the dataset: python -m jmt_jax.prepare "
                         f"{{{'|'.join(driver.LAYOUTS)}}} --raw_dir=... --out_dir=...")
  library_logs.quiet()
  dataset = argv[1]
  options = dict(frame_size=FLAGS.frame_size, frame_tolerance=FLAGS.frame_tolerance)
  if dataset == "affwild2":
    options.update(audio_rate=FLAGS.audio_rate, test_list=FLAGS.test_list)
  else:
    options.update(bio_rate=FLAGS.bio_rate)
  try:
    manifest = driver.prepare(dataset, FLAGS.raw_dir, FLAGS.out_dir, workers=FLAGS.workers,
                              segment_frames=FLAGS.segment_frames or 0, **options)
  except (BadInput, ValueError, OSError) as e:
    sys.exit(f"error: {e}")
  for split, c in manifest["counts"].items():
    print(f"{split}: " + ", ".join(f"{k} {v}" for k, v in c.items()))
  print(f"{len(manifest['skipped'])} recording(s) skipped, {len(manifest['shards'])} shard(s); "
        f"manifest: {os.path.join(os.path.abspath(FLAGS.out_dir), 'manifest.json')}")


def _define_flags():
  flags.DEFINE_string("raw_dir", None, "The dataset's tree as the organisers publish it.")
  flags.DEFINE_string("out_dir", None, "Where shards, work files and manifest go.")
  flags.DEFINE_integer("workers", max(1, (os.cpu_count() or 2) - 1),
                       "Recordings decoded in parallel.", lower_bound=1)
  flags.DEFINE_integer("frame_size", 112, "Side of the stored face crops.", lower_bound=1)
  flags.DEFINE_integer("audio_rate", 44100, "Aff-Wild2: audio resampled to this rate.",
                       lower_bound=1)
  flags.DEFINE_integer("bio_rate", 512, "BioVid: the biosignals' sampling rate (files at "
                       "another rate, by their time column, are resampled to it).", lower_bound=1)
  flags.DEFINE_integer(
    "frame_tolerance", 16, "Frames by which crops, audio or biosignals may disagree with the "
    "labels' frame count before the recording is reported as broken.", lower_bound=0)
  flags.DEFINE_string("test_list", "", "Aff-Wild2: the test-set list (default: the "
                      "one *test*set*.txt file found under --raw_dir).")
  flags.DEFINE_integer("segment_frames", None, "Frames per record (default: the dataset's).",
                       lower_bound=1)
  flags.mark_flags_as_required(["raw_dir", "out_dir"])


if __name__ == "__main__":
  cli.app_run(main, _define_flags)
