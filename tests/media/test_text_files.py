"""Label, sample and biosignal files as users' tools save them: a UTF-8 byte-order mark,
Windows line endings, UTF-16; a biosignal whose time column says another rate."""

import numpy as np
import pytest

import raw_trees
from jmt_jax.errors import BadInput
from jmt_jax.media import biosignals
from jmt_jax.media import text_files
from jmt_jax.prepare import affwild2
from jmt_jax.prepare import biovid

LABELS = "valence,arousal\n0.1,-0.2\n-5,-5\n0.3,0.4\n"
SAMPLES = ("subject_id\tsubject_name\tclass_id\tclass_name\tsample_id\tsample_name\n"
           "1\t071309_w_21\t0\tBL1\t0\t071309_w_21-BL1-081\n")

SAVED_AS = {
    "utf-8": lambda t: t.encode("utf-8"),
    "utf-8 with BOM, CRLF (Excel, Notepad)": lambda t: b"\xef\xbb\xbf" + t.replace(
        "\n", "\r\n").encode("utf-8"),
    "utf-16 with BOM (Windows tools)": lambda t: t.replace("\n", "\r\n").encode("utf-16"),
    "utf-16-le without BOM": lambda t: t.encode("utf-16-le"),
    "old Mac CR": lambda t: t.replace("\n", "\r").encode("utf-8"),
}


@pytest.mark.parametrize("how", SAVED_AS)
def test_labels_and_samples_read_however_saved(tmp_path, how):
  labels, samples = tmp_path / "video.txt", tmp_path / "samples.csv"
  labels.write_bytes(SAVED_AS[how](LABELS))
  samples.write_bytes(SAVED_AS[how](SAMPLES))
  np.testing.assert_allclose(affwild2.read_labels(str(labels)),
                             [[0.1, -0.2], [-5, -5], [0.3, 0.4]], rtol=1e-6)
  [row] = biovid.read_samples(str(samples))
  assert row["sample_name"] == "071309_w_21-BL1-081" and row["subject_name"] == "071309_w_21"


def test_other_encodings_are_named(tmp_path):
  path = tmp_path / "video.txt"
  path.write_bytes("valence,arousal\n0.1,0.2 # \u00e9t\u00e9\n".encode("latin-1"))
  with pytest.raises(BadInput, match=r"video.txt: not UTF-8 text \(byte 26 is b'\\xe9'\): save it "
                                     r"as UTF-8"):
    text_files.read_lines(str(path))


def _bio(tmp_path, seconds, rate, unit=1e6, jitter=0.0, name="s_bio.csv"):
  t = np.arange(int(seconds * rate)) / rate
  t = t + np.random.default_rng(0).uniform(0, jitter, len(t)) * (t > 0)  # when sampled
  values = np.stack([np.sin(2 * np.pi * 0.5 * t), np.cos(2 * np.pi * 0.3 * t), t], 1)
  stamps = t * unit
  path = tmp_path / name
  with open(path, "w", newline="") as f:
    f.write(raw_trees.BIO_HEADER + "\r\n")
    for s, row in zip(stamps, values):
      f.write("\t".join([f"{s:.9g}"] + [f"{x:.6f}" for x in row]) + "\r\n")
  return str(path), values


def test_a_biosignal_at_the_model_rate_is_read_as_is(tmp_path):
  path, values = _bio(tmp_path, 2.0, 512)  # BioVid's: microseconds, 512 Hz
  np.testing.assert_allclose(biosignals.read(path, rate=512), values, atol=1e-6)


@pytest.mark.parametrize("rate, unit", [(256, 1e6), (1000, 1e3), (300, 1.0)])
def test_a_biosignal_at_another_rate_is_resampled_to_the_model_rate(tmp_path, rate, unit):
  path, _ = _bio(tmp_path, 2.0, rate, unit)
  got = biosignals.read(path, rate=512)
  t = np.arange(len(got)) / 512
  assert len(got) == pytest.approx(2.0 * 512, abs=3)
  np.testing.assert_allclose(got[:, 0], np.sin(2 * np.pi * 0.5 * t), atol=2e-3)
  np.testing.assert_allclose(got[:, 2], t, atol=1e-5)  # on the true time axis


def test_uneven_or_unusable_time_columns(tmp_path):
  path, _ = _bio(tmp_path, 2.0, 512, jitter=0.9 / 512)  # a logger's jitter: put on the grid
  got = biosignals.read(path, rate=512)
  np.testing.assert_allclose(got[:, 2], np.arange(len(got)) / 512, atol=1e-5)
  odd = tmp_path / "odd_bio.csv"  # 20 Hz in ms, or 20 kHz in us: neither near 512 Hz
  odd.write_text(raw_trees.BIO_HEADER + "\n" + "".join(f"{50 * i}\t1\t1\t1\n" for i in range(9)))
  with pytest.raises(BadInput, match="step \\(50\\) fits no rate near the model's 512 Hz"):
    biosignals.read(str(odd), rate=512)
  bad = tmp_path / "back_bio.csv"
  bad.write_text(raw_trees.BIO_HEADER + "\n0\t1\t1\t1\n2000\t1\t1\t1\n1000\t1\t1\t1\n")
  with pytest.raises(BadInput, match="back_bio.csv: the time column does not increase at line 4"):
    biosignals.read(str(bad), rate=512)
