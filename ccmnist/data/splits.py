"""Color assignment and the study's splits.

A split is a dict of numpy arrays: `images` uint8[N,28,28,3], `labels` int32[N], `colors`
int32[N] (palette ids) and `aligned` bool[N] (color == label); the train split also carries
`cf_images` / `cf_colors`, the counterfactual partner of every image (same grey digit, another
color, fresh background and noise), and `grey` uint8[N,28,28], its grey digits (for recoloring
during training: coloring.recolor_fn).

Held out from the training digits, in this order, when sized > 0: `val` (colored like train),
`val_unbiased` (rho 0.1: uniformly random colors) and `val_balanced` (rho 0.5: half aligned, so
a group-balanced subsample keeps most of it; groups.balanced_subset).
"""

import hashlib
import io as io_lib
import json
import os
import pathlib
import re
import shutil
import socket
import zipfile

from absl import logging
import numpy as np

from ccmnist.data import coloring
from ccmnist.data import mnist
from ccmnist.data import palette as palette_lib
from ccmnist.util import io

# Bump when the way splits are generated changes, so stale caches are not reused.
SPLITS_VERSION = 7
# Data-config fields that change the arrays (and so the cache key).
KEY_FIELDS = ("coloring", "rho_train", "rho_test_easy", "rho_test_hard", "noise_sigma",
              "bg_low", "bg_high", "seed", "train_size", "test_size", "val_size",
              "val_unbiased_size", "palette", "source", "color_std", "grayscale",
              "val_balanced_size")
# Fields newer than some saved configs, and the value a config without them means.
FIELD_DEFAULTS = {"color_std": coloring.COLOR_STD, "grayscale": False, "val_balanced_size": 0}
# Every split a data config can hold, in report order (the val splits when sized > 0).
SPLIT_NAMES = ("train", "test_easy", "test_hard", "val", "val_unbiased", "val_balanced")
# The held-out splits' colors: rho_train for val; fixed rhos for the others.
HELDOUT_RHO = {"val_unbiased": 0.1, "val_balanced": 0.5}


def check_rho(rho: float) -> float:
  if not 0.0 <= rho <= 1.0:
    raise ValueError(f"rho (the color-label correlation) must lie in [0, 1]; got {rho}.")
  return float(rho)


def different_colors(colors, rng: np.random.Generator) -> np.ndarray:
  """For each color id, a uniformly random *different* color id."""
  colors = np.asarray(colors)
  return ((colors + rng.integers(1, palette_lib.NUM_COLORS, size=colors.shape)) %
          palette_lib.NUM_COLORS).astype(np.int32)


def assign_colors(labels, rho: float, rng: np.random.Generator) -> np.ndarray:
  """With probability rho the label's own color, else a uniformly random different color.

  rho = 0.1 gives uniformly random colors (an unbiased set); rho = 0 never aligns (the study's
  hard set); rho = 1 always aligns.
  """
  rho = check_rho(rho)
  labels = np.asarray(labels).astype(np.int32)
  keep = rng.random(labels.shape) < rho
  return np.where(keep, labels, different_colors(labels, rng)).astype(np.int32)


def field(cfg, name: str):
  """cfg[name], or FIELD_DEFAULTS[name] for a config saved before the field existed."""
  return cfg.get(name, FIELD_DEFAULTS[name]) if name in FIELD_DEFAULTS else cfg[name]


def make_split(grey, labels, rho, rng, *, cfg, palette, with_counterfactuals=False):
  """Colors grey digits with correlation rho; returns the split dict (with counterfactuals, also
  the grey digits: the train split's `grey`)."""
  colors = assign_colors(labels, rho, rng)
  kw = coloring_kwargs(cfg, palette=palette)
  split = dict(images=coloring.colorize(grey, colors, rng, **kw), labels=labels.astype(np.int32),
               colors=colors, aligned=colors == labels)
  if with_counterfactuals:
    split["cf_colors"] = different_colors(colors, rng)
    split["cf_images"] = coloring.colorize(grey, split["cf_colors"], rng, **kw)
    split["grey"] = np.asarray(grey, np.uint8)
  return split


