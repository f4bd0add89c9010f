"""Where a batch of perturbations lies: chromatic vs luminance energy, on vs off the stroke.

Pure numpy on host arrays (float64), no compiled program.
"""

import numpy as np


def chromatic_energy(delta_NHWC):
  """Per-example sum (delta - mean_c delta)^2 and sum delta^2, float64 [N] each."""
  d = np.asarray(delta_NHWC, np.float64)
  chroma = d - d.mean(axis=-1, keepdims=True)
  axes = tuple(range(1, d.ndim))
  return np.sum(chroma ** 2, axis=axes), np.sum(d ** 2, axis=axes)


def stroke_mask(images_NHWC, *, threshold: float = 30.0):
  """Colored-stroke pixels, bool [N, H, W]: the largest channel deviation from the pixel's
  channel mean exceeds `threshold` (the study's backgrounds are grey, its palette saturated)."""
  x = np.asarray(images_NHWC, np.float64)
  return np.abs(x - x.mean(-1, keepdims=True)).max(-1) > threshold


def perturbation_anatomy(delta_NHWC, mask_NHW=None) -> dict:
  """Where and in which color direction a batch of perturbations lies.

  chromatic_share: sum over the batch of the chromatic energy (deviation from the per-pixel
  channel mean) over the total energy; the rest (1 - share) is luminance (grey) energy. An
  isotropic perturbation has share 2/3 (two of the three color directions are chromatic).
  With a stroke mask, also the share of the energy on the stroke and the mean |delta| on and
  off it.
  """
  d = np.asarray(delta_NHWC, np.float64)
  chroma, total = chromatic_energy(d)
  per_example = chroma / np.maximum(total, 1e-30)
  out = {
      "mean_abs_map_HWC": np.abs(d).mean(axis=0),
      "chromatic_share": float(chroma.sum() / max(total.sum(), 1e-30)),
      "chromatic_share_median": float(np.median(per_example[total > 0])) if np.any(total > 0)
      else float("nan"),
      "isotropic_chromatic_share": 2.0 / 3.0,
      "mean_linf": float(np.abs(d).reshape(len(d), -1).max(axis=1).mean()),
      "mean_l2": float(np.sqrt(total).mean()),
      "mean_abs": float(np.abs(d).mean()),
  }
  if mask_NHW is not None:
    m = np.asarray(mask_NHW, bool)
    energy = np.sum(d ** 2, axis=-1)
    a = np.abs(d).mean(-1)
    out.update({
        "stroke_pixel_share": float(m.mean()),
        "stroke_energy_share": float(energy[m].sum() / max(energy.sum(), 1e-30)),
        "mean_abs_on_stroke": float(a[m].mean()) if m.any() else float("nan"),
        "mean_abs_off_stroke": float(a[~m].mean()) if (~m).any() else float("nan"),
    })
  return out
