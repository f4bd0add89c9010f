"""Color assignment and the study's splits.

A split is a dict of numpy arrays: `images` uint8[N,H,W,3], `labels` int32[N], `colors`
int32[N] (palette ids) and `aligned` bool[N] (the color cues the label: groups.aligned); the
train split also carries `cf_images` / `cf_colors`, the counterfactual partner of every image
(same grey digit, another color, fresh background and noise), and `grey` uint8[N,H,W], its grey
digits (for recoloring during training: coloring.recolor_fn).

`spec(cfg)` says what a data config's splits hold without building them (image shape, classes,
colors, which class each color cues); models are built and initialized from it. MNIST is 28x28
and 10 classes; the 'synthetic' source takes `image_size` and `num_classes` from the config,
and any palette with a `color_class` map (palette size and class count may differ).

Held out from the training digits, in this order, when sized > 0: `val` (colored like train),
`val_unbiased` (rho 0.1: uniformly random colors) and `val_balanced` (rho 0.5: half aligned, so
a group-balanced subsample keeps most of it; groups.balanced_subset).
"""

import dataclasses
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
from ccmnist.data import groups
from ccmnist.data import mnist
from ccmnist.data import palette as palette_lib
from ccmnist.util import io

# Bump when the way splits are generated changes, so stale caches are not reused.
# 8: the 'lff' train split's colors by LfF's exact per-class quotas (quota_colors).
SPLITS_VERSION = 8
# Data-config fields that change the arrays (and so the cache key).
KEY_FIELDS = ("coloring", "rho_train", "rho_test_easy", "rho_test_hard", "noise_sigma",
              "bg_low", "bg_high", "seed", "train_size", "test_size", "val_size",
              "val_unbiased_size", "palette", "source", "color_std", "grayscale",
              "val_balanced_size", "image_size", "num_classes", "color_class")
# Fields newer than some saved configs, and the value a config without them means.
FIELD_DEFAULTS = {"color_std": coloring.COLOR_STD, "grayscale": False, "val_balanced_size": 0,
                  "image_size": None, "num_classes": None, "color_class": None}
# Key fields left out of the cache key at their default (None), so the keys of configs that predate
# them stay as they were. image_size / num_classes None: the source's own (MNIST's 28 and 10);
# color_class None: color c cues class c.
SPEC_FIELDS = ("image_size", "num_classes", "color_class")
# Every split a data config can hold, in report order (the val splits when sized > 0).
SPLIT_NAMES = ("train", "test_easy", "test_hard", "val", "val_unbiased", "val_balanced")
# The held-out splits' colors: rho_train for val; fixed rhos for the others.
HELDOUT_RHO = {"val_unbiased": 0.1, "val_balanced": 0.5}


@dataclasses.dataclass(frozen=True)
class Spec:
  """What a data config's splits hold: the arrays' shapes and the classes and colors.

  image_shape: (H, W, C) of one image; num_classes: labels lie in [0, num_classes);
  color_class: int tuple, one per palette color, the class color c is the cue of.
  """
  image_shape: tuple
  num_classes: int
  color_class: tuple

  @property
  def num_colors(self) -> int:
    return len(self.color_class)

  @property
  def aligned_share(self) -> float:
    """The share of aligned images among class-balanced, uniformly colored ones: the mean over
    classes of (its colors / all colors), 1 / num_classes whatever the map."""
    return 1.0 / self.num_classes


def check_rho(rho: float) -> float:
  if not 0.0 <= rho <= 1.0:
    raise ValueError(f"rho (the color-label correlation) must lie in [0, 1]; got {rho}.")
  return float(rho)


def different_colors(colors, rng: np.random.Generator, *,
                     num_colors: int = palette_lib.NUM_COLORS) -> np.ndarray:
  """For each color id, a uniformly random *different* color id of a palette of num_colors."""
  colors = np.asarray(colors)
  return ((colors + rng.integers(1, num_colors, size=colors.shape)) % num_colors).astype(np.int32)


def _pick(options, counts, labels, rng: np.random.Generator) -> np.ndarray:
  """For each label y, one of options[y, :counts[y]] uniformly. Every class with as many options
  draws with one scalar bound, the stream the identity map has always drawn (1 + offset)."""
  if np.all(counts == counts[0]):
    choice = rng.integers(0, counts[0], size=labels.shape)
  else:
    choice = np.floor(rng.random(labels.shape) * counts[labels]).astype(np.int64)
  return options[labels, choice]


