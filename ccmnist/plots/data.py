"""Figures of the data: arrays in, matplotlib Figure out."""

import pathlib

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ccmnist import plots  # noqa: E402
from ccmnist.data import palette as palette_lib  # noqa: E402
from ccmnist.plots import grid  # noqa: E402


def digit_color_grid(images, labels, colors, *, title: str = ""):
  """10x10 grid: row = digit, column = color; one example per cell where one exists ('-')."""
  h, w = images.shape[1:3]
  tiles = np.ones((10, 10, h, w, 3), np.float32)
  empty = []
  for d in range(10):
    for c in range(10):
      hit = np.flatnonzero((labels == d) & (colors == c))
      if hit.size:
        tiles[d, c] = np.asarray(images[hit[0]], np.float32) / 255.0
      else:
        empty.append((d, c))
  pad = 3
  fig, ax = plt.subplots(figsize=(8, 8.6))
  ax.imshow(grid.montage(tiles, pad=pad), interpolation="nearest")
  rows, cols = grid.tile_centers(10, h, pad), grid.tile_centers(10, w, pad)
  for d, c in empty:
    ax.text(cols[c], rows[d], "-", ha="center", va="center", color="0.6")
  ax.set_yticks(rows, [str(d) for d in range(10)], fontsize=10)
  ax.set_xticks(cols, [n.replace("_", "\n") for n in palette_lib.COLOR_NAMES], fontsize=7)
  ax.xaxis.tick_top()
  ax.tick_params(length=0)
  for spine in ax.spines.values():
    spine.set_visible(False)
  ax.set_title(title + "  (rows: digit, columns: color)", fontsize=11, pad=24)
  fig.tight_layout()
  return fig


def save_sample_grids(splits: dict, fig_dir) -> None:
  """fig_dir/samples_<split>.png: the digit x color grid of every split."""
  for name, split in splits.items():
    plots.save_figure(digit_color_grid(
        split["images"], split["labels"], split["colors"],
        title=f"{name}: {len(split['labels'])} images, {split['aligned'].mean():.1%} aligned"),
                      pathlib.Path(fig_dir) / f"samples_{name}.png")
