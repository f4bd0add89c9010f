"""Coloring grey digits: colorize_*(grey, colors, rng, ...) -> uint8[N, H, W, 3].

Modes: 'foreground' (the study's: the stroke in the color over a noisy grey background),
'background' (the color fills the background, the stroke white) and 'lff', the "Colored MNIST"
of LfF and DFA. What 'lff' follows, read in alinlab/LfF at commit e66796ec
(data/colored_mnist_protocol.py, make_dataset.py, data/resource/colors.th): the digit, 28x28,
times a per-image color `clamp(mean_color[c] + N(0, std) per channel, 0, 1)`, so the background
stays black (grey 0) and there is no pixel noise; truncated to uint8. Their std, "severity"
1..5: 0.05, 0.02, 0.01, 0.005, 0.002 (scripts run severity 4: 0.005). Colors: LFF_PALETTE
(palette.py), used when config.data.palette is None. DFA (kakaoenterprise/Learning-Debiased-
Disentangled) ships the images prebuilt; its loader is LfF's. Neither normalizes beyond
ToTensor's / 255 (their MLP divides by 255 once more: models/cnn.py LfFMLP).

`config.data.grayscale=True` (any mode) paints every digit white, whatever its color id, then
makes the image grey (floor of the channel mean on all three channels): the colors carry no
information, so a grey image's brightness says nothing of its label either.
`recolor_fn(data_cfg)` is the same coloring in pure JAX, for recoloring inside a jitted train
step.

All functions are vectorized over the batch; randomness comes only from the numpy Generator
passed in, so the same generator state gives bit-identical images. Digits are colored in chunks
of 1024, each with its own SFC64 bit stream seeded from the generator passed in, on all CPU
cores: the images do not depend on how many cores there are.

A chunk is one jitted XLA:CPU loop (`_color_chunk`) that reads the digits and 16 random bits
per background pixel and per noise value, and writes the uint8 image, instead of numpy passes
that spend their time writing float temporaries. The bits come from numpy, whose generators
are faster than XLA:CPU's own (docs/perf.md). The kernel runs on the CPU device even
where an accelerator is the default, so an accelerator does not change the data.

The Gaussian noise (one value per pixel and channel: 165M for 70k digits) is drawn by
inverse-CDF lookup: 16 random bits per value index a table of the 65,536 quantiles
Phi^-1((i + 0.5) / 65536) of N(0, sigma). Its CDF is within 1 / 65536 of the normal's
everywhere (tails cut at 4.3 sigma, probability 1.5e-5), far below the 1/255 quantization of the
uint8 output. The background level takes 16 bits too: (b + 0.5) / 65536 of the way through
bg_range, steps of 0.001 pixel levels. The 'lff' color jitter is drawn the same way (16 bits per
digit and channel, a table of N(0, std)).
"""

import concurrent.futures
import functools
import os
import statistics

import jax
import jax.numpy as jnp
import numpy as np

from ccmnist.data import palette as palette_lib

MODES = ("foreground", "background", "lff")
# The 'lff' color jitter's default std: LfF's severity 4, the one its scripts train on.
COLOR_STD = 0.005
# Digits per chunk: every chunk, the last included, is this size (one compiled shape); 1024
# digits keep a chunk's 6 MB of random bits in cache.
_CHUNK = 1024
_LEVELS = 1 << 16  # Values 16 random bits can take: noise quantiles, background levels.


def _check_inputs(grey, colors, noise_sigma, bg_range, num_colors):
  grey = np.asarray(grey)
  colors = np.asarray(colors)
  if grey.dtype != np.uint8 or grey.ndim != 3:
    raise ValueError(f"grey digits must be uint8[N, H, W]; got {grey.dtype}{list(grey.shape)}.")
  if colors.shape != grey.shape[:1]:
    raise ValueError(f"need one color id per digit: {colors.shape} vs {grey.shape[:1]} digits.")
  if colors.size and (colors.min() < 0 or colors.max() >= num_colors):
    raise ValueError(f"color ids must lie in [0, {num_colors - 1}] (the palette's colors).")
  _check_settings(noise_sigma, bg_range)
  return grey, colors.astype(np.int64)


def _check_settings(noise_sigma, bg_range):
  if not noise_sigma >= 0:
    raise ValueError(f"noise_sigma must be >= 0; got {noise_sigma}.")
  lo, hi = bg_range
  if not 0 <= lo <= hi <= 1:
    raise ValueError(f"bg_range must satisfy 0 <= low <= high <= 1; got {bg_range}.")


