"""Coloring grey digits: colorize_*(grey, colors, rng, ...) -> uint8[N, 28, 28, 3].

All functions are vectorized over the batch; randomness comes only from the numpy Generator
passed in, so the same generator state gives bit-identical images. Digits are colored in chunks
of 64, each with its own generator seeded from the one passed in, on all CPU cores: the images do
not depend on how many cores there are.

The Gaussian noise (one value per pixel and channel: 165M for 70k digits) dominates the cost, so
it is drawn by inverse-CDF lookup: 16 raw random bits per value index a table of the 65,536
quantiles Phi^-1((i + 0.5) / 65536) of N(0, sigma). Its CDF is within 1 / 65536 of the normal's
everywhere (tails cut at 4.3 sigma, probability 1.5e-5), far below the 1/255 quantization of the
uint8 output, and it is ~3-5x faster than numpy's ziggurat sampler.
"""

import concurrent.futures
import functools
import os
import statistics

import numpy as np

from ccmnist.data import palette as palette_lib

MODES = ("foreground", "background")
# Images per chunk: the float32 temporaries (600 KB) stay in a core's L2 cache; chunks of 1024
# ran 1.6x slower.
_CHUNK = 64
_NOISE_LEVELS = 1 << 16  # Quantiles in the noise table: one uint16 of random bits per value.


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


@functools.lru_cache(maxsize=8)
def noise_table(noise_sigma: float) -> np.ndarray:
  """float32[65536]: the quantiles of N(0, noise_sigma) at (i + 0.5) / 65536, in pixel levels."""
  dist = statistics.NormalDist(0.0, float(noise_sigma) * 255.0)
  table = np.array([dist.inv_cdf((i + 0.5) / _NOISE_LEVELS) for i in range(_NOISE_LEVELS)])
  table = table.astype(np.float32)
  table.flags.writeable = False
  return table


def gaussian_noise(shape, rng, noise_sigma: float) -> np.ndarray:
  """float32 N(0, noise_sigma) noise in pixel levels (x255), by inverse-CDF table lookup."""
  size = int(np.prod(shape))
  bits = rng.bit_generator.random_raw(-(-size // 4)).view(np.uint16)[:size]
  return noise_table(noise_sigma).take(bits).reshape(shape)


def _finish(img, rng, noise_sigma):
  """Adds Gaussian noise, clips to [0, 1] and truncates to uint8, as the study does.

  img: float32 [n, 3, H*W], the noise-free image in pixel levels (255 * value); computed as
  floor(clip(img + 255 * noise, 0, 255)). Returns uint8 [n, 3, H*W].
  """
  if noise_sigma > 0:
    img += gaussian_noise(img.shape, rng, noise_sigma)
  np.clip(img, 0.0, 255.0, out=img)
  return img.astype(np.uint8)


def _unit(grey):
  """grey / 255 as float32 [n, H*W]."""
  return grey.reshape(len(grey), -1).astype(np.float32) * np.float32(1.0 / 255.0)


def _blend(d, start, end):
  """float32 [n, 3, H*W]: (end_k - start_k) * d + start_k per channel k, in place (no broadcast
  temporaries: 1.7x faster). start_k, end_k: arrays broadcastable to d's [n, H*W], in pixel
  levels."""
  img = np.empty((len(d), 3, d.shape[1]), np.float32)
  for k in range(3):
    np.subtract(end[k], start[k], out=img[:, k])
    img[:, k] *= d
    img[:, k] += start[k]
  return img


def _foreground_chunk(grey, rgb, rng, noise_sigma, bg_range):
  # 255 * (b * (1 - d) + d * color) = B + d * (C - B), with B = 255 b and C = 255 color; computed
  # channel-major so numpy's inner loops run over pixels, not over 3 channels.
  d = _unit(grey)
  lo, hi = np.float32(bg_range[0] * 255.0), np.float32(bg_range[1] * 255.0)
  bg = rng.random(d.shape, dtype=np.float32) * (hi - lo) + lo  # [n, H*W], same on R, G, B.
  color = rgb * np.float32(255.0)
  img = _blend(d, [bg] * 3, [color[:, k:k + 1] for k in range(3)])
  return _finish(img, rng, noise_sigma)


def _background_chunk(grey, rgb, rng, noise_sigma, bg_range):
  del bg_range  # The background is the color itself; the stroke is white.
  # 255 * (color * (1 - d) + d) = C + d * (255 - C).
  color = rgb * np.float32(255.0)
  img = _blend(_unit(grey), [color[:, k:k + 1] for k in range(3)], [np.float32(255.0)] * 3)
  return _finish(img, rng, noise_sigma)


def _colorize(chunk_fn, grey, colors, rng, *, palette, noise_sigma, bg_range):
  grey, colors = _check_inputs(grey, colors, noise_sigma, bg_range)
  rgb_all = palette_lib.check_palette(palette).astype(np.float32) / np.float32(255.0)
  out = np.empty(grey.shape + (3,), np.uint8)
  flat = out.reshape(len(grey), -1, 3)  # A view: chunks write [n, H*W, 3] into it.
  starts = range(0, len(grey), _CHUNK)
  seeds = rng.integers(0, 2 ** 63, len(starts))

  def color_chunk(start, seed):
    sl = slice(start, start + _CHUNK)
    img = chunk_fn(grey[sl], rgb_all[colors[sl]], np.random.default_rng(seed), noise_sigma,
                   bg_range)
    for k in range(3):  # Channel by channel: 5x faster than one transposed copy.
      flat[sl, :, k] = img[:, k]

  # numpy releases the GIL in its loops and random draws, so threads use every core.
  with concurrent.futures.ThreadPoolExecutor(os.cpu_count() or 1) as pool:
    list(pool.map(color_chunk, starts, seeds))
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
