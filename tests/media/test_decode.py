"""Recordings as phones and other tools write them: the display rotation applied, frames
placed by their own timestamps (variable frame rate), a late audio stream, cover art,
and truncation reported the same way whatever the container."""

import numpy as np
import pytest

import raw_trees
from jmt_jax.errors import BadInput
from jmt_jax.media import decode


def _pattern(h, w, k=0):
  """An image whose orientation shows: bright top-left corner, a bar along the top."""
  img = np.full((h, w, 3), 40 + k, np.uint8)
  img[: h // 4] = 120
  img[: h // 3, : w // 3] = 230
  return img


@pytest.mark.parametrize("rotation", [-90, 90, 180])
def test_the_display_rotation_turns_frames_upright(tmp_path, rotation):
  upright = np.stack([_pattern(48, 32, k) for k in range(4)])  # portrait, as the person saw it
  turns = int(round(rotation / 90))
  stored = np.stack([np.rot90(f, -turns) for f in upright])  # what the sensor wrote
  path = str(tmp_path / "phone.mp4")
  raw_trees.write_video(path, stored, 10, rotation=rotation, lossless=True)
  with decode.Video(path) as video:
    frames = np.stack(list(video.frames()))
  assert frames.shape == upright.shape
  np.testing.assert_allclose(frames, upright, atol=3)  # RGB <-> YUV rounding only


def test_a_variable_frame_rate_video_keeps_its_true_times(tmp_path):
  """Frame k is the picture shown at k / fps: a frame held for two slots repeats, two
  frames in one slot keep the later, and the audio's sample 0 is the first frame's."""
  times = [0.0, 0.1, 0.3, 0.4, 0.44, 0.6, 0.7, 0.8, 0.9, 1.0]
  frames = np.stack([np.full((16, 16, 3), 20 * i, np.uint8) for i in range(len(times))])
  rate = 16000
  audio = np.zeros(int(1.1 * rate), np.float32)
  audio[int(0.3 * rate):] = raw_trees.tone(len(audio) - int(0.3 * rate), rate)  # starts with frame 2
  path = str(tmp_path / "vfr.mp4")
  raw_trees.write_video(path, frames, 10, audio=audio, audio_rate=rate, times=times,
                        lossless=True)
  with decode.Video(path) as video:
    fps = video.fps
    shown = [int(round(f[0, 0, 0] / 20)) for f in video.frames()]
  with decode.Video(path) as video:
    sound = video.audio(rate).astype(np.float32)
  assert fps == pytest.approx(len(times) / 1.1)  # the average rate
  slot = np.round(np.array(times) * fps).astype(int)
  expected = [int(np.flatnonzero(slot <= k)[-1]) for k in range(slot[-1] + 1)]
  assert shown == expected
  assert shown.count(1) == 2 and 3 not in shown  # frame 1 held for two slots, 3 gives way to 4
  onset = np.argmax(np.abs(sound) > 1000) / rate  # where the tone starts, in true time
  assert onset == pytest.approx(shown.index(2) / fps, abs=0.03)


def test_a_late_audio_stream_is_preceded_by_its_lead_in(tmp_path):
  rate = 16000
  path = str(tmp_path / "late.mp4")
  raw_trees.write_video(path, np.stack([_pattern(16, 16)] * 20), 10,
                        audio=raw_trees.tone(rate, rate), audio_rate=rate, audio_start=0.8)
  with decode.Video(path) as video:
    sound = video.audio(rate)
    # AAC's encoder puts 1024 priming samples before the first one (near silence).
    assert video.audio_lead == pytest.approx(0.8 * rate - 1024, abs=0.01 * rate)
  assert np.abs(sound[:int(0.7 * rate)]).max() == 0
  assert np.abs(sound[int(0.85 * rate):]).max() > 1000


def test_an_audio_file_with_cover_art_has_no_video(tmp_path):
  path = str(tmp_path / "song.mp3")
  raw_trees.write_cover_art_audio(path, raw_trees.tone(16000, 16000))
  with pytest.raises(BadInput, match="song.mp3: no video stream \\(its only picture is cover art\\)"):
    decode.Video(path)


@pytest.mark.parametrize("name, codecs", [("cut.mkv", dict(vcodec="ffv1")),
                                          ("cut.mp4", dict(faststart=True))])
def test_a_truncated_file_is_reported_in_every_container(tmp_path, name, codecs):
  frames = np.stack([_pattern(64, 64, k % 100) for k in range(60)])
  path = str(tmp_path / name)
  raw_trees.write_video(path, frames, 10, **codecs)
  with open(path, "r+b") as f:
    f.truncate(int(f.seek(0, 2) * 0.5))
  with pytest.raises(BadInput, match=rf"{name}: \d+ frames decoded of the 60 its header "
                                     r"promises.*: truncated or corrupt file\?"):
    with decode.Video(path) as video:
      for _ in video.frames():
        pass


def test_audio_longer_than_the_video_is_no_truncation(tmp_path):
  """Matroska gives no frame count and a container duration that is the audio's; the
  video stream's own duration tag is what promises frames."""
  path = str(tmp_path / "long_audio.mkv")
  raw_trees.write_video(path, np.stack([_pattern(16, 16)] * 30), 10, vcodec="ffv1",
                        audio=raw_trees.tone(int(3.8 * 16000), 16000))
  with decode.Video(path) as video:
    assert video.promised_frames == 30 and len(list(video.frames())) == 30
