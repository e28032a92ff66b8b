"""Converted PyTorch weights start a training run: convert, train one step with frozen
backbones, save, restore, same outputs; and the convert / param_counts commands."""


import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

torch = pytest.importorskip(
    "torch", reason="weight-import tests build PyTorch state dicts (pip install torch==2.13.0)")

import torch_reference as ref  # pylint: disable=wrong-import-position
from conftest import module_command  # pylint: disable=wrong-import-position
from conftest import run  # pylint: disable=wrong-import-position
from jmt_jax import workdir as workdir_lib  # pylint: disable=wrong-import-position
from jmt_jax.evaluation import scoring  # pylint: disable=wrong-import-position
from jmt_jax.training import train  # pylint: disable=wrong-import-position
from jmt_jax.weights import torch_import  # pylint: disable=wrong-import-position

TINY = dict(widths=(8, 8, 16, 16), blocks=(1, 1, 1, 1))


def _tiny_affwild2_state_dicts(tmp_path):
  """Files in the public layouts for `configs/affwild2.py:jmt,tiny`."""
  torch.manual_seed(0)
  video = ref.ResNet("r2plus1d", stem_mid=8, reduction="max", **TINY)
  audio = ref.ResNet("resnet2d", in_channels=1, **TINY)
  fusion = ref.AffWild2Fusion(ref.JMT(16, 1, 1, "tokens", hidden=16), 16, hidden=8)
  paths = {"video": tmp_path / "vision_r2d1.pth", "audio": tmp_path / "audio_resnet18.pth",
           "fusion": tmp_path / "fusion_w.pt"}
  for name, module in (("video", video), ("audio", audio), ("fusion", fusion)):
    torch.save(module.state_dict(), paths[name])
  return [(("video_backbone",), str(paths["video"])), (("audio_backbone",), str(paths["audio"])),
          (("fusion", "head"), str(paths["fusion"]))]


@pytest.mark.slow
def test_convert_train_save_restore(tiny_config, tmp_path):
  config = tiny_config("affwild2", "jmt,tiny,init_from=" + str(tmp_path / "converted"))
  assert config.model.freeze_backbones  # the paper's Aff-Wild2 setting with pretrained weights
  variables, manifest = torch_import.convert(config, _tiny_affwild2_state_dicts(tmp_path))
  torch_import.save(variables, manifest, config.init_from)

  workdir = str(tmp_path / "run")
  scores = train.train_and_evaluate(config, workdir)
  mngr = workdir_lib.checkpoints(workdir, keep=None)
  assert mngr.all_steps() == [1]
  state = mngr.restore(1, args=ocp.args.Composite(state=ocp.args.StandardRestore()))["state"]

  same = lambda a, b: all(jax.tree.leaves(jax.tree.map(np.array_equal, a, b)))
  for group in ("video_backbone", "audio_backbone"):  # frozen: bit-identical after a step
    assert same(state["params"][group], variables["params"][group])
    assert same(state["batch_stats"][group], variables["batch_stats"][group])
  for group in ("fusion", "head"):  # trained from the converted weights
    assert jax.tree.structure(state["params"][group]) == jax.tree.structure(
        variables["params"][group])
    assert not same(state["params"][group], variables["params"][group])
  # The restored checkpoint scores exactly what the run reported.
  assert scoring.evaluate_workdir(config, workdir, config.eval.split) == pytest.approx(scores)


def test_converted_weights_for_another_config_are_refused(tiny_config, tmp_path):
  config = tiny_config("affwild2", "jmt,tiny")
  variables, manifest = torch_import.convert(config, _tiny_affwild2_state_dicts(tmp_path)[:1])
  torch_import.save(variables, manifest, str(tmp_path / "converted"))
  other = tiny_config("affwild2", "jmt,tiny,init_from=" + str(tmp_path / "converted"))
  other.model.backbones.video.widths = (8, 16, 16, 16)
  with pytest.raises(ValueError, match="'video_backbone' does not fit this model"):
    train.train_and_evaluate(other, str(tmp_path / "run"))


def test_one_file_for_several_groups_nested_apart(tiny_config, tmp_path):
  """Both backbones saved in one model, each under its own wrapper's prefix, give the
  same weights as two files (`--weights=video_backbone+audio_backbone=all.pt`)."""
  config = tiny_config("affwild2", "jmt,tiny")
  sources = _tiny_affwild2_state_dicts(tmp_path)
  (video_groups, video), (audio_groups, audio), fusion = sources
  both = {f"vis_phy.vision_r2d1.{k}": v for k, v in torch.load(video).items()}
  both.update({f"vis_phy.audio_model.{k}": v for k, v in torch.load(audio).items()})
  torch.save(both, tmp_path / "all_backbones.pt")
  apart, _ = torch_import.convert(config, sources)
  together, manifest = torch_import.convert(
      config, [(video_groups + audio_groups, str(tmp_path / "all_backbones.pt")), fusion])
  assert jax.tree.all(jax.tree.map(np.array_equal, apart, together))
  assert manifest["sources"][0]["prefix"] == ["vis_phy.audio_model.", "vis_phy.vision_r2d1."]


