"""Figures of the data: arrays in, matplotlib Figure out."""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ccmnist.data import palette as palette_lib  # noqa: E402


def digit_color_grid(images, labels, colors, *, title: str = ""):
  """10x10 grid: row = digit, column = color; one example per cell where one exists."""
  fig, axes = plt.subplots(10, 10, figsize=(8, 8.6))
  for d in range(10):
    for c in range(10):
      ax = axes[d, c]
      ax.set_xticks([])
      ax.set_yticks([])
      hit = np.flatnonzero((labels == d) & (colors == c))
      if hit.size:
        ax.imshow(images[hit[0]])
      else:
        ax.set_facecolor("white")
        ax.text(0.5, 0.5, "-", ha="center", va="center", transform=ax.transAxes, color="0.6")
      if c == 0:
        ax.set_ylabel(str(d), rotation=0, labelpad=10, fontsize=10)
      if d == 0:
        ax.set_title(palette_lib.COLOR_NAMES[c].replace("_", "\n"), fontsize=7)
  fig.suptitle(title + "  (rows: digit, columns: color)", fontsize=11)
  fig.tight_layout()
  return fig
