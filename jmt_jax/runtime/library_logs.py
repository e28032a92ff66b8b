"""Quieter command lines: Orbax and Grain log every checkpoint phase at INFO."""

import logging

from absl import logging as absl_logging


class _DropLibraryInfo(logging.Filter):

  def filter(self, record):
    noisy = any(f"/{lib}/" in record.pathname for lib in ("orbax", "grain", "tensorflow_datasets"))
    return record.levelno >= logging.WARNING or not noisy


def quiet():
  """Keeps only the warnings of Orbax and Grain in the absl log."""
  absl_logging.get_absl_handler().addFilter(_DropLibraryInfo())