def check_data_config(cfg) -> None:
  """Raises a clear error for out-of-range data settings."""
  for name in ("rho_train", "rho_test_easy", "rho_test_hard"):
    try:
      check_rho(cfg[name])
    except ValueError as e:
      raise ValueError(f"config.data.{name}: {e}") from None
  if cfg.coloring not in coloring.MODES:
    raise ValueError(f"config.data.coloring={cfg.coloring!r} is unknown; use one of "
                     f"{coloring.MODES}.")
  if cfg.source not in ("mnist", "synthetic"):
    raise ValueError(f"config.data.source={cfg.source!r}; use 'mnist' or 'synthetic'.")
  n_vb = field(cfg, "val_balanced_size")
  n_heldout = cfg.val_size + cfg.val_unbiased_size + n_vb
  if min(cfg.train_size, cfg.test_size, cfg.val_size, cfg.val_unbiased_size, n_vb) < 0:
    raise ValueError("config.data sizes must be >= 0.")
  if cfg.train_size + n_heldout > mnist.NUM_EXAMPLES["train"]:
    raise ValueError(f"train_size + val_size + val_unbiased_size + val_balanced_size = "
                     f"{cfg.train_size + n_heldout} exceeds the {mnist.NUM_EXAMPLES['train']} "
                     f"MNIST training digits.")
  color_std = field(cfg, "color_std")
  if not (isinstance(color_std, (int, float)) and 0 <= color_std <= 1):
    raise ValueError(f"config.data.color_std={color_std!r}: the 'lff' color jitter's std, in "
                     f"[0, 1] color units (LfF severities: 0.05, 0.02, 0.01, 0.005, 0.002).")
  if not isinstance(field(cfg, "grayscale"), bool):
    raise ValueError(f"config.data.grayscale={field(cfg, 'grayscale')!r}; use True or False.")
  if cfg.test_size > mnist.NUM_EXAMPLES["test"] or cfg.test_size < 1 or cfg.train_size < 1:
    raise ValueError("config.data.test_size must be in [1, 10000] and train_size >= 1.")
  if cfg.coloring == "lff":
    palette_lib.palette_levels(palette_of(cfg))
  else:
    palette_lib.check_palette(palette_of(cfg))


def palette_of(cfg) -> np.ndarray:
  """The config's palette; None: the coloring mode's own (coloring.config_palette)."""
  return coloring.config_palette(cfg)


def coloring_kwargs(cfg, *, palette=None) -> dict:
  """The keyword arguments of coloring.colorize that a data config sets
  (coloring.config_kwargs)."""
  return coloring.config_kwargs(cfg, palette=palette)


def synthetic_digits(n: int, rng: np.random.Generator):
  """Tiny stand-in digits (one bar pattern per class) for tests without MNIST."""
  labels = np.arange(n, dtype=np.int32) % 10
  rng.shuffle(labels)
  grey = np.zeros((n, 28, 28), np.uint8)
  for d in range(10):
    r, c = divmod(d, 4)
    grey[labels == d, 4 + 6 * r: 8 + 6 * r, 2 + 6 * c: 8 + 6 * c] = 255
  grey = np.maximum(grey, rng.integers(0, 30, grey.shape, dtype=np.uint8) * (grey > 0))
  return grey, labels


def load_grey(cfg, split: str):
  if cfg.source == "synthetic":
    n = mnist.NUM_EXAMPLES[split] // 100  # 600 / 100 digits: enough for a smoke test.
    return synthetic_digits(n, np.random.default_rng([cfg.seed, 7, split == "train"]))
  return mnist.load(split, data_dir=cfg.data_dir or None)


def build_splits(cfg) -> dict:
  """Builds every split of a data config (checked by the caller). Same config ->
  bit-identical arrays."""
  pal = palette_of(cfg)
  train_grey, train_labels = load_grey(cfg, "train")
  test_grey, test_labels = load_grey(cfg, "test")
  # One Generator per split, each seeded from (seed, split index): splits are independent,
  # so changing one split's size does not change the others' colors. A new split's name goes
  # at the end, so that no other split's index moves.
  rngs = {name: np.random.default_rng([cfg.seed, i]) for i, name in enumerate(
      ("order", "train", "test_easy", "test_hard", "val", "val_unbiased", "test_order",
       "val_balanced"))}
  order = rngs["order"].permutation(len(train_labels))
  n_tr = min(cfg.train_size, len(order))
  sizes = {"val": cfg.val_size, "val_unbiased": cfg.val_unbiased_size,
           "val_balanced": field(cfg, "val_balanced_size")}
  tr, heldout, start = order[:n_tr], {}, n_tr
  for name, n in sizes.items():
    heldout[name], start = order[start:start + n], start + n
  test_idx = np.sort(rngs["test_order"].permutation(len(test_labels))[:cfg.test_size])
  tg, tl = test_grey[test_idx], test_labels[test_idx]
  make = lambda g, y, rho, name, **kw: make_split(g, y, rho, rngs[name], cfg=cfg, palette=pal,
                                                  **kw)
  splits = {
      "train": make(train_grey[tr], train_labels[tr], cfg.rho_train, "train",
                    with_counterfactuals=True),
      "test_easy": make(tg, tl, cfg.rho_test_easy, "test_easy"),
      "test_hard": make(tg, tl, cfg.rho_test_hard, "test_hard"),
  }
  for name, idx in heldout.items():
    if sizes[name]:
      splits[name] = make(train_grey[idx], train_labels[idx],
                          HELDOUT_RHO.get(name, cfg.rho_train), name)
  return splits


