"""Writing the splits of a data config into a workdir as .npz files."""

import pathlib

from absl import logging

from ccmnist.data import splits as splits_lib


def write_splits(splits: dict, workdir) -> None:
  """DIR/data/<split>.npz for every split."""
  for name, split in splits.items():
    path = pathlib.Path(workdir) / "data" / f"{name}.npz"
    splits_lib.save_split(path, split)
    logging.info("%s: %d images, aligned %.4f -> %s", name, len(split["labels"]),
                 split["aligned"].mean(), path)