def test_a_file_of_another_backbone_names_the_config_that_fits(tiny_config, tmp_path):
  torch.save(ref.I3DTCN(tcn_widths=(16,) * 4).state_dict(), tmp_path / "i3d_tcn.pth")
  with pytest.raises(torch_import.ConversionError,
                     match=r"holds an i3d_tcn backbone, not the configured r2plus1d: convert "
                           r"it with --config=configs/affwild2.py:video_backbone=i3d"):
    torch_import.convert(tiny_config("affwild2", "jmt,tiny"),
                          [(("video_backbone",), str(tmp_path / "i3d_tcn.pth"))])


def test_non_finite_weights_are_refused_at_conversion(tiny_config, tmp_path):
  [(groups, path)] = _tiny_affwild2_state_dicts(tmp_path)[:1]
  state = torch.load(path)
  state["stem.3.weight"][0, 0] = float("inf")
  torch.save(state, path)
  with pytest.raises(torch_import.ConversionError,
                     match=r"vision_r2d1.pth: .*1 keys hold NaN or inf \(weights of a diverged "
                           r"run\?\): stem.3.weight"):
    torch_import.convert(tiny_config("affwild2", "jmt,tiny"), [(groups, path)])


def _run(module, *args):
  return run(module_command(module, *args), timeout=300)


@pytest.mark.slow
def test_convert_command(tmp_path):
  sources = _tiny_affwild2_state_dicts(tmp_path)
  weights = [f"--weights={'+'.join(g)}={p}" for g, p in sources]
  out = tmp_path / "converted"
  proc = _run("jmt_jax.weights.convert", "--config=configs/affwild2.py:jmt,tiny", f"--out={out}", *weights)
  assert proc.returncode == 0, proc.stderr
  assert "fusion+head: " in proc.stdout and "mm_transformer.final_encoder" in proc.stdout
  variables, groups = torch_import.load(str(out))
  assert groups == ["audio_backbone", "fusion", "head", "video_backbone"]
  assert set(variables["batch_stats"]) == {"audio_backbone", "video_backbone"}

  # The fusion file given for a backbone: one line naming the file and the keys.
  proc = _run("jmt_jax.weights.convert", "--config=configs/affwild2.py:jmt,tiny", f"--out={out}2",
              f"--weights=video_backbone={sources[2][1]}")
  assert proc.returncode == 1
  last = proc.stderr.strip().splitlines()[-1]
  assert last.startswith(f"error: {sources[2][1]}: ")
  assert "missing keys: layer1.0.conv1.0.0.weight" in last
  assert "it holds the model's fusion+head (--weights=fusion+head=FILE)" in last

  # Files read as one state dict (FILE,FILE): a key held by two of them is refused.
  video = sources[0][1]
  proc = _run("jmt_jax.weights.convert", "--config=configs/affwild2.py:jmt,tiny", f"--out={out}3",
              f"--weights=video_backbone={video},{video}")
  assert proc.returncode == 1
  assert f"error: {video} and {video} both hold " in proc.stderr.strip().splitlines()[-1]

  # The authors' fusion file for the head alone, then for the fusion alone: the other
  # group's keys are left for it, not refused or called unused.
  for group, other in (("head", "fusion"), ("fusion", "head")):
    proc = _run("jmt_jax.weights.convert", "--config=configs/affwild2.py:jmt,tiny",
                f"--out={out}_{group}", f"--weights={group}={sources[2][1]}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"left for {other} (not converted from this file)" in proc.stdout
    assert "regressor" not in proc.stdout, proc.stdout  # the head's keys are not "unused"
    alone, _ = torch_import.load(f"{out}_{group}")
    assert jax.tree.all(jax.tree.map(np.array_equal, alone["params"][group],
                                     variables["params"][group]))


def test_param_counts_command():
  proc = _run("jmt_jax.weights.param_counts", "--config=configs/affwild2.py:jmt", "--depth=1")
  assert proc.returncode == 0, proc.stderr
  rows = dict(line.rsplit(None, 1) for line in proc.stdout.strip().splitlines())
  assert rows["video_backbone"] == "31,300,125"
  assert int(rows["total"].replace(",", "")) == sum(
      int(v.replace(",", "")) for k, v in rows.items() if k != "total")
