"""The package's shape: its folders and top-level modules stand in layers, each importing
only from the layers below it (and from itself); every module imports beside every other
(command lines define their flags only when run); prediction does not pull in dataset
preparation."""

import ast
import os
import subprocess
import sys

from conftest import ROOT

# The layers, lowest first: a folder or top-level module of jmt_jax/ imports only from its
# own folder and from folders and modules of the layers before its own.
LAYERS = (
    ("errors", "config_args", "config_common", "reports"),  # no jmt_jax imports
    ("runtime",),  # command lines, cluster, SIGTERM, mesh and placement
    ("media", "faces"),  # decoding; face detection, tracking and crops
    ("data",),  # records, clips, windows, Grain pipelines, datasets
    ("models",),  # the networks, built from a config; their variables
    ("tasks",),  # labels, losses, metrics and scoring protocols
    ("weights",),  # PyTorch weights converted; the variables a run starts from
    ("workdir",),  # a training workdir's files and checkpoints
    ("features",),  # the frozen-backbone feature cache
    ("experiment",),  # an experiment's input, prediction, and a trained workdir scored
    ("evaluation",),  # scoring splits, submissions, comparisons, robustness
    ("training",),  # the train step and loop, sweeps, cross-validation
    ("inference", "prepare"),  # a person's recording; raw datasets to shards
    ("main", "benchmarks"),
)
_PACKAGE = os.path.join(ROOT, "jmt_jax")


def _unit(module):
  """The folder or top-level module of jmt_jax that `module` (dotted) belongs to."""
  return module.split(".")[1]


def _imports(path, module):
  """The jmt_jax modules that the file at `path` (module `module`) imports."""
  with open(path, encoding="utf-8") as f:
    tree = ast.parse(f.read(), path)
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      yield from (a.name for a in node.names if a.name.startswith("jmt_jax."))
    elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
      if node.module == "jmt_jax":
        yield from (f"jmt_jax.{a.name}" for a in node.names)
      elif node.module.startswith("jmt_jax."):
        yield node.module
    elif isinstance(node, ast.ImportFrom) and node.level:
      raise AssertionError(f"{module}: relative import")


def _modules():
  for folder, _, files in os.walk(_PACKAGE):
    for name in files:
      if name.endswith(".py"):
        path = os.path.join(folder, name)
        rel = os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".")
        yield path, rel.removesuffix(".__init__")


def test_no_import_runs_from_a_lower_layer_to_a_higher_one():
  rank = {unit: i for i, layer in enumerate(LAYERS) for unit in layer}
  unplaced, upward = set(), []
  for path, module in _modules():
    if module == "jmt_jax":
      continue
    unit = _unit(module)
    if unit not in rank:
      unplaced.add(unit)
      continue
    for imported in _imports(path, module):
      other = _unit(imported)
      if other != unit and not rank.get(other, len(LAYERS)) < rank[unit]:
        upward.append(f"{module} imports {imported}")
  assert not unplaced, f"not in LAYERS (place them): {sorted(unplaced)}"
  assert not upward, "imports that do not run down the layers:\n" + "\n".join(upward)


def _python(code):
  return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False,
                        cwd=ROOT)


def test_every_module_imports_in_one_process():
  run = _python("import importlib, pkgutil, jmt_jax\n"
                "for m in pkgutil.walk_packages(jmt_jax.__path__, 'jmt_jax.'):\n"
                "  importlib.import_module(m.name)\n")
  assert run.returncode == 0, run.stderr[-2000:]


def test_prediction_does_not_import_dataset_preparation():
  run = _python("import sys\n"
                "import jmt_jax.inference.predict, jmt_jax.inference.export\n"
                "print(sorted(m for m in sys.modules if m.startswith('jmt_jax.prepare')))")
  assert run.returncode == 0, run.stderr[-2000:]
  assert run.stdout.strip() == "[]"
