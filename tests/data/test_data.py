"""The built-in dataset, its ArrayRecord segments and the Grain window pipeline."""

import jax
import numpy as np
import pytest

from jmt_jax.data import augment
from jmt_jax.data import clips as clips_lib
from jmt_jax.data import pipeline
from jmt_jax.data import records
from jmt_jax.data import synthetic
from jmt_jax.data import windows
from jmt_jax.models import frontends


@pytest.fixture(scope="module")
def tiny(data_dir):
  from conftest import load_config  # pylint: disable=import-outside-toplevel
  config = load_config("demo", "tiny")
  config.data.data_dir = data_dir
  return config, pipeline.open_dataset(config.data)


def test_rendering_is_deterministic_and_in_range():
  spec = synthetic.RenderSpec(frame_size=16, min_frames=50, max_frames=60)
  a, b = synthetic.render_recording(7, spec), synthetic.render_recording(7, spec)
  np.testing.assert_array_equal(a.frames, b.frames)
  np.testing.assert_array_equal(a.audio, b.audio)
  assert not np.array_equal(a.frames, synthetic.render_recording(8, spec).frames)
  valid = a.valence != synthetic.INVALID_LABEL
  assert np.all(np.abs(a.valence[valid]) < 1) and np.all(np.abs(a.arousal[valid]) < 1)
  assert len(a.audio) == round(len(a.valence) * spec.audio_rate / spec.fps)
  assert np.all(a.frames[~a.face_found] == 0)


def test_every_modality_is_uninformative_part_of_the_time():
  spec = synthetic.RenderSpec(frame_size=16, min_frames=600, max_frames=600)
  rec = synthetic.render_recording(3, spec)
  face_missing = (~rec.face_found).mean()
  spf = spec.audio_rate // int(spec.fps)
  loud = np.abs(rec.audio.astype(np.float64)).reshape(-1, spf).max(axis=1) > 2000
  bio_flat = (rec.biosignal[:, 0] == 0).mean()
  assert 0.0 < face_missing < 0.8
  assert 0.05 < 1 - loud.mean() < 0.95  # silent stretches
  assert 0.0 < bio_flat < 0.8  # sensor drop-outs


def test_eval_windows_predict_every_frame_exactly_once():
  table = records.SplitTable([{"name": "a", "num_frames": 37, "pain": 0},
                              {"name": "b", "num_frames": 5, "pain": 1}], segment_frames=8, fps=10)
  w = windows.eval_windows(table.num_frames, range(len(table)), clip_frames=4, num_clips=3)
  for r, n in enumerate((37, 5)):
    ends = [s + 4 * (i + 1) - 1 for rr, s in w if rr == r for i in range(3)]
    inside = sorted(e for e in ends if 0 <= e < n)
    assert inside == list(range(n))


def test_records_hold_the_rendered_recordings(tiny):
  """Each recording is its frames as JPEG (all-zero frames as empty bytes), then its signal
  segments; they read back as the rendered labels, audio and EDA exactly, and as the
  rendered frames after one JPEG encoding."""
  config, ds = tiny
  table = ds.splits["train"].table
  store = pipeline.store(ds, "train")
  spec = synthetic.RenderSpec(**config.data.render, **config.data.signals)
  assert len(store.source) == sum(records.num_records(n, config.data.segment_frames)
                                  for n in table.num_frames)
  for r in range(2):
    rec = synthetic.render_recording(np.random.SeedSequence([config.data.seed, 0, r]), spec)
    n = len(rec.valence)
    assert table.num_frames[r] == n
    stored = store.fetch(r, np.arange(n))
    assert [bool(x["jpeg"]) for x in stored] == [bool(f.any()) for f in rec.frames]
    frames, labels = store.read_frames(r, np.arange(n))
    want = records.decode_frames([records.encode_frame(f) for f in rec.frames], spec.frame_size)
    np.testing.assert_array_equal(frames, want)
    # JPEG keeps each frame's colours; most of its error is the rendered per-pixel noise.
    assert np.abs(frames.astype(int) - rec.frames).mean() < 10
    np.testing.assert_allclose(frames.mean(axis=(1, 2)), rec.frames.mean(axis=(1, 2)), atol=1.5)
    np.testing.assert_array_equal(labels, np.stack([rec.valence, rec.arousal], -1))
    np.testing.assert_array_equal(np.array([x["labels"][2] for x in stored]) > 0, rec.face_found)
    np.testing.assert_array_equal(store.read_signal(r, "audio", 0, len(rec.audio)), rec.audio)
    np.testing.assert_array_equal(store.read_signal(r, "biosignal", 0, len(rec.biosignal)),
                                  rec.biosignal)
    # Outside the recording, signals read as zeros.
    assert not store.read_signal(r, "audio", -50, 0).any()
    assert not store.read_signal(r, "audio", len(rec.audio), len(rec.audio) + 9).any()