def assign_colors(labels, rho: float, rng: np.random.Generator, *, color_class=None) -> np.ndarray:
  """With probability rho a color that cues the label, else a uniformly random color that cues
  another class (color_class[c]: the class color c cues; None: color c cues class c).

  Among several colors of one class, one is drawn uniformly. The study's identity map: rho 0.1
  gives uniformly random colors (an unbiased set); rho = 0 never aligns (the study's hard set);
  rho = 1 always aligns.
  """
  rho = check_rho(rho)
  labels = np.asarray(labels).astype(np.int32)
  color_class = np.arange(palette_lib.NUM_COLORS) if color_class is None else color_class
  color_class = np.asarray(color_class, np.int64)
  num_colors, num_classes = color_class.size, int(color_class.max()) + 1
  # The other classes' colors of class y in the order (y + 1, y + 2, ...) mod num_colors, so the
  # identity map gives (y + 1 + k) % num_colors, as different_colors does.
  own, other = [], []
  for y in range(num_classes):
    ring = (y + 1 + np.arange(num_colors)) % num_colors
    own.append(ring[color_class[ring] == y])
    other.append(ring[color_class[ring] != y])
  pad = lambda rows: np.array([np.pad(r, (0, num_colors - r.size)) for r in rows])
  n_own, n_other = np.array([r.size for r in own]), np.array([r.size for r in other])
  if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
    raise ValueError(f"labels must lie in [0, {num_classes - 1}], the classes color_class cues.")
  keep = rng.random(labels.shape) < rho
  conflicting = _pick(pad(other), n_other, labels, rng)
  aligned = (pad(own)[labels, 0] if np.all(n_own == 1) else
             _pick(pad(own), n_own, labels, rng))
  return np.where(keep, aligned, conflicting).astype(np.int32)


def color_quotas(n: int, label: int, rho: float, color_class) -> np.ndarray:
  """int [num_colors]: how many of a class's n examples get each color, as LfF's
  make_attr_labels (alinlab/LfF, make_dataset.py) counts them: color c's share is rho (split
  evenly among the colors that cue the label) or 1 - rho (split evenly among the others), and
  the counts are the differences of round(n x the shares' running sum) in color order, so they
  sum to n exactly."""
  own = np.asarray(color_class) == label
  share = np.where(own, rho / own.sum(), (1.0 - rho) / max((~own).sum(), 1))
  milestones = np.round(n * np.cumsum(share)).astype(np.int64)
  return np.diff(milestones, prepend=0)


def quota_colors(labels, rho: float, rng: np.random.Generator, *,
                 color_class=None) -> np.ndarray:
  """Colors by LfF's exact per-class quotas (color_quotas), each class's examples dealt to
  them in a random order; LfF deals them in its dataset's order, which is as arbitrary.
  A class of n examples holds exactly n - (its own colors' quota) conflicting ones, within
  one of round(n (1 - rho))."""
  rho = check_rho(rho)
  labels = np.asarray(labels).astype(np.int32)
  color_class = np.arange(palette_lib.NUM_COLORS) if color_class is None else color_class
  color_class = np.asarray(color_class, np.int64)
  colors = np.zeros(labels.shape, np.int32)
  for y in range(int(color_class.max()) + 1):
    rows = np.flatnonzero(labels == y)
    counts = color_quotas(rows.size, y, rho, color_class)
    colors[rows[rng.permutation(rows.size)]] = np.repeat(np.arange(counts.size), counts)
  return colors


def field(cfg, name: str):
  """cfg[name], or FIELD_DEFAULTS[name] for a config saved before the field existed."""
  return cfg.get(name, FIELD_DEFAULTS[name]) if name in FIELD_DEFAULTS else cfg[name]


def make_split(grey, labels, rho, rng, *, cfg, palette, with_counterfactuals=False,
               quotas=False):
  """Colors grey digits with correlation rho; returns the split dict (with counterfactuals, also
  the grey digits: the train split's `grey`). quotas: colors by exact per-class quotas
  (quota_colors) instead of independent draws (assign_colors)."""
  color_class = spec(cfg).color_class
  colors = (quota_colors if quotas else assign_colors)(labels, rho, rng, color_class=color_class)
  kw = coloring_kwargs(cfg, palette=palette)
  split = dict(images=coloring.colorize(grey, colors, rng, **kw), labels=labels.astype(np.int32),
               colors=colors, aligned=groups.aligned(colors, labels, color_class))
  if with_counterfactuals:
    split["cf_colors"] = different_colors(colors, rng, num_colors=len(color_class))
    split["cf_images"] = coloring.colorize(grey, split["cf_colors"], rng, **kw)
    split["grey"] = np.asarray(grey, np.uint8)
  return split


