"""Image grids as one array: one imshow of a montage draws far faster than R*C subplots."""

import numpy as np


def montage(tiles_RC, *, pad: int = 2, fill: float = 1.0) -> np.ndarray:
  """float32 [R*(H+pad)-pad, C*(W+pad)-pad, 3]: tiles [R, C, H, W, 3] in [0, 1] on `fill`."""
  r, c, h, w = tiles_RC.shape[:4]
  out = np.full((r * (h + pad) - pad, c * (w + pad) - pad, 3), fill, np.float32)
  for i in range(r):
    for j in range(c):
      out[i * (h + pad):i * (h + pad) + h, j * (w + pad):j * (w + pad) + w] = tiles_RC[i, j]
  return out


def tile_centers(n: int, size: int, pad: int) -> list:
  """Pixel coordinates of the centers of n tiles of `size` along one axis of a montage."""
  return [i * (size + pad) + (size - 1) / 2 for i in range(n)]
