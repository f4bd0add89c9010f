"""Writing the splits of a data config into a workdir, with their sample-grid figures."""

import pathlib

from absl import logging
import matplotlib.pyplot as plt

from ccmnist.data import splits as splits_lib
from ccmnist.plots import data as data_plots


def save_figure(fig, path) -> None:
  """Saves a figure atomically and closes it."""
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  tmp = path.with_name(path.stem + ".tmp" + path.suffix)
  fig.savefig(tmp, dpi=110)
  plt.close(fig)
  tmp.replace(path)


def make_data(data_cfg, workdir, *, write_arrays: bool = True) -> dict:
  """Builds (or loads from cache) the splits; writes DIR/data/*.npz and sample grids."""
  workdir = pathlib.Path(workdir)
  splits = splits_lib.get_splits(data_cfg)
  for name, split in splits.items():
    path = workdir / "data" / f"{name}.npz"
    if write_arrays:
      splits_lib.save_split(path, split)
    save_figure(data_plots.digit_color_grid(
        split["images"], split["labels"], split["colors"],
        title=f"{name}: {len(split['labels'])} images, {split['aligned'].mean():.1%} aligned"),
                workdir / "figures" / f"samples_{name}.png")
    logging.info("%s: %d images, aligned %.4f%s", name, len(split["labels"]),
                 split["aligned"].mean(), f" -> {path}" if write_arrays else "")
  return splits
