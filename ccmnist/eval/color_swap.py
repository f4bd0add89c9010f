"""The color-swap probe: digit d painted color c, for every (d, c); how often is it called d, c?

The study painted test "3"s brown (digit 8's color) and counted how many were called 8: one cell
of a table. Here every cell of the 10 x 10 table is measured on the same `n_per_digit` test digits
of each class (paired across colors, so cells differ only in the color), with backgrounds and noise
from a fixed numpy Generator.
"""

import numpy as np

from ccmnist.data import coloring
from ccmnist.data import palette as palette_lib
from ccmnist.eval import predict as predict_lib


def color_swap_images(grey, labels, *, n_per_digit: int = 100, seed: int = 0,
                      mode: str = "foreground", palette=palette_lib.PALETTE_RGB,
                      noise_sigma: float = 0.02, bg_range=(0.3, 0.6)):
  """(images uint8[10*10*n, 28, 28, 3], digits int32[...], colors int32[...]).

  Order: digit-major, then color, then example. The first `n_per_digit` digits of each class
  (in dataset order) are used; same arguments -> bit-identical images.
  """
  grey, labels = np.asarray(grey), np.asarray(labels)
  picks = []
  for d in range(palette_lib.NUM_COLORS):
    idx = np.flatnonzero(labels == d)[:n_per_digit]
    if idx.size < n_per_digit:
      raise ValueError(f"Only {idx.size} digits {d} available; lower n_per_digit "
                       f"(now {n_per_digit}).")
    picks.append(idx)
  idx = np.concatenate([np.tile(p, palette_lib.NUM_COLORS) for p in picks])
  digits = np.repeat(np.arange(10, dtype=np.int32), 10 * n_per_digit)
  colors = np.tile(np.repeat(np.arange(10, dtype=np.int32), n_per_digit), 10)
  rng = np.random.default_rng([seed, 2718])
  images = coloring.colorize(grey[idx], colors, rng, mode=mode, palette=palette,
                             noise_sigma=noise_sigma, bg_range=bg_range)
  return images, digits, colors


def swap_matrices(preds, digits, colors) -> dict:
  """{'p_digit', 'p_color'}: [digit, color] fractions predicted as the digit / as the color."""
  preds, digits, colors = map(np.asarray, (preds, digits, colors))
  p_digit = np.zeros((10, 10))
  p_color = np.zeros((10, 10))
  for d in range(10):
    for c in range(10):
      m = (digits == d) & (colors == c)
      p_digit[d, c] = np.mean(preds[m] == d)
      p_color[d, c] = np.mean(preds[m] == c)
  return {"p_digit": p_digit, "p_color": p_color}


def color_swap_probe(forward, params, grey, labels, *, n_per_digit: int = 100, seed: int = 0,
                     batch_size: int = 1000, **coloring_kw) -> dict:
  """Runs the probe through `forward` (see predict.make_forward); returns json-ready matrices.

  p_digit[d, c] = P(pred == d | digit d painted c); p_color[d, c] = P(pred == c | same), color c
  being digit c's cue. The diagonal (own color) of both is the same number. Also summarized:
  mean shape-following rate off the diagonal, mean color-following rate off the diagonal, and
  the study's (3, brown) cell.
  """
  images, digits, colors = color_swap_images(grey, labels, n_per_digit=n_per_digit, seed=seed,
                                             **coloring_kw)
  preds = predict_lib.predict_logits(forward, params, images, batch_size=batch_size).argmax(-1)
  m = swap_matrices(preds, digits, colors)
  off = ~np.eye(10, dtype=bool)
  brown = palette_lib.color_index("brown")
  return {
      "n_per_cell": n_per_digit, "seed": seed,
      "p_digit": m["p_digit"].tolist(), "p_color": m["p_color"].tolist(),
      "off_diagonal_p_digit": float(m["p_digit"][off].mean()),
      "off_diagonal_p_color": float(m["p_color"][off].mean()),
      "three_brown": {"p_pred_3": float(m["p_digit"][3, brown]),
                      "p_pred_8": float(m["p_color"][3, brown])},
  }