def spec(cfg) -> Spec:
  """The Spec of a data config (checked for its shape fields), without building its splits."""
  image_size, num_classes = field(cfg, "image_size"), field(cfg, "num_classes")
  if cfg.source == "mnist":
    if image_size not in (None, mnist.IMAGE_SHAPE[0]) or num_classes not in (
        None, mnist.NUM_CLASSES):
      raise ValueError(f"config.data.image_size={image_size!r}, num_classes={num_classes!r}: "
                       f"MNIST is {mnist.IMAGE_SHAPE[0]}x{mnist.IMAGE_SHAPE[1]}, "
                       f"{mnist.NUM_CLASSES} classes; leave them None.")
    hw, num_classes = mnist.IMAGE_SHAPE, mnist.NUM_CLASSES
  else:
    image_size = mnist.IMAGE_SHAPE[0] if image_size is None else image_size
    num_classes = mnist.NUM_CLASSES if num_classes is None else num_classes
    if not (isinstance(image_size, int) and isinstance(num_classes, int) and num_classes >= 2
            and image_size >= synthetic_min_size(num_classes)):
      raise ValueError(f"config.data.image_size={image_size!r}, num_classes={num_classes!r}: "
                       f"need integers, num_classes >= 2 and image_size >= "
                       f"{synthetic_min_size(max(int(num_classes or 2), 2))} for the synthetic "
                       f"digits' bars to fit.")
    hw = (image_size, image_size)
  num_colors = len(palette_of(cfg))
  color_class = field(cfg, "color_class")
  if color_class is None:
    if num_colors != num_classes:
      raise ValueError(f"config.data.palette holds {num_colors} colors for {num_classes} "
                       f"classes; set config.data.color_class, the class each color cues.")
    color_class = tuple(range(num_classes))
  color_class = tuple(int(c) for c in np.asarray(color_class).reshape(-1))
  if (len(color_class) != num_colors or
      set(color_class) != set(range(num_classes))):
    raise ValueError(f"config.data.color_class={color_class!r}: need one class in "
                     f"[0, {num_classes - 1}] per palette color ({num_colors}), every class cued "
                     f"by at least one color.")
  return Spec(image_shape=(*hw, 3), num_classes=num_classes, color_class=color_class)


def image_shape(split: dict) -> tuple:
  """(H, W, C): the shape of one image of a split's arrays."""
  return tuple(int(d) for d in np.shape(split["images"])[1:])


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
  if cfg.palette is not None:
    palette_lib.palette_levels(cfg.palette)
  spec(cfg)


def palette_of(cfg) -> np.ndarray:
  """The config's palette; None: the coloring mode's own (coloring.config_palette)."""
  return coloring.config_palette(cfg)


def coloring_kwargs(cfg, *, palette=None) -> dict:
  """The keyword arguments of coloring.colorize that a data config sets
  (coloring.config_kwargs)."""
  return coloring.config_kwargs(cfg, palette=palette)


def synthetic_min_size(num_classes: int) -> int:
  """The smallest image side that holds the bars of `num_classes` synthetic classes."""
  return 4 + 3 * max(4, -(-num_classes // 4))  # A pitch of 3 or more: bars 1 pixel high or more.


def synthetic_digits(n: int, rng: np.random.Generator, *, num_classes: int = mnist.NUM_CLASSES,
                     size: int = mnist.IMAGE_SHAPE[0]):
  """Tiny stand-in digits (one bar pattern per class, in a 4-column grid) for tests without
  MNIST: (uint8[n, size, size], int32[n])."""
  if size < synthetic_min_size(num_classes):
    raise ValueError(f"size={size} is too small for {num_classes} classes' bars; use size >= "
                     f"{synthetic_min_size(num_classes)}.")
  labels = np.arange(n, dtype=np.int32) % num_classes
  rng.shuffle(labels)
  grey = np.zeros((n, size, size), np.uint8)
  # A bar every `pitch` pixels: 6 at size 28, the bars MNIST-sized tests have always used.
  rows = -(-num_classes // 4)
  pitch = min((size - 4) // 4, (size - 4) // rows)
  for d in range(num_classes):
    r, c = divmod(d, 4)
    grey[labels == d, 4 + pitch * r: 2 + pitch * (r + 1), 2 + pitch * c: 2 + pitch * (c + 1)] = 255
  grey = np.maximum(grey, rng.integers(0, 30, grey.shape, dtype=np.uint8) * (grey > 0))
  return grey, labels


def load_grey(cfg, split: str):
  if cfg.source == "synthetic":
    n = mnist.NUM_EXAMPLES[split] // 100  # 600 / 100 digits: enough for a smoke test.
    s = spec(cfg)
    return synthetic_digits(n, np.random.default_rng([cfg.seed, 7, split == "train"]),
                            num_classes=s.num_classes, size=s.image_shape[0])
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
      # LfF's protocol makes its train set's conflicting examples by exact per-class quotas.
      "train": make(train_grey[tr], train_labels[tr], cfg.rho_train, "train",
                    with_counterfactuals=True, quotas=cfg.coloring == "lff"),
      "test_easy": make(tg, tl, cfg.rho_test_easy, "test_easy"),
      "test_hard": make(tg, tl, cfg.rho_test_hard, "test_hard"),
  }
  for name, idx in heldout.items():
    if sizes[name]:
      splits[name] = make(train_grey[idx], train_labels[idx],
                          HELDOUT_RHO.get(name, cfg.rho_train), name)
  return splits


def cache_key(cfg) -> str:
  fields = {k: field(cfg, k) for k in KEY_FIELDS
            if k not in SPEC_FIELDS or field(cfg, k) is not None}
  for k in ("palette", "color_class"):
    if fields.get(k) is not None:
      fields[k] = np.asarray(fields[k]).tolist()
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
