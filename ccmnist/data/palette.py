"""The study's 10-color palette: color i is the spurious cue of digit i."""

import numpy as np

NUM_COLORS = 10

PALETTE_RGB = np.array(
    [
        [255, 0, 0],
        [0, 255, 0],
        [0, 0, 255],
        [255, 255, 0],
        [255, 0, 255],
        [0, 255, 255],
        [255, 128, 0],
        [128, 0, 255],
        [139, 69, 19],
        [19, 139, 69],
    ],
    dtype=np.uint8,
)
PALETTE_RGB.setflags(write=False)

COLOR_NAMES = (
    "red",
    "green",
    "blue",
    "yellow",
    "magenta",
    "cyan",
    "orange",
    "violet",
    "brown",
    "forest_green",
)


def check_palette(palette) -> np.ndarray:
  """Returns `palette` as uint8[10, 3], or raises saying what is wrong with it."""
  arr = np.asarray(palette)
  if arr.shape != (NUM_COLORS, 3):
    raise ValueError(
        f"A palette must be {NUM_COLORS} RGB colors, shape (10, 3); got shape {arr.shape}."
    )
  if arr.min() < 0 or arr.max() > 255:
    raise ValueError("Palette values must lie in [0, 255] (8-bit RGB).")
  return arr.astype(np.uint8)


def color_index(name: str) -> int:
  """The palette index of a color name such as 'brown'."""
  if name not in COLOR_NAMES:
    raise ValueError(f"Unknown color {name!r}; known colors: {', '.join(COLOR_NAMES)}.")
  return COLOR_NAMES.index(name)
