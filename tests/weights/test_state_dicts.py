"""Reading weight files: .safetensors without PyTorch, clear errors for bad files."""

import sys

import numpy as np
import pytest
from safetensors.numpy import save_file

from jmt_jax.weights import state_dicts


@pytest.fixture
def no_torch(monkeypatch):
  monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` now raises ImportError


def test_safetensors_load_without_torch(no_torch, tmp_path):
  del no_torch
  path = str(tmp_path / "w.safetensors")
  save_file({"module.conv1.weight": np.arange(6, dtype=np.float32).reshape(2, 3)}, path)
  tensors = state_dicts.load(path)
  assert list(tensors) == ["conv1.weight"]  # DataParallel's prefix dropped
  np.testing.assert_array_equal(tensors["conv1.weight"], np.arange(6).reshape(2, 3))


def test_pth_without_torch_says_what_to_do(no_torch, tmp_path):
  del no_torch
  path = tmp_path / "w.pth"
  path.write_bytes(b"\x80\x02}q\x00.")
  with pytest.raises(state_dicts.StateDictError, match="needs PyTorch .*pip install torch"):
    state_dicts.load(str(path))


@pytest.mark.parametrize("name,content,message", [
    ("cut.safetensors", b"\x10\x00\x00\x00\x00\x00\x00\x00{\"a\":", "not a readable safetensors"),
    ("w.npz", b"", "unknown weights format '.npz'"),
])
def test_bad_files_are_named(tmp_path, name, content, message):
  path = tmp_path / name
  path.write_bytes(content)
  with pytest.raises(state_dicts.StateDictError) as e:
    state_dicts.load(str(path))
  assert str(e.value).startswith(f"{path}: ") and message in str(e.value)


def test_missing_file(tmp_path):
  with pytest.raises(state_dicts.StateDictError, match="no such file"):
    state_dicts.load(str(tmp_path / "absent.safetensors"))


def test_truncated_pth_is_named(tmp_path):
  torch = pytest.importorskip("torch", reason="reading .pth needs torch")
  path = tmp_path / "w.pth"
  torch.save({"a": torch.zeros(1000)}, path)
  path.write_bytes(path.read_bytes()[:300])
  with pytest.raises(state_dicts.StateDictError, match=f"^{path}: not a readable PyTorch"):
    state_dicts.load(str(path))