@functools.lru_cache(maxsize=8)
def noise_table(noise_sigma: float) -> np.ndarray:
  """float32[65536]: the quantiles of N(0, noise_sigma) at (i + 0.5) / 65536, in pixel levels."""
  dist = statistics.NormalDist(0.0, float(noise_sigma) * 255.0)
  table = np.array([dist.inv_cdf((i + 0.5) / _LEVELS) for i in range(_LEVELS)])
  table = table.astype(np.float32)
  table.flags.writeable = False
  return table


def bits_per_digit(mode: str, noisy: bool, hw: int = 28 * 28) -> int:
  """The 16-bit random values `_color_chunk` reads per digit of hw pixels."""
  if mode == "lff":
    return 3 if noisy else 0  # One color jitter per channel.
  return (3 * hw if noisy else 0) + (hw if mode == "foreground" else 0)


@functools.partial(jax.jit, static_argnames=("mode", "noisy"))
def _color_chunk(grey, color, bits, table, bg_lo, bg_span, *, mode: str, noisy: bool):
  """uint8 [n, H*W, 3]: the images of grey uint8 [n, H*W] in color float32 [n, 3] (0-255).

  bits: uint16, the noise bits [n, H*W, 3] (if noisy) then the background bits [n, H*W] (if
  foreground), each flattened; for 'lff', the jitter bits [n, 3] (if noisy: std > 0), and
  `table` is the jitter's. Computed as the formula reads, B * (1 - d) + C * d: at grey 0
  and 255 one term is exactly 0, so an empty pixel gets exactly its background and a pure stroke
  exactly its color (a test checks), whether or not XLA fuses the multiply-add; elsewhere fusing
  moves about 1 value in 10^6 by a level, against separate roundings.
  """
  n, hw = grey.shape
  # d = grey / 255 and 1 - d as (255 - grey) / 255, each one rounded product: exactly 1 and 0
  # at grey 255, 0 and 1 at grey 0. (1 - d would become a fused multiply-add, slightly off 0.)
  grey = grey.astype(jnp.float32)[..., None]
  d = grey * jnp.float32(1.0 / 255.0)
  w = (jnp.float32(255.0) - grey) * jnp.float32(1.0 / 255.0)
  color = color[:, None, :]
  if mode == "lff":
    # LfF: clamp(color + N(0, std), 0, 1) * digit, the jitter one value per image and channel;
    # the background (grey 0) stays black.
    if noisy:
      color = color + table[bits[:n * 3].reshape(n, 1, 3)]
    img = jnp.clip(color, 0.0, 255.0) * d
    return jnp.clip(img, 0.0, 255.0).astype(jnp.uint8)
  noise_size = n * hw * 3 if noisy else 0
  if mode == "foreground":
    # 255 * (b * (1 - d) + d * color) = B * (1 - d) + C * d, with B = 255 b and C = 255 color.
    bg = bits[noise_size:].reshape(n, hw, 1).astype(jnp.float32) + jnp.float32(0.5)
    bg = bg * bg_span * jnp.float32(1.0 / _LEVELS) + bg_lo  # B = lo + (hi - lo) (b + 0.5) / 2^16.
    img = bg * w + color * d
  else:
    # The color fills the background, the stroke is white: 255 * (color * (1 - d) + d).
    img = color * w + jnp.float32(255.0) * d
  if noisy:
    img = img + table[bits[:noise_size].reshape(n, hw, 3)]
  return jnp.clip(img, 0.0, 255.0).astype(jnp.uint8)


