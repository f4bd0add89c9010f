"""What every entrypoint shares: readable logging."""

import logging as py_logging

from absl import logging


class _DropChatter(py_logging.Filter):
  """Hides orbax's per-save INFO lines so progress lines stay readable."""

  def filter(self, record):
    return record.levelno >= py_logging.WARNING or "orbax" not in record.pathname


def setup_logging():
  logging.set_verbosity(logging.INFO)
  logging.get_absl_handler().addFilter(_DropChatter())