def test_record_parser_equals_tensorflow_datasets_decoding(tiny):
  _, ds = tiny
  store = pipeline.store(ds, "train")
  features = store.source.dataset_info.features
  table = store.table
  first_segment = int(table.first_record[1] + table.num_frames[1])
  for i in (0, 1, int(table.first_record[1]), first_segment, len(store.source) - 1):
    raw = store.source[i]
    want = features.deserialize_example_np(raw)
    got = records.parse_record(raw, store.signals)
    assert set(got) == set(want) == {"jpeg", "labels", "audio", "biosignal"}
    assert got["jpeg"] == want["jpeg"]
    for key in ("labels", "audio", "biosignal"):
      assert got[key].dtype == want[key].dtype
      np.testing.assert_array_equal(got[key], want[key])


def expected_window(signal, rate, fps, window_seconds, end_frame):
  """The `window_seconds` of `signal` ending where `end_frame` ends, zero-padded before 0."""
  n = int(round(window_seconds * rate))
  stop = records.sample_at(end_frame + 1, rate, fps)
  lo = max(0, stop - n)
  out = np.zeros((n,) + signal.shape[1:])
  out[n - (stop - lo):] = signal[lo:stop]
  return out


def test_windows_match_the_rendered_recording(tiny):
  config, ds = tiny
  spec = synthetic.RenderSpec(**config.data.render, **config.data.signals)
  rec = synthetic.render_recording(np.random.SeedSequence([config.data.seed, 0, 1]), spec)
  source = pipeline.window_source(ds, "train", config.input, ("video", "audio", "eda"), train=False)
  t = config.input.num_clips
  rates = ds.rates
  checked = 0
  for i in range(len(source)):
    if source.windows[i][0] != 1:
      continue
    ex = source[i]
    for c, end in enumerate(ex["frame"]):
      if not 0 <= end < len(rec.valence):
        assert ex["valence"][c] == synthetic.INVALID_LABEL
        continue
      assert ex["valence"][c] == rec.valence[end] and ex["arousal"][c] == rec.arousal[end]
      np.testing.assert_array_equal(ex["video"][c][-1], records.decode_frames(
          [records.encode_frame(rec.frames[end])], spec.frame_size)[0])
      # The audio window ends exactly at the end of the clip's last frame.
      a = config.input.modalities.audio
      np.testing.assert_array_equal(ex["audio"][c], expected_window(
          rec.audio, rates["audio_rate"], rates["fps"], a.window_seconds, end))
      # The EDA window (2 s, longer than the whole window of clips) ends there too.
      sig = expected_window(rec.biosignal[:, 0], rates["bio_rate"], rates["fps"],
                            config.input.modalities.eda.window_seconds, end)
      np.testing.assert_allclose(ex["eda"][c, :, 0], sig - sig.mean(), atol=1e-5)
      checked += 1
    assert ex["video"].shape == (t, config.input.modalities.video.frames_per_clip,
                                 spec.frame_size, spec.frame_size, 3)
  assert checked == len(rec.valence)


def test_augmentation_is_drawn_per_clip_and_keeps_missing_faces_zero():
  rng = np.random.default_rng(0)
  clips = rng.integers(30, 200, (6, 2, 8, 8, 3)).astype(np.uint8)
  clips[2, 1] = 0  # a frame without a face
  apply = jax.jit(frontends.augment)
  flip = augment.draw(np.random.default_rng(1), 6, flip_prob=1.0)
  np.testing.assert_array_equal(apply(clips.astype(np.float32), flip), clips[:, :, :, ::-1])
  params = augment.draw(np.random.default_rng(1), 6, brightness=0.4, contrast=0.4)
  out = np.asarray(apply(clips.astype(np.float32), params))
  assert not out[2, 1].any()
  ratio = out.reshape(6, 2, -1).mean(-1) / clips.reshape(6, 2, -1).mean(-1).clip(1)
  assert np.ptp(ratio[:, 0]) > 0.05  # clips get different factors
  np.testing.assert_allclose(ratio[[0, 1, 3, 4, 5], 0], ratio[[0, 1, 3, 4, 5], 1], atol=0.05)
  np.testing.assert_array_equal(params, augment.draw(np.random.default_rng(1), 6,
                                                     brightness=0.4, contrast=0.4))
  # torchvision's adjust_brightness then adjust_contrast, in float64 numpy.
  x = np.clip(clips * params[:, 1, None, None, None, None].astype(np.float64), 0, 255)
  gray = (x @ np.array([0.299, 0.587, 0.114])).mean(axis=(-2, -1))[..., None, None, None]
  c = params[:, 2, None, None, None, None]
  np.testing.assert_allclose(out, np.round(np.clip(c * x + (1 - c) * gray, 0, 255)), atol=1)