def _chunk_bits(seed, size: int) -> np.ndarray:
  """uint16 [size]: the random bits of one chunk, from its own SFC64 stream."""
  return np.random.SFC64(seed).random_raw(-(-size // 4)).view(np.uint16)[:size]


def _kernel_device():
  """This process's CPU device: the same data whatever accelerator is the default (a local one:
  under jax.distributed, jax.devices() also lists other processes' devices). Where JAX_PLATFORMS
  leaves no CPU backend, the default local device (a level may then move in 1 value in 10^6)."""
  try:
    return jax.local_devices(backend="cpu")[0]
  except RuntimeError:
    return jax.local_devices()[0]


def _kernel_constants(mode, palette, noise_sigma, bg_range):
  """(color float32 [10, 3] levels, noisy, table, bg_lo, bg_span) of one coloring; for 'lff',
  noise_sigma is the jitter std."""
  _check_settings(noise_sigma, bg_range)
  if mode == "lff":
    color_all = palette_lib.palette_levels(palette)  # Unrounded: LFF_PALETTE is not integer.
  else:
    color_all = palette_lib.check_palette(palette).astype(np.float32)
  noisy = noise_sigma > 0
  table = noise_table(noise_sigma) if noisy else np.zeros(1, np.float32)
  lo, hi = (np.float32(v * 255.0) for v in bg_range)
  return color_all, noisy, table, lo, hi - lo


def _colorize(grey, colors, rng, *, mode, palette, noise_sigma, bg_range):
  grey, colors = _check_inputs(grey, colors, noise_sigma, bg_range, len(palette))
  n, hw = len(grey), grey.shape[1] * grey.shape[2]
  color_all, noisy, table, lo, span = _kernel_constants(mode, palette, noise_sigma, bg_range)
  bits_per_chunk = _CHUNK * bits_per_digit(mode, noisy, hw)
  out = np.empty(grey.shape + (3,), np.uint8)
  flat = out.reshape(n, hw, 3)
  starts = range(0, n, _CHUNK)
  seeds = rng.integers(0, 2 ** 63, len(starts))
  device = _kernel_device()
  constants = jax.device_put((table, lo, span), device)

  def color_chunk(start, seed):
    sl = slice(start, start + _CHUNK)
    m = len(grey[sl])
    chunk_grey = np.zeros((_CHUNK, hw), np.uint8)
    chunk_grey[:m] = grey[sl].reshape(m, hw)
    chunk_color = np.zeros((_CHUNK, 3), np.float32)
    chunk_color[:m] = color_all[colors[sl]]
    inputs = jax.device_put((chunk_grey, chunk_color, _chunk_bits(seed, bits_per_chunk)),
                            device)
    flat[sl] = np.asarray(_color_chunk(*inputs, *constants, mode=mode, noisy=noisy))[:m]

  # Kernels run with the GIL released, so one thread's kernel overlaps another's drawing of bits
  # (numpy's random_raw holds the GIL); one thread more than cores keeps the cores busy while a
  # thread copies its result out.
  with concurrent.futures.ThreadPoolExecutor((os.cpu_count() or 1) + 1) as pool:
    list(pool.map(color_chunk, starts, seeds))
  return out


def colorize_foreground(grey, colors, rng, *, palette=palette_lib.PALETTE_RGB,
                        noise_sigma=0.02, bg_range=(0.3, 0.6)):
  """The study's foreground-stroke coloring.

  Per pixel: a grey background b ~ U(bg_range) (same value on R, G, B), the stroke blended in
  as `b * (1 - d) + d * color` with d = grey / 255, plus N(0, noise_sigma) per pixel and channel,
  clipped to [0, 1] and truncated to uint8. noise_sigma=0 is the study's noise-free variant.
  """
  return _colorize(grey, colors, rng, mode="foreground", palette=palette,
                   noise_sigma=noise_sigma, bg_range=bg_range)


def colorize_background(grey, colors, rng, *, palette=palette_lib.PALETTE_RGB,
                        noise_sigma=0.02, bg_range=(0.3, 0.6)):
  """Classic Biased-MNIST coloring: the color fills the background, the stroke stays white."""
  return _colorize(grey, colors, rng, mode="background", palette=palette,
                   noise_sigma=noise_sigma, bg_range=bg_range)


def colorize_lff(grey, colors, rng, *, palette=palette_lib.LFF_PALETTE, color_std=COLOR_STD):
  """LfF's Colored MNIST: `clip(color + N(0, color_std) per channel, 0, 1) * d`, d = grey / 255.

  One jitter per image and channel (std in [0, 1] units, as LfF's `std_color`), the same on
  every pixel; the background stays black, no pixel noise; truncated to uint8.
  """
  if not color_std >= 0:
    raise ValueError(f"color_std (the 'lff' color jitter) must be >= 0; got {color_std}.")
  return _colorize(grey, colors, rng, mode="lff", palette=palette, noise_sigma=color_std,
                   bg_range=(0.0, 0.0))


def to_grayscale(images) -> np.ndarray:
  """uint8 [..., 3]: each pixel's channel mean (floored) on all three channels."""
  images = np.asarray(images)
  grey = (images.astype(np.uint16).sum(-1) // 3).astype(np.uint8)
  return np.repeat(grey[..., None], 3, axis=-1)


def colorize(grey, colors, rng, *, mode="foreground", grayscale=False, **kwargs):
  """Dispatches on `mode` (one of MODES); grayscale=True makes the result grey
  (to_grayscale), drawing the same random numbers."""
  if mode == "foreground":
    images = colorize_foreground(grey, colors, rng, **kwargs)
  elif mode == "background":
    images = colorize_background(grey, colors, rng, **kwargs)
  elif mode == "lff":
    images = colorize_lff(grey, colors, rng, **kwargs)
  else:
    raise ValueError(f"Unknown coloring mode {mode!r}; known modes: {', '.join(MODES)}.")
  return to_grayscale(images) if grayscale else images


# ---------------------------------------------------------------- from a data config

def config_palette(cfg) -> np.ndarray:
  """The palette a data config colors with: white for every digit when grayscale, else
  config.data.palette, else the mode's own (LFF_PALETTE for 'lff', the study's PALETTE_RGB)."""
  if cfg.palette is not None:
    palette = np.asarray(cfg.palette)
  else:
    palette = palette_lib.LFF_PALETTE if cfg.coloring == "lff" else palette_lib.PALETTE_RGB
  if cfg.get("grayscale", False):  # One color for all: greying alone keeps each hue's brightness.
    return np.full((len(palette), 3), 255, np.uint8)
  return palette


def config_kwargs(cfg, *, palette=None) -> dict:
  """The keyword arguments of `colorize` that a data config sets. 'lff' takes color_std and no
  noise_sigma or bg_range (its protocol has neither); `grayscale` is named only when True."""
  palette = config_palette(cfg) if palette is None else palette
  if cfg.coloring == "lff":
    kw = dict(mode="lff", palette=palette, color_std=cfg.get("color_std", COLOR_STD))
  else:
    kw = dict(mode=cfg.coloring, palette=palette, noise_sigma=cfg.noise_sigma,
              bg_range=(cfg.bg_low, cfg.bg_high))
  if cfg.get("grayscale", False):
    kw["grayscale"] = True
  return kw


def _grayscale_jnp(images):
  grey = images.astype(jnp.int32).sum(-1, keepdims=True) // 3
  return jnp.broadcast_to(grey, images.shape).astype(images.dtype)


def _recolorer(data_cfg):
  """(fn(grey, colors, bits) -> float32 images, per_digit(hw) -> bits per digit) of a config."""
  kw = config_kwargs(data_cfg)
  mode, grayscale = kw["mode"], kw.get("grayscale", False)
  if mode not in MODES:
    raise ValueError(f"Unknown coloring mode {mode!r}; known modes: {', '.join(MODES)}.")
  sigma, bg_range = ((kw["color_std"], (0.0, 0.0)) if mode == "lff" else
                     (kw["noise_sigma"], kw["bg_range"]))
  color_all, noisy, table, lo, span = _kernel_constants(mode, kw["palette"], sigma, bg_range)
  color_all, table = jnp.asarray(color_all), jnp.asarray(table)

  def recolor(grey, colors, bits):
    n, h, w = grey.shape
    img = _color_chunk(grey.reshape(n, h * w), color_all[colors], bits, table, lo, span,
                       mode=mode, noisy=noisy)
    if grayscale:
      img = _grayscale_jnp(img)
    return img.reshape(n, h, w, 3).astype(jnp.float32)

  return recolor, functools.partial(bits_per_digit, mode, noisy)


def recolor_from_bits_fn(data_cfg):
  """fn(grey uint8 [n, H, W], colors int32 [n], bits uint16 [n * bits_per_digit]) -> float32
  [n, H, W, 3]: `recolor_fn` with its random bits given, laid out as `_color_chunk` reads them.
  On the bits `colorize` draws for a whole chunk (n = 1024) it gives `colorize`'s images (up to
  a fused multiply-add moving 1 value in 10^6 by a level)."""
  return _recolorer(data_cfg)[0]


def recolor_fn(data_cfg):
  """fn(grey uint8 [n, H, W], colors int32 [n], key) -> float32 [n, H, W, 3] pixel images in
  [0, 255], distributed as `data_cfg`'s coloring (every mode, grayscale too): pure JAX, for
  recoloring inside a jitted step ("random recoloring each epoch"). Its random bits come from
  jax.random.bits(key), so it equals `colorize` in distribution, not in values."""
  from_bits, per_digit = _recolorer(data_cfg)

  def recolor(grey, colors, key):
    n, h, w = grey.shape
    return from_bits(grey, colors, jax.random.bits(key, (n * per_digit(h * w),), jnp.uint16))

  return recolor