def cache_key(cfg) -> str:
  fields = {k: field(cfg, k) for k in KEY_FIELDS}
  if fields["palette"] is not None:
    fields["palette"] = np.asarray(fields["palette"]).tolist()
  blob = json.dumps({"version": SPLITS_VERSION, **fields}, sort_keys=True)
  return hashlib.sha256(blob.encode()).hexdigest()[:16]


def save_split(path: pathlib.Path, split: dict) -> None:
  io.write_npz(path, **split)


def _sha256(path: pathlib.Path) -> str:
  return hashlib.sha256(path.read_bytes()).hexdigest()


def _read_cache(directory: pathlib.Path) -> dict | None:
  """The splits of a complete cache entry whose every file matches the checksum its `done`
  marker records; None (with a warning saying why, when there is an entry) otherwise."""
  done = directory / "done"
  if not done.is_file():
    return None
  try:
    files = json.loads(done.read_text())["sha256"]
    splits = {}
    for name, digest in files.items():
      blob = (directory / f"{name}.npz").read_bytes()
      if hashlib.sha256(blob).hexdigest() != digest:
        raise ValueError(f"{name}.npz does not match the checksum recorded when it was written")
      splits[name] = io.read_npz(io_lib.BytesIO(blob))
    return splits
  except (OSError, ValueError, KeyError, TypeError, zipfile.BadZipFile) as e:
    logging.warning("Split cache %s is incomplete or corrupt (%s); rebuilding it.", directory, e)
    return None


def _scratch(parent: pathlib.Path, key: str, kind: str) -> pathlib.Path:
  """This process's temporary directory of kind 'tmp' (a build) or 'old' (an entry replaced)."""
  return parent / f".{key}.{kind}-{socket.gethostname()}-{os.getpid()}"


def _remove_stale_scratch(parent: pathlib.Path, key: str) -> None:
  """Deletes the temporary directories of `key` left by processes of this host that died (a
  live one may still be building)."""
  pattern = re.compile(rf"\.{key}\.(tmp|old)-{re.escape(socket.gethostname())}-(\d+)")
  for path in parent.glob(f".{key}.*"):
    match = pattern.fullmatch(path.name)
    if match is None:
      continue
    try:
      os.kill(int(match[2]), 0)
    except ProcessLookupError:
      shutil.rmtree(path, ignore_errors=True)
    except PermissionError:  # Alive, another user's.
      pass


def _write_cache(directory: pathlib.Path, splits: dict, cfg) -> None:
  """Writes a cache entry whole or not at all: built in a temporary directory (with the SHA-256
  of each file in its `done` marker), then renamed into place. A failed write (a full disk) only
  costs the cache: it is logged, and the splits are used from memory."""
  parent, key = directory.parent, directory.name
  tmp = _scratch(parent, key, "tmp")
  try:
    _remove_stale_scratch(parent, key)
    shutil.rmtree(tmp, ignore_errors=True)
    for name, split in splits.items():
      save_split(tmp / f"{name}.npz", split)
    io.write_json(tmp / "done", {
        "sha256": {name: _sha256(tmp / f"{name}.npz") for name in splits},
        "config": json.loads(json.dumps(cfg.to_dict(), default=str))})
    if directory.exists():  # Corrupt or incomplete (_read_cache said so): replaced whole.
      old = _scratch(parent, key, "old")
      os.replace(directory, old)
      shutil.rmtree(old, ignore_errors=True)
    os.replace(tmp, directory)
  except OSError as e:  # Includes another process having put the same entry in place first.
    if not (directory / "done").is_file():
      logging.warning("Could not write the split cache %s (%s); using the splits from memory.",
                      directory, e)
  finally:
    shutil.rmtree(tmp, ignore_errors=True)


def get_splits(cfg, *, use_cache: bool = True) -> dict:
  """Splits of a data config, from the cache when this exact config was built before.

  A data directory the config or $CCMNIST_DATA_DIR names is checked even on a cache hit (used or
  refused, never skipped). A cache entry whose files do not match their recorded checksums is
  rebuilt.
  """
  check_data_config(cfg)
  if cfg.source == "mnist":
    mnist.check_named_dir(cfg.data_dir or None)
  directory = mnist.cache_dir() / "splits" / cache_key(cfg)
  if use_cache:
    cached = _read_cache(directory)
    if cached is not None:
      return cached
  splits = build_splits(cfg)
  if use_cache:
    _write_cache(directory, splits, cfg)
  return splits