def test_train_iterator_resumes_from_saved_state(tiny):
  config, ds = tiny
  input_config = config.input.copy_and_resolve_references()
  input_config.augment = dict(flip_prob=0.5, brightness=0.4, contrast=0.4)
  source = pipeline.window_source(ds, "train", input_config, ("video", "audio"), train=True)
  plain = pipeline.window_source(ds, "train", config.input, ("video", "audio"), train=True)
  first = next(pipeline.train_iterator(plain, 3, seed=1, process_index=0, process_count=1,
                                       read_threads=1))
  it = pipeline.train_iterator(source, 3, seed=1, process_index=0, process_count=1, read_threads=1)
  drawn = next(it)
  assert "augment" not in first and drawn["augment"]["video"].shape == (3, 8, 3)
  np.testing.assert_array_equal(drawn["video"], first["video"])  # applied on the device
  it = pipeline.train_iterator(source, 3, seed=1, process_index=0, process_count=1, read_threads=1)
  for _ in range(2):
    next(it)
  state = it.get_state()
  expected = [next(it) for _ in range(3)]
  it2 = pipeline.train_iterator(source, 3, seed=1, process_index=0, process_count=1, read_threads=1)
  it2.set_state(state)
  for want in expected:
    jax.tree.map(np.testing.assert_array_equal, next(it2), want)


def test_processes_read_disjoint_shares(tiny):
  config, ds = tiny
  source = pipeline.window_source(ds, "validation", config.input, ("video",), train=False)
  shares = [list(pipeline.process_slice(source, i, 2)) for i in range(2)]
  keys = [{(int(e["recording"][0]), int(e["frame"][0])) for e in s} for s in shares]
  assert not keys[0] & keys[1] and len(keys[0]) + len(keys[1]) == len(source)


def test_eval_batches_are_padded_with_invalid_windows(tiny):
  config, ds = tiny
  source = pipeline.window_source(ds, "validation", config.input, ("video",), train=False)
  batches = list(pipeline.eval_batches(pipeline.process_slice(source, 0, 1), 4, 1,
                                       num_batches=len(source) // 4 + 2))
  valid = np.concatenate([b["valid"] for b in batches])
  assert valid.sum() == len(source) and len(valid) == 4 * (len(source) // 4 + 2)
  assert all(b["video"].shape[0] == 4 for b in batches)



def test_clips_wholly_past_the_end_read_as_padding(tiny):
  config, ds = tiny
  source = pipeline.window_source(ds, "train", config.input, ("video", "audio"), train=False)
  n = int(ds.splits["train"].table.num_frames[0])
  far = np.arange(n + 100, n + 104)  # past every frame and every signal window
  read = lambda ends: clips_lib.read_clips(source.store, 0, ends, source.modalities,
                                          source.clip_frames)
  clips = read(far)
  assert not clips["video"].any() and np.all(clips["valence"] == records.INVALID_LABEL)
  assert not clips["audio"].any() and clips["audio"].shape[0] == 4


def test_grain_workers_make_the_same_batches_and_restore_exactly(tiny):
  """Batches made in Grain worker processes are those of the single-process iterator,
  augmentation parameters included, and a state saved with workers restores exactly."""
  config, ds = tiny
  input_config = config.input.copy_and_resolve_references()
  input_config.augment = dict(flip_prob=0.5, brightness=0.4, contrast=0.4)
  source = pipeline.window_source(ds, "train", input_config, ("video", "audio"), train=True)
  make = lambda workers: pipeline.train_iterator(source, 3, seed=2, process_index=0,
                                                 process_count=1, read_threads=1,
                                                 workers=workers)
  plain = make(0)
  want = [next(plain) for _ in range(5)]
  with_workers = make(2)
  for w in want[:2]:
    jax.tree.map(np.testing.assert_array_equal, next(with_workers), w)
  state = with_workers.get_state()
  restored = make(2)
  restored.set_state(state)
  for w in want[2:]:
    jax.tree.map(np.testing.assert_array_equal, next(restored), w)


def test_default_workers_leave_a_cpu_backend_its_cores():
  assert pipeline.default_workers(cores=2, backend="cpu") == 0
  assert pipeline.default_workers(cores=16, backend="gpu") == 15
  assert pipeline.default_workers(cores=1, backend="tpu") == 1
  assert pipeline.default_workers(cores=240, backend="tpu") == 32
