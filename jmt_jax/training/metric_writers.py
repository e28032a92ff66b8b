"""Scalar metrics to TensorBoard event files (tensorboardX, no TensorFlow) and to the
workdir's JSON-lines file (`workdir.read_metrics`), which scripts and notebooks read
without TensorBoard."""

import json
import os

import jax
import tensorboardX

from jmt_jax import workdir as workdir_lib


class MetricWriter:
  """Writes from process 0 only; other processes get a no-op writer."""

  def __init__(self, workdir):
    self.active = jax.process_index() == 0
    if self.active:
      self.tb = tensorboardX.SummaryWriter(os.path.join(workdir, "tensorboard"))
      self.jsonl = open(os.path.join(workdir, workdir_lib.METRICS), "a", encoding="utf-8")

  def write(self, step, scalars):
    if not self.active:
      return
    scalars = {k: float(v) for k, v in scalars.items()}
    for k, v in scalars.items():
      self.tb.add_scalar(k, v, step)
    self.jsonl.write(json.dumps({"step": int(step), **scalars}) + "\n")
    self.jsonl.flush()
    self.tb.flush()

  def close(self):
    if self.active:
      self.tb.close()
      self.jsonl.close()
