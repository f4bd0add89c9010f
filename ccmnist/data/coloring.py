"""Coloring grey digits: colorize_*(grey, colors, rng, ...) -> uint8[N, 28, 28, 3].

All functions are vectorized over the batch; randomness comes only from the numpy Generator
passed in, so the same generator state gives bit-identical images.
"""

import numpy as np

from ccmnist.data import palette as palette_lib

MODES = ("foreground", "background")
_CHUNK = 4096  # images per chunk: bounds float32 temporaries to ~40 MB each.


def _check_inputs(grey, colors, noise_sigma, bg_range):
  grey = np.asarray(grey)
  colors = np.asarray(colors)
  if grey.dtype != np.uint8 or grey.ndim != 3:
    raise ValueError(f"grey digits must be uint8[N, H, W]; got {grey.dtype}{list(grey.shape)}.")
  if colors.shape != grey.shape[:1]:
    raise ValueError(f"need one color id per digit: {colors.shape} vs {grey.shape[:1]} digits.")
  if colors.size and (colors.min() < 0 or colors.max() >= palette_lib.NUM_COLORS):
    raise ValueError("color ids must lie in [0, 9].")
  if noise_sigma < 0:
    raise ValueError(f"noise_sigma must be >= 0; got {noise_sigma}.")
  lo, hi = bg_range
  if not 0 <= lo <= hi <= 1:
    raise ValueError(f"bg_range must satisfy 0 <= low <= high <= 1; got {bg_range}.")
  return grey, colors.astype(np.int64)


def _finish(img, rng, noise_sigma):
  """Adds Gaussian noise, clips to [0, 1] and truncates to uint8, as the study does."""
  if noise_sigma > 0:
    img += rng.standard_normal(img.shape, dtype=np.float32) * np.float32(noise_sigma)
  np.clip(img, 0.0, 1.0, out=img)
  img *= 255.0
  return img.astype(np.uint8)


def _foreground_chunk(grey, rgb, rng, noise_sigma, bg_range):
  d = grey.astype(np.float32)[..., None] / np.float32(255.0)  # [n, H, W, 1]
  bg = rng.uniform(bg_range[0], bg_range[1], size=grey.shape + (1,)).astype(np.float32)
  img = bg * (1.0 - d) + d * rgb[:, None, None, :]
  return _finish(img, rng, noise_sigma)


def _background_chunk(grey, rgb, rng, noise_sigma, bg_range):
  del bg_range  # The background is the color itself; the stroke is white.
  d = grey.astype(np.float32)[..., None] / np.float32(255.0)
  img = rgb[:, None, None, :] * (1.0 - d) + d
  return _finish(img, rng, noise_sigma)


def _colorize(chunk_fn, grey, colors, rng, *, palette, noise_sigma, bg_range):
  grey, colors = _check_inputs(grey, colors, noise_sigma, bg_range)
  rgb_all = palette_lib.check_palette(palette).astype(np.float32) / np.float32(255.0)
  out = np.empty(grey.shape + (3,), np.uint8)
  for start in range(0, len(grey), _CHUNK):
    sl = slice(start, start + _CHUNK)
    out[sl] = chunk_fn(grey[sl], rgb_all[colors[sl]], rng, noise_sigma, bg_range)
  return out


def colorize_foreground(grey, colors, rng, *, palette=palette_lib.PALETTE_RGB,
                        noise_sigma=0.02, bg_range=(0.3, 0.6)):
  """The study's foreground-stroke coloring.

  Per pixel: a grey background b ~ U(bg_range) (same value on R, G, B), the stroke blended in
  as `b * (1 - d) + d * color` with d = grey / 255, plus N(0, noise_sigma) per pixel and channel,
  clipped to [0, 1] and truncated to uint8. noise_sigma=0 is the study's noise-free variant.
  """
  return _colorize(_foreground_chunk, grey, colors, rng, palette=palette,
                   noise_sigma=noise_sigma, bg_range=bg_range)


def colorize_background(grey, colors, rng, *, palette=palette_lib.PALETTE_RGB,
                        noise_sigma=0.02, bg_range=(0.3, 0.6)):
  """Classic Biased-MNIST coloring: the color fills the background, the stroke stays white."""
  return _colorize(_background_chunk, grey, colors, rng, palette=palette,
                   noise_sigma=noise_sigma, bg_range=bg_range)


def colorize(grey, colors, rng, *, mode="foreground", **kwargs):
  """Dispatches on `mode` ('foreground' or 'background')."""
  if mode == "foreground":
    return colorize_foreground(grey, colors, rng, **kwargs)
  if mode == "background":
    return colorize_background(grey, colors, rng, **kwargs)
  raise ValueError(f"Unknown coloring mode {mode!r}; known modes: {', '.join(MODES)}.")
