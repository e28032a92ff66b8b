"""Missing-modality robustness: a removed modality reads as prediction reads a missing
one, degradations are fixed per frame or span, and the evaluation mode writes its table."""

import json

import numpy as np
import pytest

from conftest import load_config
from jmt_jax.data import clips
from jmt_jax.evaluation import robustness
from jmt_jax.inference import stream
from jmt_jax.training import train

RATES = {"audio_rate": 8000, "bio_rate": 64}
FPS = 10.0
SPECS = load_config("demo", "tiny").input.modalities.to_dict()
SPECS = {"video": SPECS["video"], "audio": SPECS["audio"], "eda": SPECS["eda"]}


def _stream_store(crops, audio, bio):
  """What the predictor streams: crops (zeros where no face was found), the sound track
  (a video without one: an empty signal), the biosignal file (none: empty)."""
  store = stream.StreamStore(FPS, RATES, {"audio": stream.ArraySignal(audio),
                                          "biosignal": stream.ArraySignal(bio)}, keep=1000)
  for i, crop in enumerate(crops):
    store.add_frame(i, crop)
  store.finish(len(crops))
  return store


@pytest.fixture(scope="module")
def recording():
  rng = np.random.default_rng(0)
  n = 40
  crops = rng.integers(0, 256, (n, 16, 16, 3), np.uint8)
  audio = rng.integers(-8000, 8000, int(n / FPS * RATES["audio_rate"])).astype(np.int16)
  bio = rng.normal(2.0, 0.3, (int(n / FPS * RATES["bio_rate"]), 1)).astype(np.float32)
  return crops, audio, bio


def _read(store, ends=(3, 7, 11, 15, 19, 23, 27, 31)):
  return clips.read_clips(store, 0, np.array(ends), SPECS, clip_frames=4)


@pytest.mark.parametrize("modality", ["video", "audio", "eda"])
def test_removing_a_modality_is_predicting_with_it_missing(recording, modality):
  crops, audio, bio = recording
  full = _stream_store(crops, audio, bio)
  missing = {"video": lambda: _stream_store(np.zeros_like(crops), audio, bio),
             "audio": lambda: _stream_store(crops, audio[:0], bio),
             "eda": lambda: _stream_store(crops, audio, bio[:0])}[modality]()
  removed = robustness.DegradedStore(full, robustness.stored_key(SPECS[modality]), "removed", 1.0)
  got, want = _read(removed), _read(missing)
  assert sorted(got) == sorted(want)
  for k in want:
    np.testing.assert_array_equal(got[k], want[k], err_msg=k)
  assert np.any(_read(full)[modality] != want[modality])  # the fill is not what was there


def test_degradations_are_fixed_per_frame_and_span(recording):
  crops, audio, bio = recording
  full = _stream_store(crops, audio, bio)
  dropped = robustness.DegradedStore(full, "frames", "dropped", 0.5, seed=1)
  a, _ = dropped.read_frames(0, np.arange(0, 20))
  b, _ = dropped.read_frames(0, np.arange(10, 30))
  np.testing.assert_array_equal(a[10:], b[:10])  # one frame, one fate, in any window
  lost = np.all(a == 0, axis=(1, 2, 3))
  assert 0 < lost.sum() < 20
  np.testing.assert_array_equal(a[~lost], crops[:20][~lost])

  silenced = robustness.DegradedStore(full, "audio", "silenced", 0.5, span_seconds=0.5)
  x, y = silenced.read_signal(0, "audio", 0, 20000), silenced.read_signal(0, "audio", 7000, 30000)
  np.testing.assert_array_equal(x[7000:], y[:13000])
  spans = x.reshape(-1, 4000)  # 0.5 s spans at 8 kHz
  quiet = np.all(spans == 0, axis=1)
  assert 0 < quiet.sum() < len(spans)
  np.testing.assert_array_equal(spans[~quiet], audio[:20000].reshape(-1, 4000)[~quiet])

  noisy = robustness.DegradedStore(full, "biosignal", "noise", 0.3)
  p, q = noisy.read_signal(0, "biosignal", 0, 200), noisy.read_signal(0, "biosignal", 50, 256)
  np.testing.assert_array_equal(p[50:], q[:150])
  rms = np.sqrt(np.mean(bio.astype(np.float64) ** 2))
  assert np.std(p - bio[:200]) == pytest.approx(0.3 * rms, rel=0.2)
  edges = noisy.read_signal(0, "biosignal", -10, 266)  # the recording has 256 samples
  assert not edges[:10].any() and not edges[-10:].any()  # padding stays padding
  np.testing.assert_array_equal(edges[10:210], p)
  with pytest.raises(ValueError, match="'dropped' applies to frames"):
    robustness.DegradedStore(full, "audio", "dropped", 0.5)


@pytest.mark.slow
def test_robustness_mode_scores_every_condition(tiny_config, tmp_path):
  config = tiny_config("demo", "tiny")
  config.train.num_steps = 2
  config.eval.robustness.update(dropped=(0.5,), silenced=(0.5,), noise=(0.2,))
  workdir = str(tmp_path)
  clean = train.train_and_evaluate(config, workdir)
  rows = robustness.evaluate(config, workdir, config.eval.split)
  conditions = [(r["condition"], r["modality"]) for r in rows]
  assert conditions == [("clean", ""), ("removed", "video"), ("removed", "audio"),
                        ("dropped", "video"), ("noise", "video"), ("silenced", "audio"),
                        ("noise", "audio")]
  assert rows[0]["ccc_mean"] == pytest.approx(clean["ccc_mean"], abs=1e-6)
  assert all(r["ccc_mean"] != rows[0]["ccc_mean"] for r in rows[1:])
  table = json.loads((tmp_path / "robustness" / "validation_step2.json").read_text())
  assert table["rows"] == rows
  assert (tmp_path / "robustness" / "validation_step2.md").read_text().count("\n") == 9
