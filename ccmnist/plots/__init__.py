"""Figure functions: arrays in, matplotlib Figure out; save_figure writes one atomically."""

import io as std_io
import pathlib

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

import matplotlib.colors as mcolors  # noqa: E402

from ccmnist.util import io  # noqa: E402

# One color per model in every figure. A model at another grid point ('counterfactual@0', its
# lambda = 0 control) is drawn in a lighter shade of its run's color.
MODEL_COLORS = {
    "cheater": "tab:red", "gradient_penalty": "tab:orange", "counterfactual": "tab:green",
    "color_gradient_penalty": "tab:purple", "erm_adam": "tab:blue", "erm_momentum": "tab:brown",
    "grayscale": "tab:olive",
}
_OTHER_COLORS = ("tab:pink", "tab:olive", "tab:cyan", "tab:gray")


def model_color(name: str):
  """The color of a model (a run name, or 'run@lambda') in every figure, as an RGB tuple."""
  base, sep, _ = name.partition("@")
  color = MODEL_COLORS.get(base)
  if color is None:  # Unknown names: a stable pick from the rest of the palette.
    color = _OTHER_COLORS[sum(map(ord, base)) % len(_OTHER_COLORS)]
  rgb = mcolors.to_rgb(color)
  return tuple(0.45 * c + 0.55 for c in rgb) if sep else rgb


def save_figure(fig, path, *, dpi: int = 110) -> pathlib.Path:
  """Saves a figure as PNG atomically and closes it."""
  path = io.write_bytes(path, _png_bytes(fig, dpi))
  plt.close(fig)
  return path


def _png_bytes(fig, dpi: int) -> bytes:
  buf = std_io.BytesIO()
  fig.savefig(buf, format="png", dpi=dpi)
  return buf.getvalue()
