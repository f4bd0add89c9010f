"""Figure functions: arrays in, matplotlib Figure out; save_figure writes one atomically."""

import io as std_io
import pathlib

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from ccmnist.util import io  # noqa: E402


def save_figure(fig, path, *, dpi: int = 110) -> pathlib.Path:
  """Saves a figure as PNG atomically and closes it."""
  path = io.write_bytes(path, _png_bytes(fig, dpi))
  plt.close(fig)
  return path


def _png_bytes(fig, dpi: int) -> bytes:
  buf = std_io.BytesIO()
  fig.savefig(buf, format="png", dpi=dpi)
  return buf.getvalue()
