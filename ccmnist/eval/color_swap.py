"""The color-swap probe: digit d painted color c, for every (d, c); how often is it called d, c?

The study painted test "3"s brown (digit 8's color) and counted how many were called 8: one cell
of a table. Here every cell of the classes x colors table is measured on the same `n_per_digit`
test digits of each class (paired across colors, so cells differ only in the color), with
backgrounds and noise from a fixed numpy Generator.
"""

import numpy as np

from ccmnist.data import coloring
from ccmnist.data import palette as palette_lib
from ccmnist.eval import predict as predict_lib


def color_swap_images(grey, labels, *, n_per_digit: int = 100, seed: int = 0,
                      mode: str = "foreground", palette=palette_lib.PALETTE_RGB,
                      noise_sigma: float = 0.02, bg_range=(0.3, 0.6), num_classes=None,
                      grayscale: bool = False):
  """(images uint8[K*C*n, H, W, 3], digits int32[...], colors int32[...]) for K = num_classes
  classes (None: one per palette color) and the palette's C colors; grayscale: made grey, as
  a data config with grayscale=True colors (coloring.colorize).

  Order: digit-major, then color, then example. The first `n_per_digit` digits of each class
  (in dataset order) are used; same arguments -> bit-identical images.
  """
  grey, labels = np.asarray(grey), np.asarray(labels)
  num_colors = len(palette)
  num_classes = num_colors if num_classes is None else num_classes
  picks = []
  for d in range(num_classes):
    idx = np.flatnonzero(labels == d)[:n_per_digit]
    if idx.size < n_per_digit:
      raise ValueError(f"Only {idx.size} digits {d} available; lower n_per_digit "
                       f"(now {n_per_digit}).")
    picks.append(idx)
  idx = np.concatenate([np.tile(p, num_colors) for p in picks])
  digits = np.repeat(np.arange(num_classes, dtype=np.int32), num_colors * n_per_digit)
  colors = np.tile(np.repeat(np.arange(num_colors, dtype=np.int32), n_per_digit), num_classes)
  rng = np.random.default_rng([seed, 2718])
  images = coloring.colorize(grey[idx], colors, rng, mode=mode, palette=palette,
                             noise_sigma=noise_sigma, bg_range=bg_range, grayscale=grayscale)
  return images, digits, colors


def swap_matrices(preds, digits, colors, *, color_class=None) -> dict:
  """{'p_digit', 'p_color'}: [digit, color] fractions predicted as the digit / as the class the
  color cues (color_class[c]; None: color c cues class c)."""
  preds, digits, colors = map(np.asarray, (preds, digits, colors))
  num_classes, num_colors = int(digits.max()) + 1, int(colors.max()) + 1
  color_class = np.arange(num_colors) if color_class is None else np.asarray(color_class)
  p_digit = np.zeros((num_classes, num_colors))
  p_color = np.zeros((num_classes, num_colors))
  for d in range(num_classes):
    for c in range(num_colors):
      m = (digits == d) & (colors == c)
      p_digit[d, c] = np.mean(preds[m] == d)
      p_color[d, c] = np.mean(preds[m] == color_class[c])
  return {"p_digit": p_digit, "p_color": p_color}


def color_swap_probe(forward, params, grey, labels, *, n_per_digit: int = 100, seed: int = 0,
                     batch_size: int = 1000, color_class=None, **coloring_kw) -> dict:
  """Runs the probe through `forward` (see predict.make_forward); returns json-ready matrices.

  p_digit[d, c] = P(pred == d | digit d painted c); p_color[d, c] = P(pred == c | same), color c
  being digit c's cue (color_class[c]'s: see swap_matrices). The aligned cells (own color: the
  diagonal of the study's) of both are the same number. Also summarized:
  mean shape-following rate off the diagonal, mean color-following rate off the diagonal, and
  the study's (3, brown) cell.
  """
  images, digits, colors = color_swap_images(grey, labels, n_per_digit=n_per_digit, seed=seed,
                                             **coloring_kw)
  preds = predict_lib.predict_logits(forward, params, images, batch_size=batch_size).argmax(-1)
  m = swap_matrices(preds, digits, colors, color_class=color_class)
  num_classes, num_colors = m["p_digit"].shape
  cues = np.arange(num_colors) if color_class is None else np.asarray(color_class)
  off = np.arange(num_classes)[:, None] != cues[None, :]  # Not the digit's own color.
  brown = palette_lib.color_index("brown")
  # The study's cell, where the table holds it (None values on data of fewer classes or colors).
  cell = (3, brown) if num_classes > 3 and num_colors > brown else None
  at = lambda p: float(p[cell]) if cell else None
  return {
      "n_per_cell": n_per_digit, "seed": seed,
      "p_digit": m["p_digit"].tolist(), "p_color": m["p_color"].tolist(),
      "off_diagonal_p_digit": float(m["p_digit"][off].mean()),
      "off_diagonal_p_color": float(m["p_color"][off].mean()),
      "three_brown": {"p_pred_3": at(m["p_digit"]), "p_pred_8": at(m["p_color"])},
  }
