"""The study's 10-color palette, and LfF's: color i is the spurious cue of digit i.

Other palettes may hold any number of colors (>= 2); which class each color cues is a data
config's color-to-class map (splits.spec).
"""

import numpy as np

NUM_COLORS = 10  # The study's palettes (PALETTE_RGB, LFF_PALETTE).

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


# The Colored MNIST palette of LfF (Nam et al. 2020) and DFA (Lee et al. 2021): the float32
# tensor [10, 3, 1, 1] in [0, 1] of alinlab/LfF data/resource/colors.th (commit e66796e),
# transcribed digit for digit (each value reads back as the same float32).
LFF_COLORS = np.array([
    [0.98368233, 0.312519, 0.16857535], [0.99052966, 0.91560525, 0.3515122],
    [0.672964, 0.46107048, 0.5798082], [0.78325194, 0.8315559, 0.6013294],
    [0.088015795, 0.77796334, 0.98180777], [0.32139337, 0.96105456, 0.44644988],
    [0.024615884, 0.23565048, 0.7586663], [0.55524695, 0.10158014, 0.76176316],
    [0.2077232, 0.3929485, 0.018702388], [0.8336576, 0.20240927, 0.2669431],
], dtype=np.float32)
LFF_COLORS.setflags(write=False)
# The same colors in pixel levels, unrounded (float32 in [0, 255]): LfF multiplies the digit by
# the float color, so rounding the palette to uint8 would move strokes by up to half a level.
LFF_PALETTE = LFF_COLORS * np.float32(255.0)
LFF_PALETTE.setflags(write=False)


def _check_shape_range(arr) -> None:
  if arr.ndim != 2 or arr.shape[1] != 3 or arr.shape[0] < 2:
    raise ValueError(
        f"A palette must be at least 2 RGB colors, shape (n, 3) (the study's: {NUM_COLORS}); "
        f"got shape {arr.shape}."
    )
  if not np.all(np.isfinite(arr)) or arr.min() < 0 or arr.max() > 255:
    raise ValueError("Palette values must lie in [0, 255] (8-bit RGB).")


def palette_levels(palette) -> np.ndarray:
  """`palette` as float32[n, 3] pixel levels in [0, 255], unrounded (for LFF_PALETTE), or
  raises saying what is wrong with it."""
  arr = np.asarray(palette, dtype=np.float64)
  _check_shape_range(arr)
  return np.asarray(palette).astype(np.float32)


def check_palette(palette) -> np.ndarray:
  """Returns `palette` as uint8[n, 3], or raises saying what is wrong with it."""
  arr = np.asarray(palette)
  _check_shape_range(arr)
  return arr.astype(np.uint8)


def color_index(name: str) -> int:
  """The palette index of a color name such as 'brown'."""
  if name not in COLOR_NAMES:
    raise ValueError(f"Unknown color {name!r}; known colors: {', '.join(COLOR_NAMES)}.")
  return COLOR_NAMES.index(name)
