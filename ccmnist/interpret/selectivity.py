"""Polysemanticity, measured: how much of a channel's response is color, how much is shape.

Stimuli: every digit class x every palette color, the same n grey test digits per class in every
color, and the SAME background and noise for a given digit in every color, so two cells of one
digit row differ only in the stroke color. Each channel's response to an image is the mean over
space of its conv output BEFORE the ReLU (the activation the study visualizes; `relu=True` uses
the post-ReLU output instead). Averaged over the n digits of a cell, this gives a [10 digits,
10 colors] table per channel. The spatial mean discards where a channel fires, and so most of
what a shape detector does; pool='map' does the same split on the whole activation map
(every position a variable, sums of squares added over positions).

Variance split (two-way ANOVA on the cell means, balanced design): with grand mean m, digit
effect a_d = row mean - m, color effect b_c = column mean - m and the rest r_dc = T_dc - m - a_d -
b_c (interaction, plus the sampling noise of the cell means),
    SS_total = 10 sum_d a_d^2 + 10 sum_c b_c^2 + sum_dc r_dc^2   (exactly, orthogonal parts).
color index = SS_color / SS_total, shape index = SS_digit / SS_total, rest = SS_rest / SS_total.

Classes (thresholds are arguments; defaults stated here): 'dead' if the channel's pre-ReLU
output is never > 0 at any position of any stimulus (its ReLU output is identically zero) or its
cell means have zero variance; else 'color' if color index > 0.5 and > 2 x shape index; 'shape'
if shape index > 0.5 and > 2 x color index; else 'mixed'.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from ccmnist.data import coloring
from ccmnist.data import palette as palette_lib
from ccmnist.interpret import gradcam as gradcam_lib
from ccmnist.util import batches

CLASSES = ("color", "shape", "mixed", "dead")
NUM_DIGITS = 10


# ---------------------------------------------------------------- stimuli

def pick_digits(labels, n_per_class: int, rng: np.random.Generator) -> np.ndarray:
  """Indices [10, n]: n distinct random examples of each digit class."""
  labels = np.asarray(labels)
  out = []
  for d in range(NUM_DIGITS):
    idx = np.flatnonzero(labels == d)
    if len(idx) < n_per_class:
      raise ValueError(f"only {len(idx)} examples of digit {d}; lower n_per_class "
                       f"(asked {n_per_class}).")
    out.append(np.sort(rng.choice(idx, n_per_class, replace=False)))
  return np.stack(out)


def color_all(grey, *, seed, palette=palette_lib.PALETTE_RGB, noise_sigma=0.02,
              bg_range=(0.3, 0.6), mode="foreground") -> np.ndarray:
  """Every grey digit in every palette color: uint8[10 colors, N, 28, 28, 3].

  Calls the study's coloring once per color with a Generator seeded identically, so the
  background and noise of a digit are the same draws in every color (the coloring draws them
  in an order that does not depend on the colors).
  """
  grey = np.asarray(grey)
  n = len(grey)
  return np.stack([
      coloring.colorize(grey, np.full(n, c, np.int32), np.random.default_rng(seed), mode=mode,
                        palette=palette, noise_sigma=noise_sigma, bg_range=bg_range)
      for c in range(palette_lib.NUM_COLORS)])


def stimulus_set(grey, labels, *, n_per_cell: int, seed: int = 0, **color_kwargs) -> dict:
  """The controlled digit x color set from grey digits (e.g. MNIST test digits).

  Returns 'images' uint8[10 digits, 10 colors, n, 28, 28, 3], 'indices' [10, n] into `grey`.
  """
  idx = pick_digits(labels, n_per_cell, np.random.default_rng([seed, 0]))
  flat = np.asarray(grey)[idx.reshape(-1)]  # [10 * n, 28, 28], digit-major.
  colored = color_all(flat, seed=[seed, 1], **color_kwargs)  # [10 colors, 10 * n, ...]
  images = colored.reshape((palette_lib.NUM_COLORS, NUM_DIGITS, n_per_cell) + colored.shape[2:])
  return {"images": np.swapaxes(images, 0, 1), "indices": idx}


# ---------------------------------------------------------------- activations

POOLS = ("mean", "max", "map")


@functools.partial(jax.jit, static_argnames=("model", "layer", "relu", "pool"))
def _channel_stats(model, params, images, *, layer, relu, pool):
  _, state = model.apply({"params": params}, images.astype(jnp.float32),
                         mutable=["intermediates"])
  a = state["intermediates"][layer][0]
  r = jax.nn.relu(a) if relu else a
  pooled = {"mean": lambda: r.mean(axis=(1, 2)), "max": lambda: r.max(axis=(1, 2)),
            "map": lambda: r}[pool]()
  return pooled, a.max(axis=(1, 2))


def channel_means(model, params, images, *, layer: str, relu: bool = False,
                  pool: str = "mean", batch_size: int = 500):
  """Per image and channel: (the pooled response, the max over space) of `layer`'s output.

  pool='mean' (default): mean over space, [N, C]; 'max': max over space, [N, C]; 'map': the
  whole map, [N, h, w, C]. The second array is the max over space (pre-ReLU), [N, C].
  Batches of `batch_size` (the last one padded, so one compiled shape).
  """
  gradcam_lib.check_layer(model, layer)
  if pool not in POOLS:
    raise ValueError(f"Unknown pool {pool!r}; use one of {POOLS}.")
  return batches.map_batches(
      lambda b: _channel_stats(model, params, jnp.asarray(b), layer=layer, relu=relu, pool=pool),
      (np.asarray(images),), batch_size=batch_size)


def cell_tables(model, params, stimuli_DCN, *, layer: str, relu: bool = False,
                pool: str = "mean", batch_size: int = 500) -> dict:
  """'tables' float64[C, 10 digits, 10 colors] of cell means of the pooled response
  ([C, 10, 10, h, w] for pool='map': the cell-mean activation maps) and 'max' float32[C]
  (the largest pre-ReLU value of each channel over all stimuli and positions)."""
  d, c, n = stimuli_DCN.shape[:3]
  means, maxes = channel_means(model, params, stimuli_DCN.reshape((-1,) + stimuli_DCN.shape[3:]),
                               layer=layer, relu=relu, pool=pool, batch_size=batch_size)
  tables = means.astype(np.float64).reshape((d, c, n) + means.shape[1:]).mean(axis=2)
  return {"tables": np.moveaxis(tables, -1, 0), "max": maxes.max(axis=0)}


# ---------------------------------------------------------------- variance split

def variance_split(tables_KDC) -> dict:
  """Two-way split of each [digit, color] table: sums of squares and their fractions.

  Tables may carry trailing axes (e.g. [K, D, C, h, w] cell-mean maps): the split is done at
  every position and the sums of squares are added over positions.

  Returns float64[K] arrays 'ss_total', 'ss_digit', 'ss_color', 'ss_rest' and the indices
  'shape' = ss_digit / ss_total, 'color' = ss_color / ss_total, 'rest' = ss_rest / ss_total
  (NaN where ss_total == 0).
  """
  t = np.asarray(tables_KDC, np.float64)
  if t.ndim == 2:
    t = t[None]
  axes = tuple(range(1, t.ndim))
  m = t.mean(axis=(1, 2), keepdims=True)
  a = t.mean(axis=2, keepdims=True) - m  # digit effect [K, D, 1, ...]
  b = t.mean(axis=1, keepdims=True) - m  # color effect [K, 1, C, ...]
  r = t - m - a - b
  ss = {"ss_total": ((t - m) ** 2).sum(axis=axes),
        "ss_digit": (a ** 2).sum(axis=axes) * t.shape[2],
        "ss_color": (b ** 2).sum(axis=axes) * t.shape[1],
        "ss_rest": (r ** 2).sum(axis=axes)}
  tot = ss["ss_total"]
  with np.errstate(invalid="ignore", divide="ignore"):
    frac = {k: np.where(tot > 0, ss[f"ss_{v}"] / np.where(tot > 0, tot, 1.0), np.nan)
            for k, v in (("shape", "digit"), ("color", "color"), ("rest", "rest"))}
  return {**ss, **frac}


def classify(split: dict, max_act=None, *, threshold: float = 0.5, ratio: float = 2.0):
  """Class of each channel: 'color', 'shape', 'mixed' or 'dead' (see the module docstring)."""
  color, shape = np.asarray(split["color"]), np.asarray(split["shape"])
  dead = ~(np.asarray(split["ss_total"]) > 0)
  if max_act is not None:
    dead |= ~(np.asarray(max_act) > 0)
  out = np.full(color.shape, "mixed", dtype=object)
  with np.errstate(invalid="ignore"):
    out[(color > threshold) & (color > ratio * shape)] = "color"
    out[(shape > threshold) & (shape > ratio * color)] = "shape"
  out[dead] = "dead"
  return out.astype(str)


def fractions(classes) -> dict:
  """{class: fraction of channels} over CLASSES, plus the channel count."""
  classes = np.asarray(classes)
  return {**{c: float(np.mean(classes == c)) for c in CLASSES}, "num_channels": int(len(classes))}


def layer_selectivity(model, params, stimuli_DCN, *, layer: str, relu: bool = False,
                      pool: str = "mean", threshold: float = 0.5, ratio: float = 2.0) -> dict:
  """Tables, variance split, classes and class fractions of every channel of one layer.

  pool='mean' (default) splits the variance of the spatial-mean response; pool='map' splits
  the variance of the whole activation map (summed over positions), which also counts a
  channel whose response moves in space with the digit's shape but not in total.
  """
  cells = cell_tables(model, params, stimuli_DCN, layer=layer, relu=relu, pool=pool)
  split = variance_split(cells["tables"])
  classes = classify(split, cells["max"], threshold=threshold, ratio=ratio)
  live = classes != "dead"
  return {"tables": cells["tables"], "max": cells["max"], **split, "classes": classes,
          "fractions": fractions(classes),
          "mean_color_index_live": float(np.mean(split["color"][live])) if live.any() else None,
          "mean_shape_index_live": float(np.mean(split["shape"][live])) if live.any() else None}


# ---------------------------------------------------------------- top-k images

def top_k(model, params, images, *, layer: str, k: int = 9, relu: bool = False,
          batch_size: int = 500) -> dict:
  """The k images with the largest mean (pre-ReLU) activation of each channel.

  Returns 'indices' int[C, k] into `images` (largest first) and 'values' float32[C, k].
  """
  means, _ = channel_means(model, params, images, layer=layer, relu=relu,
                           batch_size=batch_size)
  if k > len(means):
    raise ValueError(f"k={k} exceeds the {len(means)} images given.")
  order = np.argsort(-means, axis=0, kind="stable")[:k].T  # [C, k]
  return {"indices": order, "values": np.take_along_axis(means.T, order, axis=1)}
