"""What a model is trained for, each task in one class: its label keys and their check,
its loss (as sums over a batch, see training.train_step), how a predicted split is
scored and plotted, the per-recording statistics comparisons resample, its metrics, the
windows and per-frame outputs of prediction on a recording, and its submission format
if it has one. `get(config.task)` is the one switch (the model's head is chosen by the
same name); another task (say ABAW's expression classification) is another class here
and a config that names it.
"""

from jmt_jax.tasks.pain import Pain
from jmt_jax.tasks.valence_arousal import ValenceArousal

TASKS = {t.name: t for t in (ValenceArousal(), Pain())}


def get(name):
  """The task named by a config's `task`."""
  if name not in TASKS:
    raise ValueError(f"unknown task {name!r}; use one of {sorted(TASKS)}")
  return TASKS[name]
